"""Run claims: their sweeps (resumable, shardable), then their verdicts; and the report.

This is what `pmilab verify` and `pmilab figures --run-missing` call. For each claim module of
the registry (`claims.CLAIMS`): build its config for the preset, run the missing runs of its
sweeps into DIR/runs/ (finished runs are never redone), and, once every run of every shard is
there, evaluate its verdicts. `write` then writes report.md, claims.csv and results.csv.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pmilab import atomic
from pmilab.errors import InputError
from pmilab.experiments.claims import CLAIMS
from pmilab.experiments.framework.claim import ClaimModule, ClaimResult, check_preset
from pmilab.experiments.framework.report import write_report
from pmilab.experiments.framework.sweep import Sweep, load_table, missing, raw_rows, run_sweep


@dataclass
class ClaimRun:
    """What running one claim produced."""

    claim: str
    sweeps: list[Sweep] = field(default_factory=list)
    results: list[ClaimResult] = field(default_factory=list)
    missing: int = 0
    ran: int = 0
    reused: int = 0
    seconds: float = 0.0

    @property
    def note(self) -> str:
        base = f"{self.ran} runs, {self.reused} reused"
        if self.missing:
            base += f"; {self.missing} runs still missing (other shards); no verdict yet"
        return base


def parse_claims(text: str) -> list[str]:
    """'T1,t3' -> ['T1', 'T3'] in registry order; '' -> every claim."""
    if not text.strip():
        return list(CLAIMS)
    ids = [c.strip().upper() for c in text.split(",") if c.strip()]
    bad = [c for c in ids if c not in CLAIMS]
    if bad:
        raise InputError(f"unknown claim(s) {bad}; choose from {','.join(CLAIMS)}")
    return [c for c in CLAIMS if c in ids]


def run_claim(
    mod: ClaimModule,
    preset: str,
    out_dir: Path,
    seeds: int | None = None,
    progress: bool = True,
    jobs: int = 1,
    shard: tuple[int, int] = (0, 1),
) -> ClaimRun:
    """Run the missing runs of a claim's sweeps, then (if none is missing) its verdicts."""
    t0 = time.perf_counter()
    runs_dir = Path(out_dir) / "runs"
    cfg = mod.config(check_preset(preset), seeds)
    out = ClaimRun(mod.CLAIM, mod.sweeps(cfg))
    for sw in out.sweeps:
        st = run_sweep(sw, runs_dir, jobs=jobs, shard=shard, progress=progress)
        out.ran += st.ran
        out.reused += st.done_before
    out.missing = sum(len(missing(sw, runs_dir)) for sw in out.sweeps)
    if not out.missing:
        tables = {sw.name: load_table(sw, runs_dir) for sw in out.sweeps}
        out.results = list(mod.evaluate(tables, cfg))
    out.seconds = time.perf_counter() - t0
    return out


def run_claims(
    claims: list[str],
    preset: str,
    out_dir: Path,
    seeds: int | None = None,
    progress: bool = True,
    jobs: int = 1,
    shard: tuple[int, int] = (0, 1),
    log: Callable[[str], None] = print,
) -> list[ClaimRun]:
    """`run_claim` for each claim ID, logging one line per claim."""
    out = []
    for claim in claims:
        cr = run_claim(CLAIMS[claim], preset, out_dir, seeds, progress, jobs, shard)
        log(f"{claim}: {cr.note} ({cr.seconds:.0f} s)")
        out.append(cr)
    return out


def write(out_dir: Path, runs: list[ClaimRun], header: dict[str, str]) -> Path:
    """report.md, claims.csv and results.csv of these claims (each sweep's runs once)."""
    runs_dir = Path(out_dir) / "runs"
    tables: dict[str, tuple[list[str], list[dict[str, str]]]] = {}
    for cr in runs:
        for sw in cr.sweeps:
            if sw.name not in tables:  # T3 reads T2's "heads" sweep
                tables[sw.name] = (sw.columns(), raw_rows(sw, runs_dir))
    results = [r for cr in runs for r in cr.results]
    return write_report(out_dir, results, tables, header)


META = "meta.json"


def read_meta(out_dir: Path) -> dict | None:
    """The preset and seeds a verify directory was run with (None: no meta.json yet)."""
    path = Path(out_dir) / META
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
        check_preset(meta["preset"])
        seeds = meta.get("seeds")
        if seeds is not None and (not isinstance(seeds, int) or seeds < 1):
            raise ValueError(f"seeds {seeds!r}")
    except (ValueError, KeyError, TypeError, InputError) as e:
        raise InputError(
            f"{path} is not a pmilab verify meta.json ({type(e).__name__}: {e}); "
            "move it away or use another --out"
        ) from None
    return {"preset": meta["preset"], "seeds": seeds}


def write_meta(out_dir: Path, preset: str, seeds: int | None) -> None:
    """Record the preset, refusing a directory that holds another preset's runs."""
    out_dir = Path(out_dir)
    new = {"preset": check_preset(preset), "seeds": seeds}
    old = read_meta(out_dir)
    if old is not None and old != new:
        raise InputError(
            f"{out_dir} holds a {old['preset']} run with seeds={old['seeds']}; use another --out "
            "or the same preset and --seeds"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out_dir / META, new, indent=None)

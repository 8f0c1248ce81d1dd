"""Run claims: their sweeps (resumable, shardable), then their verdicts; and the report.

This is what `pmilab verify` and `pmilab figures --run-missing` call. `run_claims` builds the
config of each requested claim module of the registry (`claims.CLAIMS`) for the preset, and
runs the missing cells of all their sweeps (a sweep shared by two claims once: T3 reads T2's
"heads" sweep) into DIR/runs/ as one longest-first schedule on one executor (finished runs are
never redone). Each claim is evaluated as soon as its own sweeps are complete, while other
claims' cells still run, provided no run of another shard is missing. `write` then writes
report.md, claims.csv and results.csv.
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
from pmilab.experiments.framework.design import claim_config, planned_power
from pmilab.experiments.framework.report import write_report
from pmilab.experiments.framework.sweep import (
    Sweep,
    SweepStats,
    load_table,
    missing,
    raw_rows,
    run_sweeps,
)


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
    """Run the missing runs of one claim's sweeps, then (if none is missing) its verdicts."""
    return run_modules([mod], preset, out_dir, seeds, progress, jobs, shard)[0]


def run_claims(
    claims: list[str],
    preset: str,
    out_dir: Path,
    seeds: int | None = None,
    progress: bool = True,
    jobs: int = 1,
    shard: tuple[int, int] = (0, 1),
    log: Callable[[str], None] = print,
    *,
    executor: str = "local",
    address: str | None = None,
) -> list[ClaimRun]:
    """`run_modules` for these claim IDs, logging one line per claim as it is evaluated.

    executor, address: where the cells run (`framework.executors.open_executor`); with the
    local executor and jobs <= 1, in this process.
    """
    mods = [CLAIMS[c] for c in claims]
    return run_modules(
        mods, preset, out_dir, seeds, progress, jobs, shard, log, executor=executor, address=address
    )


def shared_sweeps(runs: list[ClaimRun]) -> dict[str, Sweep]:
    """Each sweep of these claims once, by name (first listed wins); a name that two claims
    build with different runs is a bug in a claim module."""
    out: dict[str, Sweep] = {}
    for cr in runs:
        for sw in cr.sweeps:
            first = out.setdefault(sw.name, sw)
            if [r.run_id for r in first.runs] != [r.run_id for r in sw.runs]:
                raise ValueError(f"claims build sweep {sw.name!r} with different runs")
    return out


def run_modules(
    mods: list[ClaimModule],
    preset: str,
    out_dir: Path,
    seeds: int | None = None,
    progress: bool = True,
    jobs: int = 1,
    shard: tuple[int, int] = (0, 1),
    log: Callable[[str], None] = lambda line: None,
    *,
    executor: str = "local",
    address: str | None = None,
) -> list[ClaimRun]:
    """Run the missing cells of every sweep of these claims as one schedule (`run_sweeps`),
    and evaluate each claim once its sweeps are complete (in this shard; with no run of
    another shard missing). A shared sweep's runs count as `ran` for the first claim listed
    that reads it and as reused for the others. `seconds`: from the start to the claim's
    verdict."""
    t0 = time.perf_counter()
    runs_dir = Path(out_dir) / "runs"
    cfgs = [claim_config(mod, preset, seeds) for mod in mods]
    out = [ClaimRun(mod.CLAIM, mod.sweeps(cfg)) for mod, cfg in zip(mods, cfgs, strict=True)]
    sweeps = shared_sweeps(out)
    owner = {
        name: next(cr for cr in out if name in {sw.name for sw in cr.sweeps}) for name in sweeps
    }
    stats: dict[str, SweepStats] = {}
    waiting = list(range(len(out)))

    def finish(k: int) -> None:
        cr = out[k]
        for sw in cr.sweeps:
            st = stats[sw.name]
            first = owner[sw.name] is cr
            cr.ran += st.ran if first else 0
            cr.reused += st.done_before + (0 if first else st.ran)
        cr.missing = sum(len(missing(sw, runs_dir)) for sw in cr.sweeps)
        if not cr.missing:
            tables = {sw.name: load_table(sw, runs_dir) for sw in cr.sweeps}
            cr.results = planned_power(list(mods[k].evaluate(tables, cfgs[k])), preset)
        cr.seconds = time.perf_counter() - t0
        log(f"{cr.claim}: {cr.note} ({cr.seconds:.0f} s)")

    def sweep_complete(st: SweepStats) -> None:
        stats[st.name] = st
        for k in list(waiting):
            if all(sw.name in stats for sw in out[k].sweeps):
                waiting.remove(k)
                finish(k)

    run_sweeps(
        list(sweeps.values()),
        runs_dir,
        jobs,
        shard,
        progress,
        on_complete=sweep_complete,
        executor=executor,
        address=address,
        desc=",".join(cr.claim for cr in out),
    )
    for k in list(waiting):  # a claim without sweeps
        finish(k)
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

"""Run claims: their sweeps (resumable, shardable), then their verdicts; and the report.

This is what `pmilab verify` and `pmilab figures --run-missing` call. `run_claims` resolves
each requested claim spec (`pmilab.registry.resolve_claim`: a built-in ID of `claims.CLAIMS`,
`package.module`, `package.module:name` or a `pmilab.claims` entry point), builds its config
for the preset, and runs the missing cells of all their sweeps (a sweep shared by two claims
once: T3 reads T2's "heads" sweep) into DIR/runs/ as one longest-first schedule on one executor
(finished runs are never redone). A worker process imports a plugin claim's task functions by
their module path, as the parent resolved the claim. Each claim is evaluated as soon as its own
sweeps are complete, while other claims' cells still run, provided no run of another shard is
missing. `write` then writes report.md, claims.csv and results.csv.

DIR/meta.json records the preset and seeds, and, only when there are any, the claims that are
not built in (CLAIM ID -> spec, so `pmilab figures` resolves them again) or the head a
`pmilab check` directory reports on.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pmilab import atomic, plugins, registry
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
    """'T1,t3' -> ['T1', 'T3'] in registry order; '' -> every built-in claim. Other specs
    (`package.module`, `package.module:name`, an entry-point name) follow the built-in ones in
    the order given; each must resolve to a claim (`registry.resolve_claim`), and no two may
    share a CLAIM ID."""
    if not text.strip():
        return list(CLAIMS)
    asked = list(dict.fromkeys(registry.claim_spec(c) for c in text.split(",") if c.strip()))
    specs = [c for c in CLAIMS if c in asked] + [c for c in asked if c not in CLAIMS]
    claim_modules(specs)
    return specs


# Row IDs of the built-in claims (T1a ...) and of the report card (`pmilab check`: HC0 ...).
RESERVED_IDS = re.compile(r"T\d|HC")


def claim_modules(specs: list[str]) -> list[ClaimModule]:
    """The claim module of each spec; InputError (one line) for a spec that does not resolve,
    or two claims with one CLAIM ID (their rows and figures would mix)."""
    mods = [registry.resolve_claim(c) for c in specs]
    seen: dict[str, str] = {}
    for spec, mod in zip(specs, mods, strict=True):
        if spec not in CLAIMS and RESERVED_IDS.match(mod.CLAIM):
            raise InputError(
                f"claim {spec} has CLAIM = {mod.CLAIM!r}: IDs T<digit>... and HC... are pmilab's "
                "own (its claims and `pmilab check`); give the claim another ID"
            )
        other = seen.setdefault(mod.CLAIM, spec)
        if other != spec:
            raise InputError(
                f"claims {other} and {spec} both have CLAIM = {mod.CLAIM!r}; give each claim "
                "its own ID"
            )
    return mods


def plugin_claims(specs: list[str]) -> dict[str, str]:
    """CLAIM ID -> spec of the claims that are not built in (what meta.json records)."""
    return {registry.resolve_claim(c).CLAIM: c for c in specs if c not in CLAIMS}


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
    """`run_modules` for these claim specs (`parse_claims`), logging one line per claim as it
    is evaluated.

    executor, address: where the cells run (`framework.executors.open_executor`); with the
    local executor and jobs <= 1, in this process.
    """
    mods = claim_modules(claims)
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
    if executor != "local" or jobs > 1:
        for mod, cr in zip(mods, out, strict=True):
            check_importable(mod, cr.sweeps)
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


def check_importable(mod: ClaimModule, sweeps: list[Sweep]) -> None:
    """InputError unless every task of these sweeps is a module-level function a worker process
    can import by its path (a lambda, a nested function or one defined in __main__ is not)."""
    for sw in sweeps:
        for fn in (sw.task, sw.cell_task):
            while isinstance(fn, functools.partial):
                fn = fn.func
            if fn is not None and plugins.path_of(fn) is None:
                name = getattr(fn, "__qualname__", type(fn).__name__)
                raise InputError(
                    f"claim {mod.CLAIM}: the task {name} of sweep {sw.name!r} cannot be imported "
                    "by a worker process; define it at module level in an importable module"
                )


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
    """The preset and seeds a verify directory was run with (None: no meta.json yet), with
    "plugins" (CLAIM ID -> spec of the claims not built in; {} when none) and "check" (the
    head a `pmilab check` directory reports on, with its sizes; None in a verify directory)."""
    path = Path(out_dir) / META
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
        check_preset(meta["preset"])
        seeds = meta.get("seeds")
        if seeds is not None and (not isinstance(seeds, int) or seeds < 1):
            raise ValueError(f"seeds {seeds!r}")
        plugins_ = meta.get("plugins", {})
        if not isinstance(plugins_, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in plugins_.items()
        ):
            raise ValueError(f"plugins {plugins_!r}")
        check = meta.get("check")
        if check is not None and not (
            isinstance(check, dict) and isinstance(check.get("head"), str)
        ):
            raise ValueError(f"check {check!r}")
    except (ValueError, KeyError, TypeError, InputError) as e:
        raise InputError(
            f"{path} is not a pmilab verify meta.json ({type(e).__name__}: {e}); "
            "move it away or use another --out"
        ) from None
    return {"preset": meta["preset"], "seeds": seeds, "plugins": plugins_, "check": check}


def write_meta(
    out_dir: Path,
    preset: str,
    seeds: int | None,
    plugins: dict[str, str] | None = None,
    check: dict | None = None,
) -> None:
    """Record the preset (and the plugin claims, or the checked head), refusing a directory
    that holds another preset's runs, a verify directory for a check or the reverse, or a
    plugin claim ID that an earlier invocation recorded with another spec.

    meta.json of built-in claims only is {"preset", "seeds"}, as before plugins existed. A
    verify directory gathers the plugin claims of every invocation; a check directory records
    the head of the latest check (the runs, named by their parameters, serve every head)."""
    out_dir = Path(out_dir)
    new = {"preset": check_preset(preset), "seeds": seeds}
    old = read_meta(out_dir)
    if old is not None and (old["preset"], old["seeds"]) != (preset, seeds):
        raise InputError(
            f"{out_dir} holds a {old['preset']} run with seeds={old['seeds']}; use another --out "
            "or the same preset and --seeds"
        )
    if old is not None and (old["check"] is None) != (check is None):
        what = f"a pmilab check of {old['check']['head']}" if old["check"] else "a verify run"
        raise InputError(f"{out_dir} holds {what}; use another --out")
    merged = dict(old["plugins"]) if old is not None else {}
    for cid, spec in (plugins or {}).items():
        if merged.setdefault(cid, spec) != spec:
            raise InputError(
                f"{out_dir} holds claim {cid} from {merged[cid]}, not {spec}; use another --out"
            )
    if merged:
        new["plugins"] = merged
    if check is not None:
        new["check"] = check
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out_dir / META, new, indent=None)

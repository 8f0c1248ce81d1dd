"""Which module checks which claim of THEORY.md, and how `pmilab verify` drives it.

Every claim module exposes the registry contract

    run_claims(quick: bool, out_dir: Path, seeds: int | None = None, progress: bool = True)
        -> list[ClaimResult]

Modules built on this package's sweeps also expose `config(quick, seeds)`, `sweeps(cfg)`,
`evaluate(tables, cfg)` and `figures(tables, results, fig_dir)`; verify then runs their sweeps
with `--jobs` and `--shard`, and `pmilab figures` redraws their figures from the results table.
A module that cannot be imported (e.g. T4 before the linear-MMCL work lands) is reported as
"not available" and the other claims still run.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pandas as pd

from pmilab.experiments.claims import ClaimResult
from pmilab.experiments.sweep import Sweep, load_table, missing, run_sweep

CLAIMS: dict[str, str] = {
    "T1": "pmilab.experiments.t1:run_claims",
    "T2": "pmilab.experiments.t2:run_claims",
    "T3": "pmilab.experiments.t3:run_claims",
    "T4": "pmilab.experiments.t4:run_claims",
    "T5": "pmilab.experiments.t5:run_claims",
    "T6": "pmilab.experiments.t6:run_claims",
}


def load(claim: str) -> tuple[ModuleType | None, str]:
    """(module, "") or (None, why it is not available)."""
    modname = CLAIMS[claim].partition(":")[0]
    try:
        mod = importlib.import_module(modname)
    except ImportError as e:
        return None, f"{modname} cannot be imported ({type(e).__name__}: {e})"
    if not hasattr(mod, "run_claims"):
        return None, f"{modname} has no run_claims()"
    return mod, ""


def is_sweep_module(mod: ModuleType) -> bool:
    return all(hasattr(mod, a) for a in ("config", "sweeps", "evaluate", "figures"))


@dataclass
class ClaimRun:
    """What running one claim module produced."""

    claim: str
    results: list[ClaimResult] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    missing: int = 0
    ran: int = 0
    reused: int = 0
    note: str = ""


def run_module(
    mod: ModuleType,
    claim: str,
    quick: bool,
    out_dir: Path,
    seeds: int | None = None,
    progress: bool = True,
    jobs: int = 1,
    shard: tuple[int, int] = (0, 1),
    draw: bool = True,
) -> ClaimRun:
    """Run a sweep-based claim module: its missing runs, then (if complete) its verdicts."""
    out_dir = Path(out_dir)
    cfg = mod.config(quick, seeds)
    sweeps: list[Sweep] = mod.sweeps(cfg)
    out = ClaimRun(claim)
    for sw in sweeps:
        st = run_sweep(sw, out_dir / "runs", jobs=jobs, shard=shard, progress=progress)
        out.ran += st.ran
        out.reused += st.done_before
    out.missing = sum(len(missing(sw, out_dir / "runs")) for sw in sweeps)
    if out.missing:
        out.note = f"{out.missing} runs still missing (other shards); no verdict yet"
        return out
    out.tables = {sw.name: load_table(sw, out_dir / "runs") for sw in sweeps}
    out.results = list(mod.evaluate(out.tables, cfg))
    if draw:
        mod.figures(out.tables, out.results, out_dir / "figures")
    return out


def run_claims_of(mod_name: str, claim: str):
    """The registry's `run_claims` for a sweep-based module (jobs=1, no sharding)."""

    def run_claims(
        quick: bool, out_dir: Path, seeds: int | None = None, progress: bool = True
    ) -> list[ClaimResult]:
        mod = importlib.import_module(mod_name)
        return run_module(mod, claim, quick, Path(out_dir), seeds, progress).results

    run_claims.__doc__ = f"Run the {claim} sweeps and return their verdicts (THEORY.md {claim})."
    return run_claims

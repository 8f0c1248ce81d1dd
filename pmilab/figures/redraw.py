"""Redraw the figures of a verify directory from its results, never running anything.

`redraw(DIR)` reads DIR/meta.json (the preset), DIR/results.csv (every run) and DIR/claims.csv
(every verdict), rebuilds each claim's run tables exactly as `pmilab verify` had them, and draws
the claim's figures into DIR/figures/ (or `fig_dir`). A claim whose runs are not all in
results.csv is skipped with one line saying what is missing. Drawing the same results twice
gives byte-identical PNG and PDF files.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from pmilab import atomic
from pmilab.errors import InputError
from pmilab.experiments.claims import CLAIMS
from pmilab.experiments.framework.design import claim_config
from pmilab.experiments.framework.report import read_claims, read_results, read_tables
from pmilab.experiments.verify import read_meta
from pmilab.figures import FIGURES


def claim_of(row_id: str) -> str:
    """'T4a' -> 'T4'."""
    m = re.match(r"T\d+", row_id)
    return m.group() if m else row_id


def check_results_dir(out_dir: Path) -> dict:
    """The meta of a finished verify directory, or one InputError naming what is wrong."""
    out_dir = Path(out_dir)
    if not out_dir.exists():
        raise InputError(
            f"--results {out_dir} does not exist; give a `pmilab verify --out` directory"
        )
    if not out_dir.is_dir():
        raise InputError(f"--results {out_dir} is not a directory; give a verify --out directory")
    meta = read_meta(out_dir)
    if meta is None:
        raise InputError(f"{out_dir} has no meta.json: it is not a `pmilab verify --out` directory")
    for name in ("results.csv", "claims.csv"):
        if not (out_dir / name).is_file():
            raise InputError(
                f"{out_dir} has no {name} yet: finish `pmilab verify --out {out_dir}` first, "
                "or pass --run-missing"
            )
    return meta


FIGURES_MARKER = ".pmilab-figures"  # in a figures folder: the verify directory drawn from


def redraw(
    out_dir: Path,
    claims: list[str] | None = None,
    fig_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Draw the figures of `claims` (default: every claim in claims.csv) of a verify directory."""
    out_dir = Path(out_dir)
    meta = check_results_dir(out_dir)
    fig_dir = Path(fig_dir) if fig_dir is not None else out_dir / "figures"
    rows = read_claims(out_dir)
    results = read_results(out_dir)
    present = list(dict.fromkeys(claim_of(r.claim) for r in rows))
    written: list[Path] = []
    for claim in claims or present:
        mod = CLAIMS[claim]
        sweeps = mod.sweeps(claim_config(mod, meta["preset"], meta["seeds"]))
        tables, missing = read_tables(results, sweeps)
        mine = [r for r in rows if claim_of(r.claim) == claim]
        if missing or not mine:
            why = f"{missing} of its runs are not in results.csv" if missing else "no verdicts"
            log(
                f"{claim}: not drawn: {why} (run `pmilab verify --out {out_dir}` "
                f"or `pmilab figures --results {out_dir} --run-missing`)"
            )
            continue
        paths = FIGURES[claim](tables, mine, fig_dir)
        log(f"{claim}: {len(paths)} files redrawn in {fig_dir}")
        written += paths
    if written:  # which results these figures show (`pmilab figures --out` checks it)
        atomic.write_text(fig_dir / FIGURES_MARKER, f"{out_dir.resolve()}\n")
    return written

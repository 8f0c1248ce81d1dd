"""Redraw the figures of a verify directory from its results, never running anything.

`redraw(DIR)` reads DIR/meta.json (the preset, and the plugin claims or the checked head),
DIR/results.csv (every run) and DIR/claims.csv (every verdict), rebuilds each claim's run
tables exactly as `pmilab verify` (or `pmilab check`) had them, and draws the claim's figures
into DIR/figures/ (or `fig_dir`). A claim whose runs are not all in results.csv is skipped with
one line saying what is missing; a claim that draws no figure (`figures.figure_of`), with one
line saying so. Drawing the same results twice gives byte-identical PNG and PDF files.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from pmilab import atomic, registry
from pmilab.errors import InputError
from pmilab.experiments.check import CLAIM as CARD
from pmilab.experiments.check import card_of
from pmilab.experiments.claims import CLAIMS
from pmilab.experiments.framework.design import claim_config
from pmilab.experiments.framework.report import read_claims, read_results, read_tables
from pmilab.experiments.verify import read_meta
from pmilab.figures import figure_of


def claim_of(row_id: str, ids=()) -> str:
    """The claim a row belongs to: the longest of `ids` that starts its ID ('MIXa' -> 'MIX'),
    else the built-in form 'T4a' -> 'T4'."""
    hits = [c for c in ids if row_id.startswith(c)]
    if hits:
        return max(hits, key=len)
    m = re.match(r"T\d+", row_id)
    return m.group() if m else row_id


def claims_of(meta: dict) -> dict:
    """Claim ID -> claim module of a verify (or check) directory: the built-in claims and the
    plugin claims its meta.json records, or the report card of a check directory."""
    if meta.get("check"):
        return {CARD: card_of(meta)}
    return {**CLAIMS, **{c: registry.resolve_claim(s) for c, s in meta.get("plugins", {}).items()}}


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
    """Draw the figures of `claims` (IDs or specs; default: every claim in claims.csv) of a
    verify or check directory."""
    out_dir = Path(out_dir)
    meta = check_results_dir(out_dir)
    fig_dir = Path(fig_dir) if fig_dir is not None else out_dir / "figures"
    rows = read_claims(out_dir)
    results = read_results(out_dir)
    mods = claims_of(meta)
    present = list(dict.fromkeys(claim_of(r.claim, mods) for r in rows))
    asked = [c if c in mods else registry.resolve_claim(c).CLAIM for c in claims or ()]
    written: list[Path] = []
    for claim in asked or present:
        mod = mods.get(claim)
        if mod is None:
            log(f"{claim}: not drawn: {out_dir}/meta.json does not record this claim")
            continue
        draw = figure_of(claim, mod)
        if draw is None:
            log(f"{claim}: no figure (the claim draws none)")
            continue
        sweeps = mod.sweeps(claim_config(mod, meta["preset"], meta["seeds"]))
        tables, missing = read_tables(results, sweeps)
        mine = [r for r in rows if claim_of(r.claim, mods) == claim]
        if missing or not mine:
            why = f"{missing} of its runs are not in results.csv" if missing else "no verdicts"
            log(
                f"{claim}: not drawn: {why} (run `pmilab verify --out {out_dir}` "
                f"or `pmilab figures --results {out_dir} --run-missing`)"
            )
            continue
        paths = draw(tables, mine, fig_dir)
        log(f"{claim}: {len(paths)} files redrawn in {fig_dir}")
        written += paths
    if written:  # which results these figures show (`pmilab figures --out` checks it)
        atomic.write_text(fig_dir / FIGURES_MARKER, f"{out_dir.resolve()}\n")
    return written

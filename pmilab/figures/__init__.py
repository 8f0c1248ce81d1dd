"""Figures of the verify report: pictures drawn from result tables, above the numbers.

One module per claim, each with `draw(tables, results, fig_dir) -> list[Path]`: `tables` are the
claim's run tables and `results` its verdict rows, both read back from a verify directory
(results.csv, claims.csv). A figure never runs anything and never recomputes a verdict; where
it needs a verdict helper (a fit, a reshaped table), it calls the claim module's own.
`draw_claims(DIR)` redraws every figure of DIR into DIR/figures/, byte-identically.

A figure registers with its claim: `FIGURES` holds the built-in claims' (by claim ID), `check`
the report card's (`pmilab check`, claim "HC"), and a plugin claim carries its own as a `draw`
member (docs/extending.md). `figure_of` finds it; a claim without one draws nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pmilab.experiments.check import CLAIM as CARD
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.figures import check, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10

Draw = Callable[[dict, list[ClaimResult], Path], list[Path]]

FIGURES: dict[str, Draw] = {
    "T1": t1.draw,
    "T2": t2.draw,
    "T3": t3.draw,
    "T4": t4.draw,
    "T5": t5.draw,
    "T6": t6.draw,
    "T7": t7.draw,
    "T8": t8.draw,
    "T9": t9.draw,
    "T10": t10.draw,
}


def figure_of(claim: str, module: object = None) -> Draw | None:
    """The figure function of a claim: a built-in claim's (`FIGURES`), the report card's, or the
    claim module's own `draw`; None for a claim that draws none."""
    if claim in FIGURES:
        return FIGURES[claim]
    if claim == CARD:
        return check.draw
    draw = getattr(module, "draw", None)
    return draw if callable(draw) else None


__all__ = ["FIGURES", "Draw", "figure_of"]

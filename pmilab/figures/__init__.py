"""Figures of the verify report: pictures drawn from result tables, above the numbers.

One module per claim, each with `draw(tables, results, fig_dir) -> list[Path]`: `tables` are the
claim's run tables and `results` its verdict rows, both read back from a verify directory
(results.csv, claims.csv). A figure never runs anything and never recomputes a verdict; where
it needs a verdict helper (a fit, a reshaped table), it calls the claim module's own.
`draw_claims(DIR)` redraws every figure of DIR into DIR/figures/, byte-identically.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pmilab.experiments.framework.claim import ClaimResult
from pmilab.figures import t1, t2, t3, t4, t5, t6, t7

Draw = Callable[[dict, list[ClaimResult], Path], list[Path]]

FIGURES: dict[str, Draw] = {
    "T1": t1.draw,
    "T2": t2.draw,
    "T3": t3.draw,
    "T4": t4.draw,
    "T5": t5.draw,
    "T6": t6.draw,
    "T7": t7.draw,
}

__all__ = ["FIGURES", "Draw"]

"""T10 figure: KME on two views of a ring (a continuous latent). Left: the relative PMI error
rel against M (each seed a dot; the mean with its two-sided 90 % t interval), the reach
tolerance REACH_TOL_MC dashed. Right, at the largest M: the learned bandwidth, the shuffled-pairs
control, and each fixed bandwidth of T10c where the preset has them. The verdicts, with their
intervals, are in the title (`style.banner`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import t as student

from pmilab.experiments.claims.t10 import FIXED, LEARNED, SHUFFLED, SWEEP
from pmilab.experiments.claims.tolerances import REACH_TOL_MC, rel_error
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.figures.style import banner, of_figure, save

NAME = "t10_ring"


def _point(ax, x: float, v: np.ndarray) -> None:
    ax.plot(np.full(v.size, x + 0.12), v, ".", color="gray", alpha=0.7)
    if v.size > 1:
        half = student.ppf(0.95, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
        ax.errorbar(x, v.mean(), yerr=half, fmt="o", color="black", capsize=4)


def draw(tables: dict[str, pd.DataFrame], results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    df = tables[SWEEP].assign(rel=lambda d: rel_error(d))
    learned = df[df["arm"] == LEARNED]
    ms = sorted(int(m) for m in learned.points.unique())
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5.0))
    for ax in (left, right):
        ax.axhline(REACH_TOL_MC, color="#cf222e", lw=0.8, ls="--", label=f"tol {REACH_TOL_MC}")
    for i, m in enumerate(ms):
        _point(left, i, learned.loc[learned.points == m, "rel"].to_numpy(float))
    left.set_xticks(range(len(ms)), [f"M={m}" for m in ms])
    left.set_title("learned bandwidth: error against M")
    top = learned[learned.points == ms[-1]]
    arms = [("learned", top)]
    fixed = df[df["arm"] == FIXED]
    arms += [(f"sigma={s:g}", g) for s, g in sorted(fixed.groupby("sigma"), key=lambda kv: kv[0])]
    arms += [("shuffled", df[df["arm"] == SHUFFLED])]
    arms = [(name, g) for name, g in arms if len(g)]
    for i, (_, g) in enumerate(arms):
        _point(right, i, g["rel"].to_numpy(float))
    right.set_xticks(range(len(arms)), [name for name, _ in arms], fontsize=8)
    right.set_title(f"M={ms[-1]}: bandwidth fixed or learned, and the control")
    for ax, where in ((left, "upper right"), (right, "center")):  # off the data
        ax.set_ylim(bottom=0)
        ax.set_ylabel("rmse / sd(PMI) under p(x)p(y) (seeds; mean, 90% t interval)")
        ax.legend(loc=where, fontsize=8)
    banner(fig, of_figure(results, NAME), "T10: KME with M points on a continuous latent (a ring)")
    fig.subplots_adjust(wspace=0.3, bottom=0.1, left=0.08, right=0.98, top=0.8)
    return save(fig, fig_dir, NAME)

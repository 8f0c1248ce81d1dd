"""T9 figure: WPSE (official form) on T6's base Gaussian, exact kernel against random features.
One panel per measure (p(x)p(y), T9a's and T9b's; p(x, y), reported): per arm, each seed's
relative PMI error (dots) and the mean over seeds with its two-sided 90 % t interval, the reach
tolerance REACH_TOL_MC dashed, on a log scale (the shuffled control sits far above the trained
arms). The verdicts, with their intervals, are in the title (`style.banner`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import t as student

from pmilab.experiments.claims.t9 import MEASURES, per_seed
from pmilab.experiments.claims.tolerances import REACH_TOL_MC
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.figures.style import banner, of_figure, save

NAME = "t9_wpse"


def draw(tables: dict[str, pd.DataFrame], results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    df = tables["t9-wpse"]
    arms = list(dict.fromkeys(df["arm"].tolist()))
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(11, 5.0))
    for ax, (col, name) in zip(axes, (("rel", "p(x)p(y)"), ("rel_joint", "p(x, y)")), strict=True):
        ax.axhline(REACH_TOL_MC, color="#cf222e", lw=0.8, ls="--", label=f"tol {REACH_TOL_MC}")
        for i, arm in enumerate(arms):
            v = np.array(list(per_seed(df, arm, col).values()), float)
            ax.plot(np.full(v.size, i + 0.15), v, ".", color="gray", alpha=0.7)
            if v.size > 1:
                half = student.ppf(0.95, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
                ax.errorbar(i, v.mean(), yerr=half, fmt="o", color="black", capsize=4)
        ax.set_xticks(range(len(arms)), arms)
        ax.set_xlim(-0.6, len(arms) - 0.4)
        ax.set_yscale("log")  # the shuffled control sits 10-30x above the trained arms
        ax.set_title(f"relative PMI error under {name}")
        ax.set_ylabel("rmse / sd(PMI) (seeds; mean, 90% t interval)")
        ax.legend(loc="upper left", fontsize=8)
    banner(
        fig,
        of_figure(results, NAME),
        "T9: WPSE (unit-length points) on a Gaussian, exact kernel vs random features",
    )
    fig.subplots_adjust(wspace=0.3, bottom=0.1, left=0.08, right=0.98, top=0.8)
    return save(fig, fig_dir, NAME)

"""T8 figure: KME and WPSE heads against the linear head downstream. One panel per measure
(zero-shot top-1, retrieval R@1 among 32, probe top-1): per data set and head, the mean paired
difference head − linear over seeds with its two-sided 90 % t interval (`claims.t8.differences`),
the tolerance band ±DIRECTION_TOL and the papers' 1–3 % gains shaded. The verdicts, with their
intervals, are in the title (`style.banner`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from pmilab.experiments.claims.t8 import DIRECTION_TOL, HEADS, MEASURE_NAMES, differences
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.figures.style import HEAD_COLORS, banner, of_figure, save


def draw(tables: dict[str, pd.DataFrame], results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    df = tables["t8"]
    data = tuple(dict.fromkeys(df["data"].tolist()))
    t = differences(df, data)
    fig, axes = plt.subplots(1, len(MEASURE_NAMES), figsize=(15, 5.2), sharey=False)
    for ax, (measure, name) in zip(axes, MEASURE_NAMES.items(), strict=True):
        sub = t[t.measure == measure]
        ax.axhspan(-DIRECTION_TOL, DIRECTION_TOL, color="#eeeeee", zorder=0)
        if measure != "probe":
            ax.axhspan(0.01, 0.03, color="#dafbe1", zorder=0, label="papers' gains (1-3%)")
        ax.axhline(0, color="black", lw=0.8)
        ax.axhline(
            -DIRECTION_TOL, color="#cf222e", lw=0.8, ls="--", label=f"-tol = -{DIRECTION_TOL}"
        )
        for k, head in enumerate(HEADS):
            h = sub[sub["head"] == head]
            x = [data.index(d) + (k - 0.5) * 0.25 for d in h["data"]]
            ax.errorbar(
                x,
                h["diff"],
                yerr=[h["diff"] - h["lo"], h["hi"] - h["diff"]],
                fmt="o",
                color=HEAD_COLORS.get(head, "gray"),
                capsize=4,
                label=f"{head} - linear",
            )
        ax.set_xticks(range(len(data)), data)
        ax.set_xlim(-0.6, len(data) - 0.4)
        ax.set_title(name)
        ax.set_ylabel("head - linear (mean, 90% t interval over seeds)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8)
    banner(
        fig,
        of_figure(results, "t8_downstream"),
        "T8: point-set heads against the linear head downstream (same towers, data, budget)",
    )
    fig.subplots_adjust(wspace=0.35, bottom=0.3, left=0.06, right=0.98)
    return save(fig, fig_dir, "t8_downstream")

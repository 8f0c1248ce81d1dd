"""T7 figure: heads trained on pixels and tokens against the exact PMI of the hidden-class shapes
joint. (a) linear heads against the exact floor at each d; (b) held-out PMI error against steps
for fresh samples and a fixed set, with the linear floor at d = K, the latent-table optimum and
the reach tolerance as lines; (c) the fixed set's training loss against log N − I, with the
held-out error on the same steps (x: epochs of the fixed set).

Every point that is a mean over seeds carries an error bar of ± 1 SE over seeds (sample sd /
sqrt(n), ddof 1); the verdicts, with their intervals, are in the title (`style.banner`).
Legends sit below each panel, off the data.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pmilab import registry
from pmilab.experiments.claims.t7 import crossing, trace_long
from pmilab.experiments.claims.tolerances import REACH_TOL_MC, Z_TOL
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.figures.style import HEAD_COLORS, banner, of_figure, save
from pmilab.pretrain.shapes import HIDDEN_CLASSES

FRESH, FIXED = "#8250df", "#cf222e"
SE_NOTE = "mean ± 1 SE over seeds"


def mean_se(df: pd.DataFrame, x: str, col: str) -> pd.DataFrame:
    """Per value of x: mean of col over seeds and its SE (sd ddof 1 / sqrt(n); NaN for n = 1)."""
    g = df.groupby(x, sort=True)[col]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out["se"] = out["std"] / np.sqrt(out["count"])
    return out


def _legend_below(ax, handles=None, labels=None) -> None:
    """The legend under the panel (below its x label), never over the curves."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    ax.legend(
        handles,
        labels,
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.13),
        ncol=2,
        frameon=False,
    )


def _linear_panel(ax, lin: pd.DataFrame, fresh: pd.DataFrame, optimum: float) -> None:
    lin = lin.assign(rel=lin.pmi_rmse_product / lin.product_std)
    s = mean_se(lin, "dim", "rel")
    floors = lin.groupby("dim").apply(
        lambda g: (g.rank_floor / g.product_std).iloc[0], include_groups=False
    )
    ax.plot(floors.index, floors.to_numpy(), "k--", marker="_", ms=14, label="exact floor(d)")
    ax.errorbar(
        s["dim"],
        s["mean"],
        yerr=s["se"],
        fmt="o",
        capsize=3,
        color=HEAD_COLORS["linear"],
        label=f"linear head, pixels (fresh), {SE_NOTE}",
    )
    r = fresh.pmi_rmse_product / fresh.product_std
    m, se = float(r.mean()), float(r.std(ddof=1) / np.sqrt(len(r)))
    ax.axhline(m, color=FRESH, ls="-", lw=1.2, label=f"KME M=K={HIDDEN_CLASSES}, pixels (fresh)")
    ax.axhspan(m - se, m + se, color=FRESH, alpha=0.2, lw=0, label="KME ± 1 SE over seeds")
    ax.axhline(optimum, color="grey", ls=":", label="latent-table optimum (KME)")
    ax.axvline(HIDDEN_CLASSES, color="grey", lw=0.6)
    ax.set_xlabel("linear head dimension d")
    ax.set_ylabel("held-out rmse / sd(PMI)  [dimensionless]")
    ax.set_ylim(bottom=0)
    ax.set_xticks(sorted(set(floors.index) | {HIDDEN_CLASSES}))
    ax.set_xlim(min(floors.index) - 0.5, max(floors.index) + 0.5)
    ax.set_title("(a) T7a: linear heads stay above the floor of the latent table")
    _legend_below(ax)


def _curve(ax, tr: pd.DataFrame, color: str, label: str, x: str = "step") -> None:
    for _, g in tr.groupby("seed"):
        ax.plot(g[x], g.rel, color=color, alpha=0.3, lw=0.7)
    m = mean_se(tr, x, "rel")
    ax.errorbar(
        m[x], m["mean"], yerr=m["se"], color=color, marker="o", ms=3, capsize=2, label=label
    )


def _steps_panel(ax, tr: pd.DataFrame, floor_k: float, optimum: float, n_train: int) -> None:
    kme = registry.builtin_mask(tr.similarity, "kme")
    _curve(ax, tr[kme & (tr.data == "fresh")], FRESH, "KME, fresh samples")
    _curve(ax, tr[kme & (tr.data == "fixed")], FIXED, f"KME, fixed set of {n_train}")
    lin = tr[registry.builtin_mask(tr.similarity, "linear") & (tr["dim"] == HIDDEN_CLASSES)]
    _curve(ax, lin, HEAD_COLORS["linear"], f"linear d=K={HIDDEN_CLASSES}, fresh")
    ax.axhline(floor_k, color="black", ls="--", label=f"linear floor at d=K ({floor_k:.3f})")
    ax.axhline(
        optimum + REACH_TOL_MC, color="#1a7f37", ls=":", label=f"optimum + tolerance {REACH_TOL_MC}"
    )
    ax.axhline(optimum, color="grey", ls="-", lw=1.5, label=f"latent-table optimum ({optimum:.0e})")
    ax.set_ylim(0, 1.2)
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out rmse / sd(PMI)  [dimensionless]")
    ax.set_title(
        f"(b) T7b/T7c: held-out PMI error ({SE_NOTE}; thin: seeds; clipped at 1.2)", fontsize=8
    )
    _legend_below(ax)


def _overfit_panel(ax, tr: pd.DataFrame, n_train: int, batch: int) -> None:
    """x: epochs of the fixed set (for fresh samples: the same number of images seen)."""
    kme = tr[registry.builtin_mask(tr.similarity, "kme")].assign(
        ep=lambda t: t.step * batch / n_train
    )
    fixed, fresh = kme[kme.data == "fixed"], kme[kme.data == "fresh"]
    for g, color, label in ((fixed, FIXED, "fixed set"), (fresh, FRESH, "fresh samples")):
        m = mean_se(g, "ep", "train_loss")
        ax.errorbar(
            m.ep,
            m["mean"],
            yerr=m["se"],
            color=color,
            marker=".",
            capsize=2,
            label=f"training loss, {label}",
        )
    floor = float(fixed.loss_floor.iloc[0])
    ax.axhline(floor, color="black", ls="--", label=f"log N - I = {floor:.3f} nats")
    cross = crossing(fixed)
    if cross.cross_epochs.notna().any():
        ax.axvline(
            float(cross.cross_epochs.mean()),
            color=FIXED,
            ls=":",
            label=f"fixed: loss below log N - I (by > {Z_TOL:g} SE)",
        )
    ax.set_xlabel(f"epochs of the fixed set of {n_train} (fresh: images seen / {n_train})")
    ax.set_ylabel("training InfoNCE loss (mean since last record)  [nats]")
    right = ax.twinx()
    right.grid(False)
    for g, color, label in ((fixed, FIXED, "fixed"), (fresh, FRESH, "fresh")):
        m = mean_se(g, "ep", "rel")
        right.errorbar(
            m.ep,
            m["mean"],
            yerr=m["se"],
            color=color,
            ls="-.",
            lw=1,
            capsize=2,
            label=f"held-out rmse/sd, {label} (right)",
        )
    right.set_yscale("log")
    right.set_ylabel("held-out rmse / sd(PMI), log scale  [dimensionless]")
    lines, more = ax.get_legend_handles_labels(), right.get_legend_handles_labels()
    _legend_below(ax, lines[0] + more[0], lines[1] + more[1])
    ax.set_title(f"(c) T7c: the fixed set's training loss goes below log N - I ({SE_NOTE})")


def draw(tables: dict[str, pd.DataFrame], results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    fresh, fixed = tables["t7-kme"], tables["t7-fixed"]
    lin, tab = tables["t7-linear"], tables["t7-table"]
    kme = pd.concat([fresh, fixed], ignore_index=True)
    tr = pd.concat([trace_long(kme), trace_long(lin)], ignore_index=True)
    optimum = float((tab.pmi_rmse_product / tab.product_std).mean())
    floor_k = float((kme.rank_floor_k / kme.product_std).iloc[0])
    n_train = int(fixed.n_train.iloc[0])
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(17, 6.6))
    _linear_panel(a, lin, fresh, optimum)
    _steps_panel(b, tr, floor_k, optimum, n_train)
    _overfit_panel(c, tr, n_train, int(kme.batch_size.iloc[0]))
    banner(
        fig,
        of_figure(results, "t7_pixels"),
        "T7: similarity heads on real pixels and tokens, against the exact PMI (hidden-class "
        f"shapes, K = {HIDDEN_CLASSES})",
    )
    fig.subplots_adjust(wspace=0.45, bottom=0.27, left=0.05, right=0.94)
    return save(fig, fig_dir, "t7_pixels")

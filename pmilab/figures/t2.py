"""T2 figures: error against capacity per family, the linear rank, and the Gaussian case.

Every point that is a mean over seeds carries its standard error over seeds (the seed is the
replicate); the exact Eckart–Young floors and the closed-form Gaussian floor are exact and drawn
as lines without bars. Legends sit below the panels, off the data.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pmilab import registry
from pmilab.experiments.claims.t2 import DOUBLE, HALF, LONG_FACTOR
from pmilab.experiments.claims.tolerances import REACH_TOL, REACH_TOL_MC, rel_error
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.figures.style import HEAD_COLORS, HEAD_MARKERS, banner, of_figure, save
from pmilab.stats import group_mean_se

LABELS = {
    "linear": "linear (CLIP), x = d",
    "kme": "KME, x = M",
    "wpse": "WPSE, x = M",
    "tabular": "tabular (reference)",
}
CURVES = ("linear", "wpse", "kme")  # the heads drawn as capacity curves (tabular: a reference)
FLOOR_CLIP = 1e-8  # exact floors below this are drawn at it (log axis)


def _errorbar(ax, x, mean, se, **kw) -> None:
    """Mean ± SE on a log axis: the lower bar stops short of 0 (a bar reaching below 0 has
    no place on a log axis; the upper bar is the SE)."""
    mean, se = np.asarray(mean, float), np.nan_to_num(np.asarray(se, float))
    lower = np.minimum(se, 0.9 * mean)
    ax.errorbar(x, mean, yerr=[lower, se], capsize=3, **kw)


def _capacity(
    df: pd.DataFrame,
    long: pd.DataFrame,
    ctl: pd.DataFrame,
    results: list[ClaimResult],
    fig_dir: Path,
) -> list[Path]:
    linear = registry.builtin_mask(df.similarity, "linear")
    df = df.assign(rel=rel_error(df), cap=np.where(linear, df["dim"], df.points))
    long = long.assign(rel=rel_error(long), cap=long["dim"])
    ctl = ctl.assign(rel=rel_error(ctl), cap=ctl.points)
    ks = sorted(df.k.unique())
    fig, axes = plt.subplots(1, len(ks) + 1, figsize=(max(3.4 * (len(ks) + 1), 9.0), 6.0))
    handles: dict[str, object] = {}
    for i, (ax, k) in enumerate(zip(axes, ks, strict=False)):
        if i:
            ax.sharey(axes[0])
        _capacity_panel(ax, df[df.k == k], long[long.k == k], k)
        c = group_mean_se(ctl[ctl.k == k], ["cap"], "rel")
        if len(c):
            _errorbar(
                ax, c.cap, c["mean"], c["se"], fmt=":x", color="#cf222e",
                label="control: linear d=2 at each M (T2c)",
            )  # fmt: skip
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    axes[0].set_ylabel("PMI error rmse / sd(PMI)  [mean ± SE over seeds]")
    ax = axes[-1]
    lin = df[linear]
    d = np.array(sorted(lin["dim"].unique()))
    ax.plot(
        d, np.minimum(d + 1, 20), color="grey", lw=4, alpha=0.4, label="rank bound min(d+1, ny)"
    )
    for k in ks:
        s = group_mean_se(lin[lin.k == k], ["dim"], "rank")
        ax.errorbar(
            s["dim"], s["mean"], yerr=s["se"], marker="o", capsize=3, label=f"rank, K = {k}"
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("linear head dimension d")
    ax.set_ylabel("numerical rank of the learned logit table")
    ax.set_title("rank of the learned linear table")
    for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
        handles.setdefault(lab, h)
    ncol = max(2, len(axes))  # one column per panel's width: the legend fits the figure
    rows = -(-len(handles) // ncol)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=ncol, fontsize=7.5)
    banner(
        fig, of_figure(results, "t2_capacity"), "T2: error against capacity (exact population loss)"
    )
    fig.subplots_adjust(bottom=0.12 + 0.03 * rows, wspace=0.3)
    return save(fig, fig_dir, "t2_capacity")


def _capacity_panel(ax, sub: pd.DataFrame, long: pd.DataFrame, k: int) -> None:
    for sim in CURVES:
        s = group_mean_se(sub[registry.builtin_mask(sub.similarity, sim)], ["cap"], "rel")
        if len(s):
            _errorbar(
                ax, s.cap, s["mean"], s["se"], color=HEAD_COLORS[sim],
                marker=HEAD_MARKERS[sim], label=LABELS[sim],
            )  # fmt: skip
    s = group_mean_se(long, ["cap"], "rel")
    if len(s):
        _errorbar(
            ax, s.cap * 1.12, s["mean"], s["se"], fmt="o", mfc="none", color=HEAD_COLORS["linear"],
            label=f"linear d = K, {LONG_FACTOR}x the steps (T2a)",
        )  # fmt: skip
    lin = sub[registry.builtin_mask(sub.similarity, "linear")]
    if len(lin):
        fl = group_mean_se(lin.assign(fl=lin.rank_floor / lin.product_std), ["cap"], "fl")
        ax.plot(
            fl.cap,
            fl["mean"].clip(lower=FLOOR_CLIP),
            "--_",
            ms=14,
            color=HEAD_COLORS["linear"],
            alpha=0.7,
            label=f"linear floor (Eckart-Young, exact; drawn at >= {FLOOR_CLIP:g})",
        )
    tab = group_mean_se(sub[registry.builtin_mask(sub.similarity, "tabular")], ["cap"], "rel")
    if len(tab):
        _errorbar(
            ax, tab.cap, tab["mean"], tab["se"], fmt=HEAD_MARKERS["tabular"],
            color=HEAD_COLORS["tabular"], label=LABELS["tabular"],
        )  # fmt: skip
    ax.axhline(REACH_TOL, color="red", ls=":", label=f"reach tolerance {REACH_TOL}")
    ax.axvline(k, color="grey", ls="-.", lw=1, label="capacity = K")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_title(f"K = {k} latent classes (24x20 table)")
    ax.set_xlabel("d (linear) or points M (WPSE, KME)")


def _gaussian(df: pd.DataFrame, results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    df = df.assign(rel=rel_error(df))
    raw, quad = df[df.features == "raw"], df[df.features == "quadratic"]
    bars = [
        ("bilinear, raw x\n(T2d control)", raw.rel, "#cf222e"),
        ("bilinear, x + norm\nfeatures (T2d)", quad.rel, "#1a7f37"),
        ("same, +0.5x tol\n(must PASS)", quad[HALF], "#8c959f"),
        ("same, +2x tol\n(must FAIL)", quad[DOUBLE], "#57606a"),
    ]
    means = [v.mean() for _, v, _ in bars]
    ses = [v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.nan for _, v, _ in bars]
    ax.bar([b[0] for b in bars], means, yerr=ses, capsize=5, color=[b[2] for b in bars])
    floor = df.bilinear_floor.iloc[0] / df.product_std.iloc[0]
    ax.axhline(
        floor, color="black", ls="--", label=f"closed-form bilinear floor {floor:.2f} (exact)"
    )
    ax.axhline(REACH_TOL_MC, color="red", ls=":", label=f"reach tolerance {REACH_TOL_MC}")
    ax.set_ylabel("PMI error rmse / sd(PMI)  [mean ± SE over seeds]")
    ax.tick_params(axis="x", labelsize=7.5)
    ax.set_title(f"Gaussian dx=dy=2, rho=(0.8, 0.5); n = {len(quad)} seeds (Monte Carlo)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=7.5)
    banner(
        fig,
        of_figure(results, "t2_gaussian"),
        "T2: a linear head needs norm features on a Gaussian",
    )
    fig.subplots_adjust(bottom=0.22)
    return save(fig, fig_dir, "t2_gaussian")


def draw(tables: dict[str, pd.DataFrame], results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    return _capacity(
        tables["heads"], tables["t2-linear-long"], tables["t2-control"], results, fig_dir
    ) + _gaussian(tables["t2-gauss"], results, fig_dir)

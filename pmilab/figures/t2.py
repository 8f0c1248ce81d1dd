"""T2 figures: error against capacity per family, the linear rank, and the Gaussian case."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

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


def _capacity(
    df: pd.DataFrame, ctl: pd.DataFrame, results: list[ClaimResult], fig_dir: Path
) -> list[Path]:
    df = df.assign(rel=rel_error(df), cap=np.where(df.similarity == "linear", df["dim"], df.points))
    ctl = ctl.assign(rel=rel_error(ctl), cap=ctl.points)
    ks = sorted(df.k.unique())
    fig, axes = plt.subplots(1, len(ks) + 1, figsize=(3.4 * (len(ks) + 1), 5.2))
    handles: dict[str, object] = {}
    for i, (ax, k) in enumerate(zip(axes, ks, strict=False)):
        if i:
            ax.sharey(axes[0])
        _capacity_panel(ax, df[df.k == k], k)
        c = group_mean_se(ctl[ctl.k == k], ["cap"], "rel")
        if len(c):
            ax.plot(c.cap, c["mean"], ":x", color="#cf222e", label="control: linear d=2 at each M")
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    axes[0].set_ylabel("PMI error rmse / sd(PMI)  [dimensionless]")
    ax = axes[-1]
    lin = df[df.similarity == "linear"]
    d = np.array(sorted(lin["dim"].unique()))
    ax.plot(d, np.minimum(d + 1, 20), color="grey", lw=4, alpha=0.4, label="bound min(d+1, ny)")
    for k in ks:
        s = group_mean_se(lin[lin.k == k], ["dim"], "rank")
        ax.errorbar(s["dim"], s["mean"], yerr=s["se"], marker="o", capsize=3, label=f"K = {k}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("linear head dimension d")
    ax.set_ylabel("numerical rank of learned logit table")
    ax.set_title("rank of the learned linear table")
    ax.legend(fontsize=7)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=4, fontsize=7.5)
    banner(
        fig, of_figure(results, "t2_capacity"), "T2: error against capacity (exact population loss)"
    )
    fig.subplots_adjust(bottom=0.2, wspace=0.3)
    return save(fig, fig_dir, "t2_capacity")


def _capacity_panel(ax, sub: pd.DataFrame, k: int) -> None:
    for sim in ("linear", "wpse", "kme"):
        s = group_mean_se(sub[sub.similarity == sim], ["cap"], "rel")
        if len(s):
            ax.errorbar(
                s.cap,
                s["mean"],
                yerr=s["se"],
                color=HEAD_COLORS[sim],
                marker=HEAD_MARKERS[sim],
                capsize=3,
                label=LABELS[sim],
            )
    lin = sub[sub.similarity == "linear"]
    if len(lin):
        fl = group_mean_se(lin.assign(fl=lin.rank_floor / lin.product_std), ["cap"], "fl")
        ax.plot(
            fl.cap,
            fl["mean"].clip(lower=1e-4),
            "--_",
            ms=14,
            color=HEAD_COLORS["linear"],
            alpha=0.7,
            label="linear floor (Eckart-Young, exact; clipped at 1e-4)",
        )
    tab = sub[sub.similarity == "tabular"]
    if len(tab):
        ax.axhline(
            max(tab.rel.mean(), 1e-4),
            color=HEAD_COLORS["tabular"],
            lw=1,
            label="tabular reference (clipped at 1e-4)",
        )
    ax.axhline(REACH_TOL, color="red", ls=":", label=f"reach tolerance {REACH_TOL}")
    ax.axvline(k, color="grey", ls="-.", lw=1, label="capacity = K")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_title(f"K = {k} latent classes (24x20 table)")
    ax.set_xlabel("d (linear) or points M (WPSE, KME)")


def _gaussian(df: pd.DataFrame, results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(6, 4.4))
    labels, means, errs = [], [], []
    for feats, name in (("raw", "bilinear, raw x"), ("quadratic", "bilinear, x + norm features")):
        s = df[df.features == feats]
        r = s.pmi_rmse_product / s.product_std
        se = np.sqrt(
            (s.pmi_rmse_product_se / s.product_std).pow(2).mean() + r.var(ddof=1) / len(r)
            if len(r) > 1
            else (s.pmi_rmse_product_se / s.product_std).pow(2).mean()
        )
        labels.append(name)
        means.append(r.mean())
        errs.append(se)
    labels[0] += "\n(T2d's control)"
    ax.bar(labels, means, yerr=errs, capsize=5, color=["#cf222e", "#1a7f37"])
    floor = df.bilinear_floor.iloc[0] / df.product_std.iloc[0]
    ax.axhline(floor, color="black", ls="--", label=f"closed-form bilinear floor {floor:.2f}")
    ax.axhline(REACH_TOL_MC, color="red", ls=":", label=f"reach tolerance {REACH_TOL_MC}")
    ax.set_ylabel("PMI error rmse / sd(PMI)  [dimensionless]")
    ax.set_title("Gaussian dx=dy=2, rho=(0.8, 0.5); error bars: MC SE and seed spread")
    ax.legend()
    banner(
        fig,
        of_figure(results, "t2_gaussian"),
        "T2: a linear head needs norm features on a Gaussian",
    )
    return save(fig, fig_dir, "t2_gaussian")


def draw(tables: dict[str, pd.DataFrame], results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    return _capacity(tables["heads"], tables["t2-control"], results, fig_dir) + _gaussian(
        tables["t2-gauss"], results, fig_dir
    )

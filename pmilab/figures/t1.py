"""T1 figures: convergence to PMI + C (discrete, continuous, one-sided contrast) and the
saturation of the InfoNCE estimate at log N."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pmilab.experiments.claims.t1 import saturation_long
from pmilab.experiments.claims.tolerances import REACH_TOL, REACH_TOL_MC
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.figures.style import HEAD_COLORS, banner, of_figure, save
from pmilab.stats import group_mean_se


def _bars(ax, labels, means, errs, colors, tol, title, ylabel):
    x = np.arange(len(labels))
    for xi, m, e, c in zip(
        x, np.maximum(np.asarray(means), 1e-6), np.asarray(errs), colors, strict=True
    ):
        ax.errorbar([xi], [m], yerr=[e], fmt="o", ms=8, capsize=4, color=c)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_xticks(x, labels, rotation=15, ha="right")
    ax.axhline(tol, color="red", ls=":", label=f"reach tolerance {tol}")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper left")


def _convergence(tables, results, fig_dir: Path) -> list[Path]:
    d = tables["t1-discrete"].copy()
    c = tables["t1-continuous"].copy()
    fig, (a, b, e) = plt.subplots(1, 3, figsize=(14, 5.4))
    d["rel"] = d.pmi_rmse_product / d.product_std
    d["off"] = d.row_offset_sd / d.product_std
    d["name"] = d.similarity + " / " + d.objective.str.replace("_", "-")
    d.loc[d.similarity == "linear", "name"] = "control: linear d=2"
    s = group_mean_se(d[d.objective == "symmetric"], ["name", "similarity"], "rel")
    _bars(
        a,
        s["name"],
        s["mean"],
        s["se"],
        [HEAD_COLORS[v] for v in s.similarity],
        REACH_TOL,
        "discrete latent 24x20, K=4 (exact population loss)",
        "rmse / sd(PMI)  [dimensionless]",
    )
    c["rel"] = c.pmi_rmse_product / c.product_std
    c["rel_se"] = c.pmi_rmse_product_se / c.product_std
    c["name"] = c.dist.str.split(":").str[0] + " / " + c.similarity + " M=" + c.points.astype(str)
    shuffled = c.dist.str.endswith("|shuffled")
    c.loc[shuffled, "name"] = "control: " + c.name[shuffled] + " shuffled pairs"
    s = group_mean_se(c, ["name", "similarity"], "rel")
    se = c.groupby("name").rel_se.mean().reindex(s["name"]).to_numpy()
    _bars(
        b,
        s["name"],
        s["mean"],
        np.sqrt(s["se"] ** 2 + se**2),
        [HEAD_COLORS[v] for v in s.similarity],
        REACH_TOL_MC,
        "continuous joints (minibatches, Monte Carlo)",
        "rmse / sd(PMI)  [dimensionless]",
    )
    tab = d[d.similarity == "tabular"]
    for key, col, lab in (
        ("off", "#8250df", "row-offset sd of c(x) / sd(PMI)"),
        ("rel", "#0969da", "rmse / sd(PMI)"),
    ):
        s = group_mean_se(tab, ["objective"], key)
        xs = np.arange(len(s)) + (0.2 if key == "rel" else -0.2)
        e.bar(xs, np.maximum(s["mean"], 1e-6), width=0.38, yerr=s["se"], color=col, label=lab)
    e.set_xticks(np.arange(len(s)), [o.replace("_", "-") + " InfoNCE" for o in s.objective])
    e.axhline(REACH_TOL, color="red", ls=":", label=f"reach tolerance {REACH_TOL}")
    e.set_yscale("log")
    e.set_ylabel("[dimensionless]")
    e.set_title("tabular head: one-sided leaves logit = PMI + c(x)")
    e.legend(loc="lower left", fontsize=7)
    banner(fig, of_figure(results, "t1_convergence"), "T1: trained logits converge to PMI + C")
    fig.subplots_adjust(bottom=0.2, wspace=0.3)
    return save(fig, fig_dir, "t1_convergence")


def _saturation(tables, results, fig_dir: Path) -> list[Path]:
    t = saturation_long(tables["t1-saturation"])
    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    s = t.groupby("N", as_index=False).mean(numeric_only=True)
    ax.errorbar(
        s.N,
        s["est"],
        yerr=4 * s.est_se,
        marker="o",
        capsize=3,
        color="#0969da",
        label="trained tabular head: log N - loss_N (4 SE bars)",
    )
    ax.plot(s.N, s.pmi, "x", color="black", label="exact PMI critic")
    ax.plot(s.N, s.shuf, "v", color="#cf222e", label="control: the head on broken pairs")
    ax.plot(s.N, s.log_n, "k--", label="log N (hard cap)")
    ax.axhline(s.mi.iloc[0], color="grey", ls=":", label=f"I(X;Y) = {s.mi.iloc[0]:.3f} nats")
    ax.fill_between(
        s.N,
        s.lower,
        s.upper,
        color="#0969da",
        alpha=0.12,
        label="allowed band: [log N - B_N - 2 Delta, min(I, log N)]",
    )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size N")
    ax.set_ylabel("MI estimate  [nats]")
    ax.set_title("noisy-diagonal 32x32 table (diag:n=32,noise=0.1)")
    ax.legend(loc="lower right", fontsize=7)
    banner(fig, of_figure(results, "t1_saturation"), "T1: the InfoNCE estimate saturates at log N")
    return save(fig, fig_dir, "t1_saturation")


def draw(tables: dict[str, pd.DataFrame], results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    return _convergence(tables, results, fig_dir) + _saturation(tables, results, fig_dir)

"""T5 figures: Δ and error against the logit-scale cap; error against batch size N."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pmilab.experiments.claims.tolerances import Z_TOL, rel_error
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.figures.style import banner, of_figure, save
from pmilab.stats import group_mean_se


def _cap(df: pd.DataFrame, results, fig_dir: Path) -> list[Path]:
    free = df[df.logit_cap == 0]  # the same head with no cap: T5b's reference
    df = df[df.logit_cap > 0]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.6))
    s = group_mean_se(df, ["logit_cap"], "pmi_delta")
    a.errorbar(s.logit_cap, s["mean"], yerr=s["se"], marker="o", capsize=3, label="learned Delta")
    caps = np.geomspace(df.logit_cap.min(), df.logit_cap.max(), 100)
    r = df.pmi_half_range.iloc[0]
    a.plot(caps, np.maximum(r - caps, 0), "k--", label="exact floor max(0, R - t)")
    a.axvline(r, color="grey", ls=":", label=f"R = half-range of PMI = {r:.2f}")
    a.set_xscale("log", base=2)
    a.set_xlabel("logit-scale cap t  [nats]")
    a.set_ylabel("Delta = half-range of (logit - PMI)  [nats]")
    a.set_title("every point must sit on or above the floor")
    a.legend()
    s = group_mean_se(df.assign(rel=rel_error), ["logit_cap"], "rel")
    b.errorbar(
        s.logit_cap,
        s["mean"],
        yerr=s["se"],
        marker="o",
        capsize=3,
        color="#0969da",
        label="cosine head (learnable scale, capped)",
    )
    b.axhline(rel_error(free).mean(), color="#1a7f37", ls="--", label="the same head with no cap")
    b.axvline(r, color="grey", ls=":", label="t = R")
    b.set_xscale("log", base=2)
    b.set_yscale("log")
    b.set_xlabel("logit-scale cap t  [nats]")
    b.set_ylabel("rmse / sd(PMI)  [dimensionless]")
    b.set_title("error falls as the cap rises, flat once t >= R")
    b.legend()
    banner(
        fig, of_figure(results, "t5_temperature"), "T5: the logit-scale cap limits the PMI range"
    )
    fig.subplots_adjust(wspace=0.3)
    return save(fig, fig_dir, "t5_temperature")


def _batch(df: pd.DataFrame, results, fig_dir: Path) -> list[Path]:
    fig, (a, ax) = plt.subplots(1, 2, figsize=(11, 4.6))
    z = df.assign(z=df.lossn_diff / df.lossn_diff_se)
    for i, (n, sub) in enumerate(z.groupby("batch_size")):
        a.plot(np.full(len(sub), n), sub.z, "o", color="#0969da",
               label="trained head vs PMI" if i == 0 else None)  # fmt: skip
    a.axhspan(
        -Z_TOL,
        a.get_ylim()[1] if len(z) else Z_TOL,
        color="#1a7f37",
        alpha=0.1,
        label=f"z >= -{Z_TOL:g}: the head does not beat PMI",
    )
    zp = df.assign(z=df.lossn_pert_diff / df.lossn_pert_diff_se)
    for i, (n, sub) in enumerate(zp.groupby("batch_size")):
        a.plot(np.full(len(sub), n), sub.z, "s", color="#bf8700",
               label="PMI + noise vs PMI (must be > +4)" if i == 0 else None)  # fmt: skip
        a.plot(np.full(len(sub), n), -sub.z, "v", color="#cf222e",
               label="control: PMI vs PMI + noise" if i == 0 else None)  # fmt: skip
    a.axhline(0, color="black", lw=0.8)
    a.set_yscale("symlog", linthresh=5)
    a.set_xscale("log", base=2)
    a.set_xlabel("batch size N (training and evaluation)")
    a.set_ylabel("paired z of loss_N(head) - loss_N(PMI)  [SE units]")
    a.set_title("E[loss_N] is minimised by PMI + C at every N (T1b)")
    a.legend(loc="lower right")
    s = group_mean_se(df.assign(rel=rel_error), ["batch_size"], "rel")
    ax.errorbar(
        s.batch_size,
        s["mean"],
        yerr=s["se"],
        marker="o",
        capsize=3,
        label=f"tabular head after {int(df.steps.iloc[0])} steps",
    )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size N")
    ax.set_ylabel("rmse / sd(PMI)  [dimensionless]")
    ax.set_title("PMI error at a fixed step budget (fewer pairs seen at small N)")
    ax.legend()
    banner(fig, of_figure(results, "t5_batch"), "T5: PMI + C is the optimum at every batch size")
    fig.subplots_adjust(wspace=0.3)
    return save(fig, fig_dir, "t5_batch")


def draw(tables: dict[str, pd.DataFrame], results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    return _cap(tables["t5-cap"], results, fig_dir) + _batch(tables["t5-batch"], results, fig_dir)

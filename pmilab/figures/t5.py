"""T5 figures: Δ and error against the logit-scale cap (T5a, T5b); the expected loss_N gap of
heads trained at each batch size N (T5c); the best temperature at each N (T5d).

Every point that is a mean over seeds carries its standard error over seeds (the seed is the
replicate); exact floors are drawn as lines without bars. The tolerance of each judged row is
drawn as a band or a line. Legends sit below the panels, off the data.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pmilab.experiments.claims.t5 import LOSSN_TOL
from pmilab.experiments.claims.tolerances import REACH_TOL, rel_error
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.experiments.tasks.catalog import make_dist
from pmilab.experiments.tasks.t5_heads import clip_rmse_floor
from pmilab.figures.style import FAIL_COLOR, PASS_COLOR, banner, of_figure, save
from pmilab.stats import group_mean_se

NEAR_COLOR, HALF_COLOR = "#cf222e", "#bf8700"


def _bars(ax, df: pd.DataFrame, by: str, col: str, **kw) -> None:
    s = group_mean_se(df, [by], col)
    ax.errorbar(s[by], s["mean"], yerr=s["se"], capsize=3, **kw)


def _legend_below(fig, axes, ncol: int = 3) -> None:
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.legend([handles[k] for k in labels], labels, loc="lower center", ncol=ncol, frameon=False)


def _cap(df: pd.DataFrame, results, fig_dir: Path) -> list[Path]:
    df = df.assign(rel=rel_error)
    free = df[df.logit_cap == 0]  # the same head with no cap
    capped = df[df.logit_cap > 0]
    r = float(df.pmi_half_range.iloc[0])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 5.6))
    _bars(a, capped, "logit_cap", "pmi_delta", marker="o", label="learned Delta (mean ± SE)")
    caps = np.geomspace(capped.logit_cap.min(), capped.logit_cap.max(), 200)
    a.plot(caps, np.maximum(r - caps, 0), "k--", label="exact floor (Delta: max(0, R - t))")
    a.axvline(r, color="grey", ls=":", label=f"t = R = {r:.2f} (half-range of PMI)")
    a.set_xscale("log", base=2)
    a.set_xlabel("logit-scale cap t  [nats]")
    a.set_ylabel("Delta = half-range of (logit - PMI)  [nats]")
    a.set_title("T5a: every run sits on or above the floor")

    d = make_dist(str(df.dist.iloc[0]))
    sd = float(df.product_std.iloc[0])
    below = caps[caps < r]  # the floor is exactly 0 from t = R on (not drawable on a log axis)
    floor = [clip_rmse_floor(d.pmi_table(), d.px, d.py, c) / sd for c in below]
    b.plot(below, floor, "k--", label="exact floor (rmse: clipped PMI; 0 for t >= R)")
    _bars(b, capped, "logit_cap", "rel", marker="o", color="#0969da",
          label="cosine head, scale capped at t")  # fmt: skip
    if len(free):
        m = free.rel.mean()
        se = free.rel.std(ddof=1) / np.sqrt(len(free)) if len(free) > 1 else 0.0
        b.axhspan(m - se, m + se, color="#1a7f37", alpha=0.25, label="the same head, no cap (± SE)")
    above = df[(df.logit_cap >= r) | (df.logit_cap == 0)]
    above = above.assign(
        x=np.where(above.logit_cap > 0, above.logit_cap, capped.logit_cap.max() * 1.4)
    )
    _bars(b, above, "x", "rel_near", fmt="v", color=NEAR_COLOR,
          label="calibration: + field of 2x tolerance (must FAIL)")  # fmt: skip
    _bars(b, above, "x", "rel_half", fmt="^", color=HALF_COLOR,
          label="calibration: + field of 0.5x tolerance (must PASS)")  # fmt: skip
    b.axhline(REACH_TOL, color=PASS_COLOR, ls="-.", label=f"reach tolerance {REACH_TOL}")
    b.axvline(r, color="grey", ls=":")
    b.set_xscale("log", base=2)
    b.set_yscale("log")
    b.set_xlabel("logit-scale cap t  [nats]  (rightmost: no cap)")
    b.set_ylabel("rmse / sd(PMI)  [dimensionless]")
    b.set_title("T5b: once t >= R the capped head reaches PMI")
    _legend_below(fig, (a, b))
    banner(
        fig, of_figure(results, "t5_temperature"), "T5: the logit-scale cap limits the PMI range"
    )
    fig.subplots_adjust(wspace=0.3, bottom=0.27)
    return save(fig, fig_dir, "t5_temperature")


def _batch(df: pd.DataFrame, results, fig_dir: Path) -> list[Path]:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 5.6))
    for col, kw in (
        ("lossn_diff", dict(fmt="o-", color="#444444", label="head trained on E[loss_N] - PMI")),
        ("lossn_near_diff", dict(fmt="v:", color=NEAR_COLOR,
                                 label="calibration: PMI at a temperature off 2x (must FAIL)")),
        ("lossn_half_diff", dict(fmt="^:", color=HALF_COLOR,
                                 label="calibration: PMI at a temperature off 0.5x (must PASS)")),
    ):  # fmt: skip
        _bars(a, df, "batch_size", col, **kw)
    a.axhspan(-LOSSN_TOL, LOSSN_TOL, color=PASS_COLOR, alpha=0.1,
              label=f"equivalence band +-{LOSSN_TOL:g} nats")  # fmt: skip
    a.axhline(0, color="black", lw=0.8)
    noise = df.groupby("batch_size").lossn_noise_diff.mean()
    a.set_title(
        "T5c: held-out E[loss_N] gap to PMI (mean ± SE)\ncontrol PMI + noise: "
        + ", ".join(f"{v:.3f}" for v in noise)
        + " nats (off the axis)"
    )
    a.set_xscale("log", base=2)
    a.set_xlabel("batch size N (training and evaluation)")
    a.set_ylabel("E[loss_N(candidate)] - E[loss_N(PMI)]  [nats]")
    _bars(b, df, "batch_size", "rel_error", fmt="s-", color="#444444",
          label="PMI error of the trained head")  # fmt: skip
    b.axhline(REACH_TOL, color=PASS_COLOR, ls="-.", label=f"reach tolerance {REACH_TOL}")
    b.set_xscale("log", base=2)
    b.set_yscale("log")
    b.set_xlabel("batch size N")
    b.set_ylabel("rmse / sd(PMI)  [dimensionless]")
    b.set_title("the heads trained at each N converge to PMI + C")
    _legend_below(fig, (a, b))
    banner(fig, of_figure(results, "t5_batch"), "T5: PMI + C minimises E[loss_N] at every N")
    fig.subplots_adjust(wspace=0.3, bottom=0.25)
    return save(fig, fig_dir, "t5_batch")


def _scale(df: pd.DataFrame, results, fig_dir: Path) -> list[Path]:
    free = df[df.logit_cap == 0]
    cols = [c for c in free.columns if c.startswith("scale_N")]
    ns = sorted(int(c.removeprefix("scale_N")) for c in cols)
    fig, ax = plt.subplots(1, 1, figsize=(7.5, 5.4))
    for key, kw in (
        ("scale_N{}", dict(fmt="o-", color="#0969da", label="free cosine head (learned scale)")),
        ("scale_near_N{}", dict(fmt="v:", color=NEAR_COLOR,
                                label="calibration: its logits / 1.1 (must FAIL)")),
        ("scale_half_N{}", dict(fmt="^:", color=HALF_COLOR,
                                label="calibration: its logits / 1.025 (must PASS)")),
    ):  # fmt: skip
        v = np.array([free[key.format(n)].to_numpy() - 1.0 for n in ns])  # (N, seeds)
        se = v.std(axis=1, ddof=1) / np.sqrt(v.shape[1]) if v.shape[1] > 1 else 0 * v[:, 0]
        ax.errorbar(ns, v.mean(axis=1), yerr=se, capsize=3, **kw)
    ax.axhspan(-REACH_TOL, REACH_TOL, color=PASS_COLOR, alpha=0.1,
               label=f"equivalence band +-{REACH_TOL}")  # fmt: skip
    ax.axhline(0, color="black", lw=0.8)
    ax.axhline(2 * REACH_TOL, color=FAIL_COLOR, lw=0.6, ls=":", label="2x the tolerance")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size N of the held-out loss")
    ax.set_ylabel("alpha*_N - 1: best rescaling of the logits, minus 1  (mean ± SE)")
    ax.set_title("T5d: the temperature learned at N = infinity is optimal at every N")
    _legend_below(fig, (ax,), ncol=2)
    banner(fig, of_figure(results, "t5_scale"), "T5: the learned temperature does not depend on N")
    fig.subplots_adjust(bottom=0.25)
    return save(fig, fig_dir, "t5_scale")


def draw(tables: dict[str, pd.DataFrame], results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    cap = tables["t5-cap"]
    return (
        _cap(cap, results, fig_dir)
        + _batch(tables["t5-lossn"], results, fig_dir)
        + _scale(cap, results, fig_dir)
    )

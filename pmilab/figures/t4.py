"""T4 figures: the GD fixed point, the sinΘ rate with its controls, GD on CLIP at τ = 1 (a
finding), unpaired data (from the T4 sweeps), and the reference table of `results/t4/table.py`.
Control data are drawn in grey or red with labels that start "control:"."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pmilab.experiments.claims.t4 import (
    PREC_HIGH,
    PREC_LOW,
    SVD_TOL,
    clip_ratios,
    fit_rate,
    flat_in_n,
    flat_in_p,
    rate_variant,
)
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.experiments.tasks.linear_mmcl import trace_long
from pmilab.figures.style import FAIL_COLOR, NOTE_COLOR, banner, of_figure, save
from pmilab.stats import group_mean_se


def _finish(fig, results: list[ClaimResult], name: str, title: str, fig_dir: Path) -> list[Path]:
    fig.tight_layout()
    if results:
        banner(fig, of_figure(results, name), title)
    return save(fig, fig_dir, name)


def _num(v: float) -> str:
    """Two decimals, without the sign of a negative zero."""
    return f"{v:.2f}".replace("-0.00", "0.00")


def plot_rate(
    df: pd.DataFrame,
    fit: dict,
    results: list[ClaimResult],
    fig_dir: Path,
    col: str = "sin_theta_svd",
) -> list[Path]:
    """sinΘ vs n (log–log) per p_n with the fitted C·n^b/(1−p_n)^c; middle: sinΘ·(1−p_n)
    collapse; right: the two control series (T4b, T4c) through the same fit."""
    stats = group_mean_se(df, ["n", "p_n"], col)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ns = np.geomspace(stats["n"].min(), stats["n"].max(), 50)
    for p, sub in stats.groupby("p_n"):
        line = axes[0].errorbar(
            sub["n"], sub["mean"], yerr=sub["se"], marker="o", capsize=3, label=f"p_n = {p:g}"
        )
        pred = np.exp(fit["a"]) * ns ** fit["b"] / (1 - p) ** fit["c"]
        keep = pred <= 1.5  # the power law is only claimed below saturation
        axes[0].plot(ns[keep], pred[keep], ls="--", color=line[0].get_color(), alpha=0.6)
        axes[1].errorbar(
            sub["n"],
            sub["mean"] * (1 - p),
            yerr=sub["se"] * (1 - p),
            marker="o",
            capsize=3,
            label=f"p_n = {p:g}",
        )
    axes[1].plot(ns, np.exp(fit["a"]) * ns**-0.5, "k--", label="∝ n^(-1/2)")
    axes[0].set_title(f"fit on sinΘ ≤ 1 cells: b = {fit['b']:.3f}, c = {fit['c']:.3f} (dashed)")
    axes[1].set_title("rescaled: sinΘ·(1 − p_n)")
    flat_n, flat_p = flat_in_n(df, col), flat_in_p(df, col)
    fit_n, fit_p = fit_rate(flat_n, col), fit_rate(flat_p, col)
    for ctl, style, label in (
        (flat_n, dict(color=NOTE_COLOR, marker="x", ls=":"), "control T4b: flat in n"),
        (flat_p, dict(color=FAIL_COLOR, marker="+", ls="--", ms=9), "control T4c: flat in p_n"),
    ):
        cs = group_mean_se(ctl, ["n", "p_n"], col)
        for i, (_, sub) in enumerate(cs.groupby("p_n")):
            axes[2].plot(sub["n"], sub["mean"], alpha=0.8, label=label if i == 0 else None, **style)
    axes[2].set_title(
        f"controls through the same fit: flat in n b = {_num(fit_n['b'])}; "
        f"flat in p_n c = {_num(fit_p['c'])}",
        fontsize=8,
    )
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("number of pairs n (count)")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("‖sin Θ(Û1, U1)‖_F (dimensionless)")
    axes[1].set_ylabel("‖sin Θ‖_F · (1 − p_n) (dimensionless)")
    axes[2].set_ylabel("control series ‖sin Θ‖_F (dimensionless)")
    return _finish(fig, results, "t4_rate", "T4: sinΘ against n and p_n (τ → ∞ estimator)", fig_dir)


def plot_clip(clip: pd.DataFrame, results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    """GD on CLIP at τ=1 against the τ → ∞ estimator on the same draws: mean sinΘ at p_n = 0
    and 0.5 per n, with the ratio (a finding: the theory does not fix it)."""
    ratios = clip_ratios(clip)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    x = np.arange(len(ratios))
    bars = [
        ("svd_0", "τ → ∞ estimator, p_n = 0", "#0969da", None),
        ("svd_05", "τ → ∞ estimator, p_n = 0.5", "#0969da", "//"),
        ("clip_0", "GD on CLIP τ = 1, p_n = 0", "#8250df", None),
        ("clip_05", "GD on CLIP τ = 1, p_n = 0.5", "#8250df", "//"),
    ]
    for i, (col, label, color, hatch) in enumerate(bars):
        ax.bar(
            x + (i - 1.5) * 0.2,
            ratios[col],
            0.2,
            color=color,
            alpha=0.9 if hatch is None else 0.5,
            hatch=hatch,
            label=label,
        )
    top = float(ratios[["clip_05", "svd_05"]].max().max())
    for xi, r in zip(x, ratios.itertuples(), strict=True):
        ax.text(
            xi,
            1.08 * top,
            f"ratio 0.5/0: τ→∞ {r.svd_ratio:.2f}, CLIP {r.clip_ratio:.2f}",
            ha="center",
            fontsize=8,
        )
    ax.set_xticks(x, [f"n = {int(n)}" for n in ratios["n"]])
    ax.set_ylabel("mean ‖sin Θ(Û1, U1)‖_F (dimensionless)")
    ax.set_ylim(0, 1.75 * top)
    ax.set_title(
        f"finding (no verdict): 1/(1 − p_n) predicts a ratio of 2; {clip['rep'].nunique()} reps",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper center", ncol=2)
    return _finish(fig, results, "t4_clip", "T4: GD on CLIP at τ = 1 (finding)", fig_dir)


def plot_gd_svd(trace: pd.DataFrame, results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    """GD on the CLIP loss: distance of the learned subspace to the SVD of S(G) and to the truth."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for col, label in [
        ("sin_theta_to_svd", "sinΘ(row G1, top-r SVD of S(G))"),
        ("svd_residual", "‖G1ᵀG2 − SVD_r(S(G))/ρ‖ / ‖SVD_r(S(G))/ρ‖"),
        ("sin_theta_to_truth", "sinΘ(row G1, U1)"),
    ]:
        # log scale: geometric mean with the min–max range over seeds as the error bar
        g = trace.groupby("step")[col]
        mid = np.exp(np.log(g.min().clip(lower=1e-300)) / 2 + np.log(g.max()) / 2)
        ax.errorbar(mid.index, mid, yerr=[mid - g.min(), g.max() - mid], capsize=2, label=label)
    first = trace[trace["step"] == trace["step"].min()]
    for col, mk in (("sin_theta_to_svd", "X"), ("svd_residual", "P")):
        ax.plot(
            first["step"],
            first[col],
            mk,
            color=FAIL_COLOR,
            ms=9,
            label=f"control: {col} at the first recorded step, same check",
        )
    ax.axhline(SVD_TOL, color="black", ls=":", lw=1, label=f"pass: both <= {SVD_TOL:g}")
    ax.set_yscale("log")
    ax.set_xlabel("gradient-descent step (count)")
    ax.set_ylabel("distance (dimensionless)")
    n, p = int(trace["n"].iloc[0]), float(trace["p_n"].iloc[0])
    seeds = trace["rep"].nunique()
    ax.set_title(
        f"GD on the CLIP loss: n={n}, p_n={p:g}, τ=ρ=1 (bars: range over {seeds} seeds)", fontsize=9
    )
    ax.legend(fontsize=7)
    return _finish(fig, results, "t4_gd_svd", "T4: GD on the CLIP loss is an SVD", fig_dir)


def plot_unpaired(df: pd.DataFrame, results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    """Algorithm 1 at each r: sinΘ before/after the refit (left), precision and yield (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ranks = sorted(df["r"].unique())
    x = np.arange(len(ranks))
    for off, col, label in [
        (-0.2, "sin_theta_before", "pairs only"),
        (0.2, "sin_theta_after", "pairs + detected (ν>1)"),
    ]:
        st = group_mean_se(df, ["r"], col)
        axes[0].bar(x + off, st["mean"], 0.4, yerr=st["se"], capsize=3, label=label)
    axes[0].set_ylabel("‖sin Θ(Û1, U1)‖_F (dimensionless)")
    for off, col, label, hatch in [
        (-0.27, "precision_argmax", "finding: precision, row argmax", "//"),
        (0.0, "precision_mutual", "T4e (judged): precision, mutual argmax", None),
        (0.27, "yield_mutual", "finding: mutual pairs / N", "//"),
    ]:
        st = group_mean_se(df, ["r"], col)
        axes[1].bar(x + off, st["mean"], 0.27, yerr=st["se"], capsize=3, label=label, hatch=hatch)
    axes[1].axhline(PREC_LOW, color=FAIL_COLOR, ls=":", lw=1, label=f"T4e: r=10 <= {PREC_LOW}")
    axes[1].axhline(PREC_HIGH, color="black", ls=":", lw=1, label=f"T4e: r=30 >= {PREC_HIGH}")
    axes[1].set_title("controls (T4d, T4e): the same checks with the ranks swapped", fontsize=8)
    axes[1].set_ylim(0, 1.65)
    axes[1].set_ylabel("fraction (dimensionless)")
    N = int(df["N"].iloc[0])
    for ax in axes:
        ax.set_xticks(x, [f"r = {r}\n(log N = {np.log(N):.1f})" for r in ranks])
        ax.set_xlabel("signal rank r (count)")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=7, ncol=2, loc="upper left")
    axes[0].set_title(f"Algorithm 1: n={int(df['n'].iloc[0])} pairs, N={N} unpaired")
    return _finish(fig, results, "t4_unpaired", "T4: unpaired data (Algorithm 1)", fig_dir)


def plot_table(df: pd.DataFrame, reference: dict, fig_dir: Path) -> list[Path]:
    """The T4 table: ours (both estimators, mean ± SE over reps) against docs/theory.md's reference."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    svd = group_mean_se(df, ["n", "p_n"], "sin_theta_svd")
    has_clip = "sin_theta_clip" in df
    clip = (
        group_mean_se(df.dropna(subset=["sin_theta_clip"]), ["n", "p_n"], "sin_theta_clip")
        if has_clip
        else None
    )
    for p, sub in svd.groupby("p_n"):
        line = ax.errorbar(
            sub["n"],
            sub["mean"],
            yerr=sub["se"],
            marker="o",
            capsize=3,
            label=f"p_n = {p:g}: linear-loss SVD",
        )
        color = line[0].get_color()
        ref = sorted((n, v) for (n, q), v in reference.items() if q == p)
        ax.plot([n for n, _ in ref], [v for _, v in ref], "x", color=color, ms=9, mew=2)
        if clip is not None:
            c = clip[clip["p_n"] == p]
            ax.errorbar(
                c["n"],
                c["mean"],
                yerr=c["se"],
                ls=":",
                marker="s",
                mfc="none",
                color=color,
                capsize=3,
            )
    ax.plot([], [], "kx", ms=9, mew=2, label="docs/theory.md reference")
    if clip is not None:
        ax.plot([], [], "k:s", mfc="none", label="GD on CLIP, τ=1")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of pairs n (count)")
    ax.set_ylabel("‖sin Θ(Û1, U1)‖_F (dimensionless)")
    ax.set_title(
        f"T4 table: d=(40,39), r=10, σ=0.3, {df['rep'].nunique()} reps (mean ± SE)", fontsize=9
    )
    ax.legend(fontsize=7)
    return _finish(fig, [], "t4_table", "", fig_dir)


def draw(tables: dict[str, pd.DataFrame], results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    perm = rate_variant(tables["t4-rate"], "permute")
    return (
        plot_gd_svd(trace_long(tables["t4-gd"]), results, fig_dir)
        + plot_rate(perm, fit_rate(perm), results, fig_dir)
        + plot_clip(tables["t4-clip"], results, fig_dir)
        + plot_unpaired(tables["t4-unpaired"], results, fig_dir)
    )

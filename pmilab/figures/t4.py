"""T4 figures: the GD fixed point with its calibration pair, the sinΘ rate with every judged
exponent and its interval, GD on CLIP at τ = 1 (a finding), Algorithm 1 with the mutual-argmax
detector (T4d), the paper's detector over r (T4e, T4g), and the reference table of
`results/t4/table.py`. Every mean over seeds carries its standard error; the verdicts sit in
the title (`style.banner`); legends sit outside the axes. Control and calibration data are drawn
in grey or red with labels that say so."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pmilab.experiments.claims.t4 import (
    B_TOL,
    C_TOL,
    DROP_MIN,
    HELP_TOL,
    PREC_HIGH,
    PREC_LOW,
    R_HIGH,
    R_LOW,
    SVD_TOL,
    T4E_PILOT,
    clip_ratios,
    fit_rate,
    rate_variant,
)
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.experiments.tasks.linear_mmcl import trace_long
from pmilab.figures.style import FAIL_COLOR, NOTE_COLOR, banner, of_figure, save
from pmilab.stats import group_mean_se

OUTSIDE = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0}


def _finish(fig, results: list[ClaimResult], name: str, title: str, fig_dir: Path) -> list[Path]:
    fig.tight_layout()
    if results:
        banner(fig, of_figure(results, name), title)
    return save(fig, fig_dir, name)


def _judged_panel(ax, results: list[ClaimResult]) -> None:
    """Every judged T4b/T4c row (evidence, calibration, control) as its estimate with its
    interval, in units of its tolerance: the equivalence band is (−1, 1)."""
    rows = [r for r in results if r.claim in ("T4b", "T4c") and r.judged is not None]
    if not rows:
        ax.set_axis_off()
        return
    tol = {"T4b": B_TOL, "T4c": C_TOL}
    colors = {"evidence": "#0969da", "calibration": NOTE_COLOR, "control": FAIL_COLOR}
    labels = []
    for i, r in enumerate(rows):
        j, t = r.judged, tol[r.claim]
        lo, hi = (j.ci_low - j.estimate) / t, (j.ci_high - j.estimate) / t
        ax.errorbar(
            j.estimate / t, i, xerr=[[max(-lo, 0)], [max(hi, 0)]], fmt="o",
            color=colors[r.kind], capsize=3,
        )  # fmt: skip
        kind = r.kind if r.kind != "calibration" else f"calibration, expect {r.expect}"
        labels.append(f"{r.claim} {kind}: {r.verdict}")
    ax.axvspan(-1, 1, color="#2da44e", alpha=0.12, lw=0)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_yticks(range(len(rows)), labels, fontsize=6.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel("estimate / tolerance (band: PASS region; bars: 90 % interval)")
    ax.set_title("judged exponents (T4b: b + 1/2 / 0.1; T4c: c − 1 / 0.15)", fontsize=8)


def plot_rate(
    df: pd.DataFrame,
    fit: dict,
    results: list[ClaimResult],
    fig_dir: Path,
    col: str = "sin_theta_svd",
) -> list[Path]:
    """sinΘ vs n (log–log) per p_n with the pooled fit C·n^b/(1−p_n)^c; middle: sinΘ·(1−p_n)
    collapse; right: every judged T4b/T4c exponent (evidence, calibration, control) with its
    interval against the equivalence band."""
    stats = group_mean_se(df, ["n", "p_n"], col)
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6), gridspec_kw={"width_ratios": [1, 1, 0.9]})
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
    axes[0].set_title(
        f"mean ± SE over reps; dashed: pooled fit b = {fit['b']:.3f}, c = {fit['c']:.3f}",
        fontsize=9,
    )
    axes[1].set_title("rescaled: sinΘ·(1 − p_n)", fontsize=9)
    for ax in axes[:2]:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("number of pairs n (count)")
    axes[0].legend(fontsize=7, loc="lower left")  # the lower left is empty: errors fall with n
    axes[1].legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("‖sin Θ(Û1, U1)‖_F (dimensionless)")
    axes[1].set_ylabel("‖sin Θ‖_F · (1 − p_n) (dimensionless)")
    _judged_panel(axes[2], results)
    return _finish(fig, results, "t4_rate", "T4: sinΘ against n and p_n (τ → ∞ estimator)", fig_dir)


def plot_clip(clip: pd.DataFrame, results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    """GD on CLIP at τ=1 against the τ → ∞ estimator on the same draws: mean ± SE sinΘ at
    p_n = 0 and 0.5 per n, with the ratio (a finding: the theory does not fix it)."""
    ratios = clip_ratios(clip)
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    x = np.arange(len(ratios))
    bars = [
        ("sin_theta_svd", 0.0, "τ → ∞ estimator, p_n = 0", "#0969da", None),
        ("sin_theta_svd", 0.5, "τ → ∞ estimator, p_n = 0.5", "#0969da", "//"),
        ("sin_theta_clip", 0.0, "GD on CLIP τ = 1, p_n = 0", "#8250df", None),
        ("sin_theta_clip", 0.5, "GD on CLIP τ = 1, p_n = 0.5", "#8250df", "//"),
    ]
    top = 0.0
    for i, (col, p, label, color, hatch) in enumerate(bars):
        st = group_mean_se(clip[clip["p_n"] == p], ["n"], col)
        ax.bar(
            x + (i - 1.5) * 0.2,
            st["mean"],
            0.2,
            yerr=st["se"],
            capsize=3,
            color=color,
            alpha=0.9 if hatch is None else 0.5,
            hatch=hatch,
            label=label,
        )
        top = max(top, float((st["mean"] + st["se"]).max()))
    for xi, r in zip(x, ratios.itertuples(), strict=True):
        ax.text(
            xi,
            1.08 * top,
            f"ratio 0.5/0: τ→∞ {r.svd_ratio:.2f}, CLIP {r.clip_ratio:.2f}",
            ha="center",
            fontsize=8,
        )
    ax.set_xticks(x, [f"n = {int(n)}" for n in ratios["n"]])
    ax.set_ylabel("mean ± SE ‖sin Θ(Û1, U1)‖_F (dimensionless)")
    ax.set_ylim(0, 1.3 * top)
    ax.set_title(
        f"finding (no verdict): 1/(1 − p_n) predicts a ratio of 2; {clip['rep'].nunique()} reps",
        fontsize=9,
    )
    ax.legend(fontsize=7, **OUTSIDE)
    return _finish(fig, results, "t4_clip", "T4: GD on CLIP at τ = 1 (finding)", fig_dir)


def plot_gd_svd(
    trace: pd.DataFrame, runs: pd.DataFrame, results: list[ClaimResult], fig_dir: Path
) -> list[Path]:
    """GD on the CLIP loss: distance of the learned subspace to the SVD of S(G) and to the truth,
    with the calibration pair (the final G perturbed to 2x / 0.5x the tolerance) at the end."""
    fig, ax = plt.subplots(figsize=(9, 4.2))
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
            label=f"control: {col} at the first recorded step",
        )
    last = int(trace["step"].max())
    for col, mk, label in (
        ("calib_near_miss", "v", "calibration: final G perturbed to 2x tol (must FAIL)"),
        ("calib_half", "^", "calibration: final G perturbed to 0.5x tol (must PASS)"),
    ):
        if col in runs:
            ax.plot(np.full(len(runs), last), runs[col], mk, color=NOTE_COLOR, ms=7, label=label)
    ax.axhline(SVD_TOL, color="black", ls=":", lw=1, label=f"tolerance {SVD_TOL:g}")
    ax.set_yscale("log")
    ax.set_xlabel("gradient-descent step (count)")
    ax.set_ylabel("distance (dimensionless)")
    n, p = int(trace["n"].iloc[0]), float(trace["p_n"].iloc[0])
    seeds = trace["rep"].nunique()
    ax.set_title(
        f"GD on the CLIP loss: n={n}, p_n={p:g}, τ=ρ=1 (bars: range over {seeds} seeds)", fontsize=9
    )
    ax.legend(fontsize=7, **OUTSIDE)
    return _finish(fig, results, "t4_gd_svd", "T4: GD on the CLIP loss is an SVD", fig_dir)


def _ratio_frame(df: pd.DataFrame, after: str) -> pd.DataFrame:
    return df.assign(ratio=df[after] / df["sin_theta_before"])


def plot_unpaired(df: pd.DataFrame, results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    """T4d, Algorithm 1 with the mutual-argmax detector and GD on CLIP: left, the ratio sinΘ
    after / before per r (mean ± SE), with the no-pair refit (T4d's near miss); right, the
    detectors' precisions (the superseded T4e reading, a finding)."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    ranks = sorted(df["r"].unique())
    x = np.arange(len(ranks))
    for off, after, label, color in [
        (-0.2, "sin_theta_after", "T4d: pairs + detected (ν = 2)", "#0969da"),
        (0.2, "sin_theta_after_none", "calibration: no pair detected (must FAIL)", NOTE_COLOR),
    ]:
        if after not in df:
            continue
        st = group_mean_se(_ratio_frame(df, after), ["r"], "ratio")
        axes[0].bar(x + off, st["mean"], 0.4, yerr=st["se"], capsize=3, label=label, color=color)
    axes[0].axhline(HELP_TOL, color="black", ls=":", lw=1, label=f"T4d: ratio(r=30) < {HELP_TOL}")
    axes[0].set_ylabel("sinΘ after / before, mean ± SE (dimensionless)")
    for off, col, label, hatch in [
        (-0.27, "precision_argmax", "row argmax (finding)", "//"),
        (0.0, "precision_mutual", "mutual argmax (superseded T4e reading)", None),
        (0.27, "precision_top_n", "eq. 4.2 top N on these fits", "\\\\"),
    ]:
        if col not in df:
            continue
        st = group_mean_se(df, ["r"], col)
        axes[1].bar(x + off, st["mean"], 0.27, yerr=st["se"], capsize=3, label=label, hatch=hatch)
    axes[1].axhline(
        PREC_LOW, color=FAIL_COLOR, ls=":", lw=1, label=f"superseded: r=10 ≤ {PREC_LOW}"
    )
    axes[1].axhline(PREC_HIGH, color="black", ls=":", lw=1, label=f"superseded: r=30 ≥ {PREC_HIGH}")
    axes[1].set_ylim(0, 1.05)
    axes[1].set_ylabel("precision, mean ± SE (fraction)")
    N = int(df["N"].iloc[0])
    for ax in axes:
        ax.set_xticks(x, [f"r = {r}" for r in ranks])
        ax.set_xlabel(f"signal rank r (count; log N = {np.log(N):.1f})")
        ax.legend(fontsize=7, **OUTSIDE)
    axes[0].set_title(
        f"Algorithm 1 (mutual argmax, GD on CLIP): n={int(df['n'].iloc[0])} pairs, N={N}",
        fontsize=9,
    )
    axes[1].set_title("detector precision at the same fits", fontsize=9)
    return _finish(fig, results, "t4_unpaired", "T4d: unpaired data (mutual argmax)", fig_dir)


def plot_detect(df: pd.DataFrame, results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    """T4e and T4g over r: left, the precision of the paper's detector (eq. 4.2) with the
    mutual-argmax and row-argmax precisions and the threshold pilot; right, sinΘ after / before
    for the detected pairs, no pairs (near miss) and the true pairs (a perfect detector)."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    N = int(df["N"].iloc[0])
    for col, label, style in [
        ("precision_top_n", "eq. 4.2 top N (T4e, judged)", dict(color="#0969da", marker="o")),
        ("precision_mutual", "mutual argmax (finding)", dict(color=NOTE_COLOR, marker="s")),
        ("precision_argmax", "row argmax (finding)", dict(color="#8250df", marker="^")),
    ]:
        st = group_mean_se(df, ["r"], col)
        axes[0].errorbar(st["r"], st["mean"], yerr=st["se"], capsize=3, label=label, **style)
    pr = sorted(T4E_PILOT)
    axes[0].plot(pr, [T4E_PILOT[r] for r in pr], "x", color="black", ms=7,
                 label="eq. 4.2 pilot (seeds 20000-20004)")  # fmt: skip
    axes[0].set_ylabel("precision, mean ± SE (fraction)")
    axes[0].set_title(
        f"T4e: precision(r={R_HIGH}) − precision(r={R_LOW}) > {DROP_MIN} (pilot threshold)",
        fontsize=9,
    )
    for after, label, color in [
        ("sin_theta_after", "T4g: pairs + Ê^u (ν = 2)", "#0969da"),
        ("sin_theta_after_none", "calibration: no pair detected (must FAIL)", NOTE_COLOR),
        ("sin_theta_after_oracle", "finding: pairs + the N true pairs", "#2da44e"),
    ]:
        st = group_mean_se(_ratio_frame(df, after), ["r"], "ratio")
        axes[1].errorbar(
            st["r"], st["mean"], yerr=st["se"], capsize=3, marker="o", color=color, label=label
        )
    axes[1].axhline(HELP_TOL, color="black", ls=":", lw=1, label=f"T4g: ratio(r=30) < {HELP_TOL}")
    axes[1].set_ylabel("sinΘ after / before, mean ± SE (dimensionless)")
    axes[1].set_ylim(0, 1.1)
    axes[1].set_title("T4g: Algorithm 1 with eq. 4.2, τ → ∞ limit", fontsize=9)
    for ax in axes:
        ax.axvline(np.log(N), color="grey", lw=0.8, ls="--", label=f"log N = {np.log(N):.1f}")
        ax.set_xlabel("signal rank r (count)")
        ax.legend(fontsize=7, **OUTSIDE)
    return _finish(fig, results, "t4_detect", "T4e, T4g: the paper's detector over r", fig_dir)


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
    gd = tables["t4-gd"].sort_values("rep")
    out = (
        plot_gd_svd(trace_long(gd), gd, results, fig_dir)
        + plot_rate(perm, fit_rate(perm), results, fig_dir)
        + plot_clip(tables["t4-clip"], results, fig_dir)
        + plot_unpaired(tables["t4-unpaired"], results, fig_dir)
    )
    if "t4-detect" in tables:
        out += plot_detect(tables["t4-detect"], results, fig_dir)
    return out

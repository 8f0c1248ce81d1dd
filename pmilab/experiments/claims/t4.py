"""T4: linear multimodal contrastive learning = SVD (docs/theory.md T4, Nakada et al. 2023).

- T4a  GD on the CLIP loss from a small random init converges to the SVD of its own
       contrastive cross-covariance: G1ᵀG2 = SVD_r(S(G))/ρ;
- T4b  the τ → ∞ SVD estimator (the optimum SVD_r(S̄)/ρ of the regularised linear loss) has
       sinΘ ∝ n^{-1/2};
- T4c  the same estimator has sinΘ ∝ 1/(1 − p_n); beside it, a finding: GD on the CLIP loss at
       τ = 1, whose ratio sinΘ(p_n = 0.5)/sinΘ(p_n = 0) the theory does not fix;
- T4d  unpaired data (Algorithm 1) helps when r ≫ log N, and helps more than at r ≈ log N;
- T4e  the precision of Algorithm 1's detector (mutual argmax) drops when r ≈ log N; the
       row-argmax precision and the yields are a finding beside it;
- T4f  the closed-form CLIP-loss gradient equals autograd's (an implementation check).

Negative controls, each the row's own check on data the theory says must FAIL: T4a the GD
trace's first recorded step (not yet converged); T4b the n = 100 values relabelled at every n
(a series flat in n); T4c the p_n = 0 values under every p_n label (flat in p_n); T4d and T4e
the two ranks swapped; T4f the gradient with the paper's printed "−1" on the diagonal of M.

Every number comes from sweeps of `pmilab.experiments.tasks.linear_mmcl`, saved and reused like
every other claim's. The stand-alone reference table is `results/t4/table.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from pmilab.experiments.framework.claim import (
    ClaimResult,
    check_preset,
    control,
    fig,
    finding,
    implementation,
)
from pmilab.experiments.framework.sweep import RunSpec, Sweep
from pmilab.experiments.tasks import linear_mmcl as lm
from pmilab.theory.clip_gd import ClipGDConfig

CLAIM = "T4"
TITLE = "Linear CLIP = SVD: the GD fixed point, the n^{-1/2}/(1 - p_n) rate, unpaired data"

# Algorithm 1 fits and refits by GD on the CLIP loss (τ=1, ρ=1, lr=0.5, lr/ν in the refit), each
# from a spectral start; 300 steps: in trial runs every fit reached ‖∇‖/‖G‖ < 1e-6 within 270.
UNPAIRED_CLIP = ClipGDConfig(tau=1.0, nu=1.0, rho=1.0, lr=0.5, steps=300, tol=1e-6)

# The τ → ∞ SVD estimator, as every T4b/T4c statement names it.
SVD_ESTIMATOR = "the τ → ∞ estimator: the optimum SVD_r(S̄)/ρ of the regularised linear loss"


@dataclass(frozen=True)
class T4Config:
    """gd_*: T4a's GD trace (n=300, p_n=0); rate_*: the T4b/T4c table cells; clip_ns,
    clip_reps: GD on CLIP at τ=1 on clip_ns × p_n ∈ {0, 0.5} (the finding beside T4c);
    unpaired_*: Algorithm 1 at r ∈ {10, 30}; gradient_cases: T4f's random cases."""

    gd_steps: int = 600
    gd_reps: int = 3
    gd_record_every: int = 10
    rate_ns: tuple[int, ...] = lm.TABLE_NS
    rate_ps: tuple[float, ...] = lm.TABLE_PS
    rate_reps: int = 20
    clip_ns: tuple[int, ...] = (300, 1000)
    clip_reps: int = 5
    unpaired_reps: int = 5
    unpaired_N: int = 3000
    unpaired_keep: int = 1000
    gradient_cases: int = 32
    fixed_point_steps: int = 5000


PRESETS = {
    "full": T4Config(),
    # GD on CLIP costs O(n²·d) per step and up to 1000 steps: quick runs only its n = 300 cells
    "quick": T4Config(
        gd_steps=300,
        gd_reps=2,
        rate_reps=5,
        clip_ns=(300,),
        unpaired_reps=2,
        gradient_cases=8,
    ),
    "smoke": T4Config(
        gd_steps=20,
        gd_reps=1,
        rate_ns=(100, 300),
        rate_ps=(0.0, 0.5),
        rate_reps=2,
        clip_ns=(100,),
        clip_reps=1,
        unpaired_reps=1,
        unpaired_N=300,
        unpaired_keep=100,
        gradient_cases=2,
        fixed_point_steps=50,
    ),
}


def config(preset: str, seeds: int | None = None) -> T4Config:
    cfg = PRESETS[check_preset(preset)]
    if seeds:  # one count of repetitions for every table
        cfg = replace(cfg, gd_reps=seeds, rate_reps=seeds, clip_reps=seeds, unpaired_reps=seeds)
    return cfg


def _gd(cfg: T4Config) -> Sweep:
    gd = ClipGDConfig(tau=1.0, nu=1.0, rho=1.0, lr=0.5, steps=cfg.gd_steps, tol=0.0)
    runs = []
    for k in range(cfg.gd_reps):
        p = {"n": 300, "p_n": 0.0, "r": 10, "rep": k, "record_every": cfg.gd_record_every}
        p.update(lm.clip_params(gd))
        runs.append(RunSpec.of(p, "t4gd", "n300", "p0", f"s{cfg.gd_steps}", f"rep{k}"))
    return Sweep("t4-gd", lm.gd_trace, runs, lm.trace_metrics(cfg.gd_steps, cfg.gd_record_every))


def _rate(cfg: T4Config) -> Sweep:
    cells = [(n, p) for n in cfg.rate_ns for p in cfg.rate_ps]
    runs = []
    for variant in ("permute", "redraw"):
        for k in range(cfg.rate_reps):  # repetition-major, as the reference table was drawn
            for c, (n, p) in enumerate(cells):
                params = lm.rate_params(n, p, k, c, variant)
                runs.append(RunSpec.of(params, "t4rate", variant, f"n{n}", f"p{p}", f"rep{k}"))
    return Sweep("t4-rate", lm.rate_cell, runs, lm.RATE_METRICS)


def _clip_ratio(cfg: T4Config) -> Sweep:
    """GD on CLIP at τ=1 on clip_ns × (0, 0.5), clip_reps reps: its own cells and seeds."""
    cells = [(n, p) for n in cfg.clip_ns for p in (0.0, 0.5)]
    runs = []
    for k in range(cfg.clip_reps):
        for c, (n, p) in enumerate(cells):
            params = lm.rate_params(n, p, k, c, "permute", clip=lm.TABLE_CLIP)
            runs.append(RunSpec.of(params, "t4clip", f"n{n}", f"p{p}", f"rep{k}"))
    return Sweep("t4-clip", lm.rate_cell, runs, lm.RATE_METRICS)


def _unpaired(cfg: T4Config) -> Sweep:
    runs = []
    for k in range(cfg.unpaired_reps):
        for c, r in enumerate((10, 30)):
            p = {"r": r, "cell": c, "rep": k, "n": 100, "N": cfg.unpaired_N, "d1": 40, "d2": 39}
            p.update(keep=cfg.unpaired_keep, nu_refit=2.0, **lm.clip_params(UNPAIRED_CLIP))
            runs.append(RunSpec.of(p, "t4unp", f"r{r}", f"N{cfg.unpaired_N}", f"rep{k}"))
    return Sweep("t4-unpaired", lm.unpaired_run, runs, lm.UNPAIRED_METRICS)


def _small(cfg: T4Config) -> list[Sweep]:
    grad = {"n_cases": cfg.gradient_cases, "seed": 0}
    fixed = {"n": 100, "p_n": 0.9, "seed": 1, "r": 10, "steps": cfg.fixed_point_steps}
    return [
        Sweep(
            "t4-gradient",
            lm.gradient_identity,
            [RunSpec.of(grad, "t4grad", f"cases{cfg.gradient_cases}")],
            lm.GRADIENT_METRICS,
        ),
        Sweep(
            "t4-fixed-point",
            lm.fixed_point,
            [RunSpec.of(fixed, "t4fixed", "n100", "p0.9", f"s{cfg.fixed_point_steps}")],
            lm.FIXED_POINT_METRICS,
        ),
    ]


def sweeps(cfg: T4Config) -> list[Sweep]:
    return [_gd(cfg), _rate(cfg), _clip_ratio(cfg), _unpaired(cfg), *_small(cfg)]


def fit_rate(df: pd.DataFrame, col: str = "sin_theta_svd", max_sin: float = 1.0) -> dict:
    """OLS of log sinΘ = a + b·log n + c·log(1/(1−p_n)) over the repetitions of the cells whose
    mean sinΘ is at most `max_sin` (T4 rate: b = −1/2, c = 1). Returns a, b, c, their standard
    errors and the cells used.

    Only cells with mean sinΘ <= 1 enter the fit: there the per-direction sine is ≲ 0.3 and the
    first-order (Wedin) perturbation behind the rate is accurate to a few per cent; above it the
    error saturates (a random 10-dim subspace of R^40 has sinΘ ≈ 2.7) and no power law holds.
    A regressor that is constant over the kept cells (e.g. only p_n = 0 kept) gets the
    minimum-norm coefficient 0.
    """
    means = df.groupby(["n", "p_n"])[col].mean()
    ok = [cell for cell, m in means.items() if m <= max_sin]
    sub = df.set_index(["n", "p_n"]).loc[ok].reset_index()
    A = np.column_stack([np.ones(len(sub)), np.log(sub["n"]), -np.log1p(-sub["p_n"])])
    yv = np.log(sub[col].to_numpy())
    coef, *_ = np.linalg.lstsq(A, yv, rcond=None)
    resid = yv - A @ coef
    dof = max(len(yv) - 3, 1)
    cov = np.linalg.pinv(A.T @ A) * float(resid @ resid) / dof
    se = np.sqrt(np.diag(cov))
    return {
        "a": coef[0], "b": coef[1], "c": coef[2],
        "se_a": se[0], "se_b": se[1], "se_c": se[2], "cells": ok,
    }  # fmt: skip


def rate_variant(df: pd.DataFrame, variant: str) -> pd.DataFrame:
    return df[df.variant == variant].reset_index(drop=True)


def flat_in_n(df: pd.DataFrame, col: str = "sin_theta_svd") -> pd.DataFrame:
    """T4b's control: every cell's value replaced by the smallest n's value at the same p_n and
    repetition (the n = 100 values relabelled at every n): a series that does not fall with n."""
    first = df[df["n"] == df["n"].min()].set_index(["p_n", "rep"])[col]
    out = df.copy()
    out[col] = first.reindex(pd.MultiIndex.from_frame(df[["p_n", "rep"]])).to_numpy()
    return out


def flat_in_p(df: pd.DataFrame, col: str = "sin_theta_svd") -> pd.DataFrame:
    """T4c's control: every cell's value replaced by the p_n = 0 value at the same n and
    repetition: a series that does not grow with 1/(1 − p_n)."""
    first = df[df["p_n"] == 0.0].set_index(["n", "rep"])[col]
    out = df.copy()
    out[col] = first.reindex(pd.MultiIndex.from_frame(df[["n", "rep"]])).to_numpy()
    return out


# T4b: leading order gives exactly −1/2; second-order terms at n=100 move b by ≈ 0.02 and its
# standard error is ≈ 0.01 at 5 reps, so ±0.1 passes the theory while rejecting n^{-1/3} or
# n^{-1} (≥ 0.17 away).
B_TOL = 0.1
# T4c: leading order gives exactly 1 (signal (1−p_n), unchanged noise); ±0.15 rejects
# 1/sqrt(1−p_n) and 1/(1−p_n)² while allowing the finite-n shrinkage of weak signals.
C_TOL = 0.15


def rate_check(df: pd.DataFrame) -> tuple[dict, bool, bool]:
    """T4b/T4c's checks on one series: the fit, |b + 1/2| <= B_TOL, |c − 1| <= C_TOL."""
    fit = fit_rate(df)
    return fit, bool(abs(fit["b"] + 0.5) <= B_TOL), bool(abs(fit["c"] - 1.0) <= C_TOL)


# T4a, 1e-6: GD converges linearly (in trial runs the residual fell ~10× per 10 steps and sat at
# ~1e-14 from step ~180 on), so 1e-6 leaves eight orders for slower seeds while being five
# orders below the statistical error to the truth (≈ 0.4 here) and six below a random subspace
# (sinΘ ≈ 2.7): it separates "is the SVD of S(G)" from "is near it".
SVD_TOL = 1e-6


def svd_check(at_step: pd.DataFrame) -> tuple[float, float, bool]:
    """T4a's check at one recorded step: (max sinΘ to the SVD of S(G), max residual, both <=
    SVD_TOL)."""
    sin_max = float(at_step["sin_theta_to_svd"].max())
    res_max = float(at_step["svd_residual"].max())
    return sin_max, res_max, sin_max <= SVD_TOL and res_max <= SVD_TOL


def _gd_svd(trace_runs: pd.DataFrame, fixed: pd.DataFrame) -> list[ClaimResult]:
    """T4a: GD from a small random init reaches G1ᵀG2 = SVD_r(S(G))/ρ (the SVD fixed point)."""
    trace = lm.trace_long(trace_runs)
    steps, reps = int(trace["step"].max()), trace["rep"].nunique()
    last = trace[trace["step"] == steps]
    first = trace[trace["step"] == trace["step"].min()]
    sin_max, res_max, ok = svd_check(last)
    c_sin, c_res, c_ok = svd_check(first)
    # a finding, not a pass condition: under heavy mismatch the fixed point is still an SVD of
    # S(G) on r of its singular directions, but not always the top r
    hv = fixed.iloc[0]
    kept = [int(k) for k in str(hv["kept"]).split("/") if k]
    threshold = f"both <= {SVD_TOL:g}"
    return [
        ClaimResult(
            "T4a",
            "GD on the CLIP loss converges to the SVD of its contrastive cross-covariance: "
            "G1ᵀG2 = SVD_r(S(G))/ρ",
            f"sinΘ={sin_max:.2e}, residual={res_max:.2e}",
            threshold + " after GD",
            ok,
            figure=fig("t4_gd_svd"),
            detail=(
                f"n=300, p_n=0, d=(40,39), r=10, τ=1, ρ=1, lr=0.5, init N(0,0.01²), {steps} "
                f"steps, {reps} seeds; final sinΘ to truth "
                f"{last['sin_theta_to_truth'].mean():.3f}. Finding at n=100, p_n=0.9: GD stops "
                f"(‖∇‖/‖G‖={hv['grad_norm']:.0e}) holding singular directions {kept} of "
                f"S(G), sinΘ to its top {len(kept)} = {hv['sin_theta_top_r']:.2f}"
            ),
        ),
        control(
            "T4a",
            f"The same check on the same GD runs at their first recorded step "
            f"({int(first['step'].iloc[0])} steps: not yet converged)",
            f"sinΘ={c_sin:.2e}, residual={c_res:.2e}",
            threshold,
            c_ok,
            fig("t4_gd_svd"),
            detail=f"step {int(first['step'].iloc[0])}, {reps} seeds: the check must see that "
            "G is not yet the SVD of its own S(G).",
        ),
    ]


def _f3(v: float) -> str:
    """Three decimals, without the sign of a negative zero."""
    return f"{round(float(v), 3) + 0.0:.3f}"


def clip_ratios(clip: pd.DataFrame) -> pd.DataFrame:
    """Per n: mean sinΘ at p_n = 0 and 0.5 for GD on CLIP (τ = 1) and for the τ → ∞ estimator
    on the same draws, and their ratios sinΘ(0.5)/sinΘ(0) (the finding beside T4c)."""
    m = clip.groupby(["n", "p_n"])[["sin_theta_clip", "sin_theta_svd"]].mean()
    rows = []
    for n in sorted(clip["n"].unique()):
        rows.append(
            {
                "n": int(n),
                "clip_0": m.loc[(n, 0.0), "sin_theta_clip"],
                "clip_05": m.loc[(n, 0.5), "sin_theta_clip"],
                "svd_0": m.loc[(n, 0.0), "sin_theta_svd"],
                "svd_05": m.loc[(n, 0.5), "sin_theta_svd"],
            }
        )
    out = pd.DataFrame(rows)
    out["clip_ratio"] = out.clip_05 / out.clip_0
    out["svd_ratio"] = out.svd_05 / out.svd_0
    return out


def _rate_claims(rate: pd.DataFrame, clip: pd.DataFrame) -> list[ClaimResult]:
    """T4b/T4c: log sinΘ = a + b log n + c log 1/(1−p_n) with b = −1/2, c = 1 (Thm 3.1)."""
    perm, redraw = rate_variant(rate, "permute"), rate_variant(rate, "redraw")
    reps = perm["rep"].nunique()
    fit, b_ok, c_ok = rate_check(perm)
    fit_r = fit_rate(redraw)
    fit_n, b_ctl, _ = rate_check(flat_in_n(perm))
    fit_p, _, c_ctl = rate_check(flat_in_p(perm))
    n_cells = perm.groupby(["n", "p_n"]).ngroups
    cells = f"{len(fit['cells'])} of {n_cells} cells (sinΘ ≤ 1), {reps} reps"
    ratios = clip_ratios(clip)
    clip_reps = clip["rep"].nunique()
    return [
        ClaimResult(
            "T4b",
            f"For {SVD_ESTIMATOR}, sinΘ falls like n^{{-1/2}} (log–log slope in n, mismatch as "
            "in-sample permutation)",
            round(float(fit["b"]), 4),
            f"|b + 0.5| <= {B_TOL}",
            b_ok,
            figure=fig("t4_rate"),
            detail=f"b = {fit['b']:.3f} ± {fit['se_b']:.3f}; redraw variant "
            f"b = {fit_r['b']:.3f} ± {fit_r['se_b']:.3f}; {cells}",
        ),
        control(
            "T4b",
            "The same fit and check on a series that does not fall with n: each cell's value "
            f"replaced by the n = {int(perm['n'].min())} value at the same p_n and repetition",
            round(float(fit_n["b"]), 4) + 0.0,
            f"|b + 0.5| <= {B_TOL}",
            b_ctl,
            fig("t4_rate"),
            detail=f"control fit: b = {_f3(fit_n['b'])}, c = {_f3(fit_n['c'])}; "
            f"{len(fit_n['cells'])} cells kept (sinΘ ≤ 1).",
        ),
        ClaimResult(
            "T4c",
            f"For {SVD_ESTIMATOR}, sinΘ grows like 1/(1 − p_n) (exponent of 1/(1 − p_n) in the "
            "joint fit)",
            round(float(fit["c"]), 4),
            f"|c − 1| <= {C_TOL}",
            c_ok,
            figure=fig("t4_rate"),
            detail=f"c = {fit['c']:.3f} ± {fit['se_c']:.3f}; redraw variant c = "
            f"{fit_r['c']:.3f} ± {fit_r['se_c']:.3f}; {cells}",
        ),
        control(
            "T4c",
            "The same fit and check on a series that does not grow with 1/(1 − p_n): each "
            "cell's value replaced by the p_n = 0 value at the same n and repetition",
            round(float(fit_p["c"]), 4) + 0.0,
            f"|c − 1| <= {C_TOL}",
            c_ctl,
            fig("t4_rate"),
            detail=f"control fit: b = {_f3(fit_p['b'])}, c = {_f3(fit_p['c'])}; "
            f"{len(fit_p['cells'])} cells kept (sinΘ ≤ 1).",
        ),
        finding(
            "T4c",
            "GD on the CLIP loss at τ = 1 (not the τ → ∞ estimator): sinΘ(p_n = 0.5) / "
            "sinΘ(p_n = 0), where 1/(1 − p_n) predicts 2",
            ", ".join(f"n={int(r.n)}: {r.clip_ratio:.2f}" for r in ratios.itertuples()),
            "; ".join(
                f"n={int(r.n)}: GD on CLIP sinΘ {r.clip_0:.3f} → {r.clip_05:.3f} (ratio "
                f"{r.clip_ratio:.2f}); τ → ∞ estimator on the same draws {r.svd_0:.3f} → "
                f"{r.svd_05:.3f} (ratio {r.svd_ratio:.2f})"
                for r in ratios.itertuples()
            )
            + f"; {clip_reps} reps, d=(40,39), r=10, GD from the τ → ∞ optimum (lr 0.5, ≤ "
            f"{lm.TABLE_CLIP.steps} steps, stop at ‖∇‖/‖G‖ < {lm.TABLE_CLIP.tol:g}). The theory "
            "states the rate for the τ → ∞ estimator only.",
            fig("t4_clip"),
        ),
    ]


# T4d, 0.5: with ~1000 correct pairs added to 100, the n^{-1/2} rate predicts a ratio ≈ 0.3;
# 0.5 leaves room for the refit's CLIP weighting and the few wrong pairs.
HELP_TOL = 0.5
# T4e: true-pair score ≈ r ± sqrt(2r), best of N−1 wrong ones ≈ sqrt(2 r log N): a Gaussian
# heuristic gives top-1 accuracy ≈ 0.27 at r=10 and ≈ 0.85 at r=30 for N=3000, so we ask for
# ≤ 0.5 and ≥ 0.75 (beyond sampling error at N=3000: SE ≈ 0.01). Fixed before the run that
# first judged the mutual-argmax detector.
PREC_LOW, PREC_HIGH = 0.5, 0.75


def helps_check(ratio_hi: float, ratio_lo: float) -> bool:
    """T4d's check: at the rank r ≫ log N the ratio after/before is <= HELP_TOL and below the
    ratio at r ≈ log N."""
    return ratio_hi <= HELP_TOL and ratio_hi < ratio_lo


def precision_check(prec_lo: float, prec_hi: float) -> bool:
    """T4e's check: precision at r ≈ log N <= PREC_LOW and at r ≫ log N >= PREC_HIGH."""
    return prec_lo <= PREC_LOW and prec_hi >= PREC_HIGH


def _unpaired_claims(df: pd.DataFrame) -> list[ClaimResult]:
    """T4d/T4e: Algorithm 1 with n=100 pairs, N unpaired, r ∈ {10, 30} (log N ≈ 8.0 at 3000)."""
    reps, N, keep = df["rep"].nunique(), int(df["N"].iloc[0]), int(df["keep"].iloc[0])
    m = df.groupby("r").mean(numeric_only=True)
    ratio = m["sin_theta_after"] / m["sin_theta_before"]
    r10, r30 = float(ratio.loc[10]), float(ratio.loc[30])
    p10, p30 = float(m.loc[10, "precision_mutual"]), float(m.loc[30, "precision_mutual"])
    unp = (
        f"n=100 pairs, N={N} unpaired (log N = {math.log(N):.2f}), keep ≤ {keep} mutual-argmax "
        f"pairs, ν=2, GD on CLIP (τ=1, ρ=1), d=(40,39), {reps} reps"
    )
    t4d = f"ratio(r=30) <= {HELP_TOL} and ratio(r=30) < ratio(r=10)"
    t4e = f"r=10 <= {PREC_LOW} and r=30 >= {PREC_HIGH}"
    return [
        ClaimResult(
            "T4d",
            "Unpaired data helps when r ≫ log N, and more than at r ≈ log N: sinΘ after / "
            "before Algorithm 1 at r = 30 against r = 10",
            f"{r30:.3f} (r=30) vs {r10:.3f} (r=10)",
            t4d,
            helps_check(r30, r10),
            figure=fig("t4_unpaired"),
            detail=f"sinΘ before → after: r=10 {m.loc[10, 'sin_theta_before']:.3f} → "
            f"{m.loc[10, 'sin_theta_after']:.3f}, r=30 {m.loc[30, 'sin_theta_before']:.3f} → "
            f"{m.loc[30, 'sin_theta_after']:.3f}; {unp}",
        ),
        control(
            "T4d",
            "The same check with the two ranks swapped (r = 10 in r = 30's place)",
            f"{r10:.3f} (r=10 as r=30) vs {r30:.3f}",
            t4d,
            helps_check(r10, r30),
            fig("t4_unpaired"),
            detail="a check that passes both ways round cannot see the r-dependence.",
        ),
        ClaimResult(
            "T4e",
            "The precision of Algorithm 1's detector (mutual-argmax pairs) drops when "
            "r ≈ log N: precision at r = 10 against r = 30",
            f"{p10:.3f} vs {p30:.3f}",
            t4e,
            precision_check(p10, p30),
            figure=fig("t4_unpaired"),
            detail=f"mutual-argmax pairs found (yield, mutual / N): r=10 "
            f"{m.loc[10, 'yield_mutual']:.3f}, r=30 {m.loc[30, 'yield_mutual']:.3f}; {unp}",
        ),
        control(
            "T4e",
            "The same check with the two ranks swapped (r = 30's precision in r = 10's place)",
            f"{p30:.3f} vs {p10:.3f}",
            t4e,
            precision_check(p30, p10),
            fig("t4_unpaired"),
            detail="a check that passes both ways round cannot see the r-dependence.",
        ),
        finding(
            "T4e",
            "Row-argmax precision (no mutual filter) and the yield of mutual-argmax pairs at "
            "r = 10 and r = 30",
            f"row argmax {float(m.loc[10, 'precision_argmax']):.3f} vs "
            f"{float(m.loc[30, 'precision_argmax']):.3f}",
            f"row-argmax precision (top-1 accuracy over all N rows): r=10 "
            f"{m.loc[10, 'precision_argmax']:.3f}, r=30 {m.loc[30, 'precision_argmax']:.3f}; "
            f"mutual-argmax yield: r=10 {m.loc[10, 'yield_mutual']:.3f}, r=30 "
            f"{m.loc[30, 'yield_mutual']:.3f}; precision of the kept pairs: r=10 "
            f"{m.loc[10, 'precision_kept']:.3f}, r=30 {m.loc[30, 'precision_kept']:.3f}. The "
            "mutual filter trades yield for precision: at r ≈ log N it finds fewer pairs, "
            "not wrong ones.",
            fig("t4_unpaired"),
        ),
    ]


# T4f, 1e-8: both sides are float64 (eps 2e-16); a wrong term (e.g. the paper's "−1" on the
# diagonal) gives relative errors of order 1e-2 or more.
GRAD_TOL = 1e-8


def _gradient(df: pd.DataFrame) -> list[ClaimResult]:
    """T4f: closed-form gradient vs torch.autograd in float64 on random (n, d1, d2, r, τ, ν, ρ)."""
    worst, printed = float(df["max_rel_error"].max()), float(df["max_rel_error_printed"].max())
    cases = f"{int(df['n_cases'].iloc[0])} random (n, d1, d2, r, τ, ν, ρ) cases in float64"
    return [
        implementation(
            "T4f",
            "The CLIP-loss gradient equals −G2Sᵀ + ρG2G2ᵀG1 (S = XᵀMY/n) as autograd computes it",
            worst,
            f"max relative error <= {GRAD_TOL:g}",
            worst <= GRAD_TOL,
            detail=cases,
        ),
        control(
            "T4f",
            "The same check on the paper's printed formula: M_ii = ν − 1 in place of "
            "ν − (P^row_ii + P^col_ii)/2",
            printed,
            f"max relative error <= {GRAD_TOL:g}",
            printed <= GRAD_TOL,
            detail=cases + " (the same cases).",
        ),
    ]


def evaluate(tables: dict[str, pd.DataFrame], cfg: T4Config) -> list[ClaimResult]:
    return [
        *_gd_svd(tables["t4-gd"], tables["t4-fixed-point"]),
        *_rate_claims(tables["t4-rate"], tables["t4-clip"]),
        *_unpaired_claims(tables["t4-unpaired"]),
        *_gradient(tables["t4-gradient"]),
    ]

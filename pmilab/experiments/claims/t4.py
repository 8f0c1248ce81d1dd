"""T4: linear multimodal contrastive learning = SVD (docs/theory.md T4, Nakada et al. 2023).

- T4a  GD on the CLIP loss from a small random init converges to the SVD of its own
       contrastive cross-covariance: G1ᵀG2 = SVD_r(S(G))/ρ;
- T4b  the τ → ∞ estimator (the optimum SVD_r(S̄)/ρ of the regularised linear loss) has
       sinΘ ∝ n^{-1/2};
- T4c  the same estimator has sinΘ ∝ 1/(1 − p_n);
- T4d  unpaired data helps when r ≫ log N (Algorithm 1);
- T4e  row-argmax pair detection loses its precision when r ≈ log N;
- T4f  the closed-form CLIP-loss gradient equals autograd's.

Every number comes from sweeps of `pmilab.experiments.tasks.linear_mmcl`, saved and reused like
every other claim's. The stand-alone reference table is `results/t4/table.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from pmilab.experiments.framework.claim import ClaimResult, check_preset, fig
from pmilab.experiments.framework.sweep import RunSpec, Sweep
from pmilab.experiments.tasks import linear_mmcl as lm
from pmilab.theory.clip_gd import ClipGDConfig

CLAIM = "T4"
TITLE = "Linear CLIP = SVD: the GD fixed point, the n^{-1/2}/(1 - p_n) rate, unpaired data"

# Algorithm 1 fits and refits by GD on the CLIP loss (τ=1, ρ=1, lr=0.5, lr/ν in the refit), each
# from a spectral start; 300 steps: in trial runs every fit reached ‖∇‖/‖G‖ < 1e-6 within 270.
UNPAIRED_CLIP = ClipGDConfig(tau=1.0, nu=1.0, rho=1.0, lr=0.5, steps=300, tol=1e-6)


@dataclass(frozen=True)
class T4Config:
    """gd_*: T4a's GD trace (n=300, p_n=0); rate_*: the T4b/T4c table cells; clip_ratio: also
    run GD on CLIP at τ=1 on four cells (a finding in T4c's detail); unpaired_*: Algorithm 1
    at r ∈ {10, 30}; gradient_cases: T4f's random cases."""

    gd_steps: int = 600
    gd_reps: int = 3
    gd_record_every: int = 10
    rate_ns: tuple[int, ...] = lm.TABLE_NS
    rate_ps: tuple[float, ...] = lm.TABLE_PS
    rate_reps: int = 20
    clip_ratio: bool = True
    unpaired_reps: int = 5
    unpaired_N: int = 3000
    unpaired_keep: int = 1000
    gradient_cases: int = 32
    fixed_point_steps: int = 5000


PRESETS = {
    "full": T4Config(),
    "quick": T4Config(
        gd_steps=300, gd_reps=2, rate_reps=5, clip_ratio=False, unpaired_reps=2, gradient_cases=8
    ),
    "smoke": T4Config(
        gd_steps=20,
        gd_reps=1,
        rate_ns=(100, 300),
        rate_ps=(0.0, 0.5),
        rate_reps=2,
        clip_ratio=False,
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
        cfg = replace(cfg, gd_reps=seeds, rate_reps=seeds, unpaired_reps=seeds)
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
    """GD on CLIP at τ=1 on (300, 1000) × (0, 0.5), 5 reps: its own cells and seeds."""
    cells = [(n, p) for n in (300, 1000) for p in (0.0, 0.5)]
    runs = []
    for k in range(5):
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
    out = [_gd(cfg), _rate(cfg)]
    if cfg.clip_ratio:
        out.append(_clip_ratio(cfg))
    return out + [_unpaired(cfg), *_small(cfg)]


def fit_rate(df: pd.DataFrame, col: str = "sin_theta_svd", max_sin: float = 1.0) -> dict:
    """OLS of log sinΘ = a + b·log n + c·log(1/(1−p_n)) over the repetitions of the cells whose
    mean sinΘ is at most `max_sin` (T4 rate: b = −1/2, c = 1). Returns a, b, c, their standard
    errors and the cells used.

    Only cells with mean sinΘ <= 1 enter the fit: there the per-direction sine is ≲ 0.3 and the
    first-order (Wedin) perturbation behind the rate is accurate to a few per cent; above it the
    error saturates (a random 10-dim subspace of R^40 has sinΘ ≈ 2.7) and no power law holds.
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


def _gd_svd(trace_runs: pd.DataFrame, fixed: pd.DataFrame) -> ClaimResult:
    """T4a: GD from a small random init reaches G1ᵀG2 = SVD_r(S(G))/ρ (the SVD fixed point)."""
    trace = lm.trace_long(trace_runs)
    steps, reps = int(trace["step"].max()), trace["rep"].nunique()
    last = trace[trace["step"] == steps]
    sin_max, res_max = float(last["sin_theta_to_svd"].max()), float(last["svd_residual"].max())
    # 1e-6: GD converges linearly (in trial runs the residual fell ~10× per 10 steps and sat at
    # ~1e-14 from step ~180 on), so 1e-6 leaves eight orders for slower seeds while being five
    # orders below the statistical error to the truth (≈ 0.4 here) and six below a random
    # subspace (sinΘ ≈ 2.7): it separates "is the SVD of S(G)" from "is near it".
    ok = sin_max <= 1e-6 and res_max <= 1e-6
    first = trace[trace["step"] == trace["step"].min()]
    # a finding, not a pass condition: under heavy mismatch the fixed point is still an SVD of
    # S(G) on r of its singular directions, but not always the top r
    hv = fixed.iloc[0]
    kept = [int(k) for k in str(hv["kept"]).split("/") if k]
    return ClaimResult(
        "T4a",
        "GD on the CLIP loss converges to the SVD of its contrastive cross-covariance: "
        "G1ᵀG2 = SVD_r(S(G))/ρ",
        f"sinΘ={sin_max:.2e}, residual={res_max:.2e}",
        "both <= 1e-6 after GD",
        ok,
        figure=fig("t4_gd_svd"),
        detail=(
            f"n=300, p_n=0, d=(40,39), r=10, τ=1, ρ=1, lr=0.5, init N(0,0.01²), {steps} steps, "
            f"{reps} seeds; at step {int(first['step'].iloc[0])}: sinΘ to SVD "
            f"{first['sin_theta_to_svd'].mean():.2f}; final sinΘ to truth "
            f"{last['sin_theta_to_truth'].mean():.3f}. Finding at n=100, p_n=0.9: GD stops "
            f"(‖∇‖/‖G‖={hv['grad_norm']:.0e}) holding singular directions {kept} of "
            f"S(G), sinΘ to its top {len(kept)} = {hv['sin_theta_top_r']:.2f}"
        ),
    )


def _clip_txt(clip: pd.DataFrame | None) -> str:
    """Full size only: does GD on the CLIP loss at τ=1 follow 1/(1 − p_n) too? (T4c detail)."""
    if clip is None:
        return ""
    m = clip.groupby(["n", "p_n"])[["sin_theta_clip", "sin_theta_svd"]].mean()
    parts = [
        f"n={n}: {m.loc[(n, 0.5), 'sin_theta_clip'] / m.loc[(n, 0.0), 'sin_theta_clip']:.2f}"
        f" (linear-loss SVD {m.loc[(n, 0.5), 'sin_theta_svd'] / m.loc[(n, 0.0), 'sin_theta_svd']:.2f})"
        for n in (300, 1000)
    ]
    return (
        "; GD on CLIP at τ=1 (finding, not tested): sinΘ(p_n=0.5)/sinΘ(p_n=0) = "
        + ", ".join(parts)
        + ", where 1/(1−p_n) predicts 2"
    )


def _rate_claims(rate: pd.DataFrame, clip: pd.DataFrame | None) -> list[ClaimResult]:
    """T4b/T4c: log sinΘ = a + b log n + c log 1/(1−p_n) with b = −1/2, c = 1 (Thm 3.1)."""
    perm, redraw = rate_variant(rate, "permute"), rate_variant(rate, "redraw")
    reps = perm["rep"].nunique()
    fit, fit_r = fit_rate(perm), fit_rate(redraw)
    n_cells = perm.groupby(["n", "p_n"]).ngroups
    cells = f"{len(fit['cells'])} of {n_cells} cells (sinΘ ≤ 1), {reps} reps"
    est = "estimator: optimum of the regularised linear loss = CLIP loss as τ→∞"
    # b: leading order gives exactly −1/2; second-order terms at n=100 move it by ≈ 0.02 and
    # its standard error is ≈ 0.01 at 5 reps, so ±0.1 passes the theory while rejecting
    # n^{-1/3} or n^{-1} (≥ 0.17 away).
    b_ok = abs(fit["b"] + 0.5) <= 0.1
    # c: leading order gives exactly 1 (signal (1−p_n), unchanged noise); ±0.15 rejects
    # 1/sqrt(1−p_n) and 1/(1−p_n)² while allowing the finite-n shrinkage of weak signals.
    c_ok = abs(fit["c"] - 1.0) <= 0.15
    return [
        ClaimResult(
            "T4b",
            "sinΘ falls like n^{-1/2} (log–log slope in n, mismatch as in-sample permutation)",
            round(float(fit["b"]), 4),
            "|b + 0.5| <= 0.1",
            bool(b_ok),
            figure=fig("t4_rate"),
            detail=f"b = {fit['b']:.3f} ± {fit['se_b']:.3f}; redraw variant "
            f"b = {fit_r['b']:.3f} ± {fit_r['se_b']:.3f}; {cells}; {est}",
        ),
        ClaimResult(
            "T4c",
            "sinΘ grows like 1/(1 − p_n) (exponent of 1/(1 − p_n) in the joint fit)",
            round(float(fit["c"]), 4),
            "|c − 1| <= 0.15",
            bool(c_ok),
            figure=fig("t4_rate"),
            detail=f"c = {fit['c']:.3f} ± {fit['se_c']:.3f}; redraw variant c = "
            f"{fit_r['c']:.3f} ± {fit_r['se_c']:.3f}; {cells}{_clip_txt(clip)}",
        ),
    ]


def _unpaired_claims(df: pd.DataFrame) -> list[ClaimResult]:
    """T4d/T4e: Algorithm 1 with n=100 pairs, N unpaired, r ∈ {10, 30} (log N ≈ 8.0 at 3000)."""
    reps, N, keep = df["rep"].nunique(), int(df["N"].iloc[0]), int(df["keep"].iloc[0])
    m = df.groupby("r").mean(numeric_only=True)
    ratio30 = float(m.loc[30, "sin_theta_after"] / m.loc[30, "sin_theta_before"])
    ratio10 = float(m.loc[10, "sin_theta_after"] / m.loc[10, "sin_theta_before"])
    p10, p30 = float(m.loc[10, "precision_argmax"]), float(m.loc[30, "precision_argmax"])
    # 0.5: with ~1000 correct pairs added to 100 the n^{-1/2} rate predicts a ratio ≈ 0.3;
    # 0.5 leaves room for the refit's CLIP weighting and the few wrong pairs.
    helped = ratio30 <= 0.5
    # True-pair score ≈ r ± sqrt(2r), best of N−1 wrong ones ≈ sqrt(2 r log N): a Gaussian
    # heuristic gives top-1 accuracy ≈ 0.27 at r=10 and ≈ 0.85 at r=30 for N=3000, so we ask
    # for ≤ 0.5 and ≥ 0.75 (beyond sampling error at N=3000: SE ≈ 0.01).
    dropped = p10 <= 0.5 and p30 >= 0.75
    unp = (
        f"n=100 pairs, N={N} unpaired, keep ≤ {keep} mutual-argmax pairs, ν=2, GD on CLIP "
        f"(τ=1, ρ=1), d=(40,39), {reps} reps"
    )
    return [
        ClaimResult(
            "T4d",
            "Unpaired data helps when r ≫ log N (r=30): sinΘ after / before Algorithm 1",
            round(ratio30, 4),
            "<= 0.5",
            helped,
            figure=fig("t4_unpaired"),
            detail=f"r=10: ratio {ratio10:.3f}; {unp}",
        ),
        ClaimResult(
            "T4e",
            "Detection precision (row-argmax pairs) drops when r ≈ log N: "
            "precision at r=10 vs r=30",
            f"{p10:.3f} vs {p30:.3f}",
            "r=10 <= 0.5 and r=30 >= 0.75",
            dropped,
            figure=fig("t4_unpaired"),
            detail=(
                f"mutual-argmax precision {m.loc[10, 'precision_mutual']:.3f} vs "
                f"{m.loc[30, 'precision_mutual']:.3f}, yield (mutual / N) "
                f"{m.loc[10, 'yield_mutual']:.3f} vs {m.loc[30, 'yield_mutual']:.3f}; "
                f"log N = {math.log(N):.2f}"
            ),
        ),
    ]


def _gradient(df: pd.DataFrame) -> ClaimResult:
    """T4f: closed-form gradient vs torch.autograd in float64 on random (n, d1, d2, r, τ, ν, ρ)."""
    worst = float(df["max_rel_error"].max())
    # 1e-8: both sides are float64 (eps 2e-16); a wrong term (e.g. the paper's "−1" on the
    # diagonal) gives relative errors of order 1e-2 or more.
    return ClaimResult(
        "T4f",
        "The CLIP-loss gradient equals −G2Sᵀ + ρG2G2ᵀG1 (S = XᵀMY/n) as autograd computes it",
        worst,
        "max relative error <= 1e-8",
        worst <= 1e-8,
        detail=f"{int(df['n_cases'].iloc[0])} random (n, d1, d2, r, τ, ν, ρ) cases in float64",
    )


def evaluate(tables: dict[str, pd.DataFrame], cfg: T4Config) -> list[ClaimResult]:
    return [
        _gd_svd(tables["t4-gd"], tables["t4-fixed-point"]),
        *_rate_claims(tables["t4-rate"], tables.get("t4-clip")),
        *_unpaired_claims(tables["t4-unpaired"]),
        _gradient(tables["t4-gradient"]),
    ]

"""T4: linear multimodal contrastive learning = SVD (docs/theory.md T4, Nakada et al. 2023).

Every row is judged from seeds (`pmilab.verdicts`): the repetition is the replicate, each
judged quantity is computed per repetition and its mean is judged with a one-sided Student-t
interval at alpha 0.05 (Holm over a row's sub-cases); exact computations are judged exactly.

- T4a  GD on the CLIP loss from a small random init converges to the SVD of its own
       contrastive cross-covariance: the per-seed distance to G1ᵀG2 = SVD_r(S(G))/ρ is below
       SVD_TOL;
- T4b  the τ → ∞ SVD estimator has sinΘ ∝ n^{-1/2}: per-repetition fits, |b + 1/2| < B_TOL
       (equivalence);
- T4c  the same estimator has sinΘ ∝ 1/(1 − p_n): |c − 1| < C_TOL (equivalence); beside it, a
       finding: GD on the CLIP loss at τ = 1;
- T4d  unpaired data (Algorithm 1 as the lab first built it: mutual-argmax detector, GD on CLIP)
       helps when r ≫ log N, and more than at r ≈ log N;
- T4e  the precision of the paper's detector (eq. 4.2) drops when r ≈ log N, with the drop's
       threshold fixed from a pilot on seeds 20000-20004; the mutual-argmax reading and its FAIL
       stay beside it as a finding;
- T4f  the closed-form CLIP-loss gradient equals autograd's (an exact implementation check);
- T4g  (new) Algorithm 1 with the paper's detector, in the τ → ∞ limit of its losses: unpaired
       data helps when r ≫ log N and more than at r ≈ log N, with the curve over r.

Calibration pairs, through each row's own rule: T4a the converged G perturbed so that the check
reads 2x / 0.5x its tolerance; T4b and T4c the measured series re-rated to the rate
alternatives the theory names (b = −1/3; c = 1/2, and c shifted by 2x C_TOL) and by 0.5x the
tolerance; T4d and T4g Algorithm 1 whose detector finds no pair (ratio ≈ 1, no contrast) and
the same algorithm at a rank pair whose pilot values sit half a tolerance inside the thresholds;
T4e the drop between two ranks both ≫ log N (30 against 25) and between 30 and 14; T4f the
closed form plus a known relative error of 2x / 0.5x GRAD_TOL. The strawman controls (first GD
step, flat series, swapped ranks, the printed "−1") stay beside them as judged controls.

Every number comes from sweeps of `pmilab.experiments.tasks.linear_mmcl`, saved and reused like
every other claim's. The stand-alone reference table is `results/t4/table.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from pmilab import verdicts as V
from pmilab.experiments.framework.claim import (
    ClaimResult,
    calibration,
    check_preset,
    fig,
    finding,
    judged_row,
)
from pmilab.experiments.framework.sweep import RunSpec, Sweep, seed_list
from pmilab.experiments.tasks import linear_mmcl as lm
from pmilab.theory.clip_gd import ClipGDConfig

CLAIM = "T4"
TITLE = "Linear CLIP = SVD: the GD fixed point, the n^{-1/2}/(1 - p_n) rate, unpaired data"

# Algorithm 1 fits and refits by GD on the CLIP loss (τ=1, ρ=1, lr=0.5, lr/ν in the refit), each
# from a spectral start; 300 steps: in trial runs every fit reached ‖∇‖/‖G‖ < 1e-6 within 270.
UNPAIRED_CLIP = ClipGDConfig(tau=1.0, nu=1.0, rho=1.0, lr=0.5, steps=300, tol=1e-6)

# The τ → ∞ SVD estimator, as every T4b/T4c statement names it.
SVD_ESTIMATOR = "the τ → ∞ estimator: the optimum SVD_r(S̄)/ρ of the regularised linear loss"

# The unpaired runs' ranks and their cell index (part of the data seed): r = 10 and 30 keep the
# cells 0 and 1 they had before, whatever other ranks a preset adds.
UNPAIRED_CELLS = (10, 30, 8, 12, 14, 16, 20, 6, 25)
R_LOW, R_HIGH = 10, 30  # r ≈ log N and r ≫ log N at N = 3000 (log N = 8.0)

SeedSpec = int | tuple[int, ...]


@dataclass(frozen=True)
class T4Config:
    """gd_*: T4a's GD trace (n=300, p_n=0); rate_*: the T4b/T4c table cells; clip_ns,
    clip_reps: GD on CLIP at τ=1 on clip_ns × p_n ∈ {0, 0.5} (the finding beside T4c);
    unpaired_*: T4d's Algorithm 1 (mutual argmax, GD on CLIP) at unpaired_ranks; detect_*: the
    paper's Algorithm 1 in the τ → ∞ limit at detect_ranks (T4e, T4g); gradient_cases: T4f's
    random cases. Every *_reps is a count (seeds 0 .. n-1) or a tuple of explicit seeds."""

    gd_steps: int = 600
    gd_reps: SeedSpec = 3
    gd_record_every: int = 10
    rate_ns: tuple[int, ...] = lm.TABLE_NS
    rate_ps: tuple[float, ...] = lm.TABLE_PS
    rate_reps: SeedSpec = 20
    clip_ns: tuple[int, ...] = (300, 1000)
    clip_reps: SeedSpec = 5
    unpaired_reps: SeedSpec = 5
    unpaired_N: int = 3000
    unpaired_keep: int = 1000
    unpaired_ranks: tuple[int, ...] = (10, 30, 14)
    detect_reps: SeedSpec = 10
    detect_N: int = 3000
    detect_ranks: tuple[int, ...] = (6, 8, 10, 12, 14, 16, 20, 25, 30)
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
        unpaired_reps=3,
        detect_reps=5,
        detect_ranks=(10, 12, 14, 20, 25, 30),
        gradient_cases=8,
    ),
    # smoke: seconds; GD runs to 200 steps (converged: the calibration pair needs the fixed point)
    "smoke": T4Config(
        gd_steps=200,
        gd_reps=3,
        gd_record_every=20,
        rate_ns=(100, 300),
        rate_ps=(0.0, 0.5),
        rate_reps=3,
        clip_ns=(100,),
        clip_reps=1,
        unpaired_reps=2,
        unpaired_N=300,
        unpaired_keep=100,
        detect_reps=2,
        detect_N=1000,
        detect_ranks=(10, 12, 14, 20, 25, 30),
        gradient_cases=2,
        fixed_point_steps=50,
    ),
}


def config(preset: str, seeds: SeedSpec | None = None) -> T4Config:
    """The preset's config; `seeds` (a count, or a tuple of explicit seeds such as the power
    analysis's pilot seeds) replaces the repetitions of every table."""
    cfg = PRESETS[check_preset(preset)]
    if seeds:
        cfg = replace(
            cfg,
            gd_reps=seeds,
            rate_reps=seeds,
            clip_reps=seeds,
            unpaired_reps=seeds,
            detect_reps=seeds,
        )
    return cfg


def _gd(cfg: T4Config) -> Sweep:
    gd = ClipGDConfig(tau=1.0, nu=1.0, rho=1.0, lr=0.5, steps=cfg.gd_steps, tol=0.0)
    runs = []
    for k in seed_list(cfg.gd_reps):
        p = {"n": 300, "p_n": 0.0, "r": 10, "rep": k, "record_every": cfg.gd_record_every}
        p.update(lm.clip_params(gd), calibrate=1, tol=SVD_TOL)
        runs.append(RunSpec.of(p, "t4gd", "n300", "p0", f"s{cfg.gd_steps}", f"rep{k}"))
    metrics = lm.trace_metrics(cfg.gd_steps, cfg.gd_record_every, calibrate=True)
    return Sweep("t4-gd", lm.gd_trace, runs, metrics)


def _rate(cfg: T4Config) -> Sweep:
    cells = [(n, p) for n in cfg.rate_ns for p in cfg.rate_ps]
    runs = []
    for variant in ("permute", "redraw"):
        for k in seed_list(cfg.rate_reps):  # repetition-major, as the reference table was drawn
            for c, (n, p) in enumerate(cells):
                params = lm.rate_params(n, p, k, c, variant)
                runs.append(RunSpec.of(params, "t4rate", variant, f"n{n}", f"p{p}", f"rep{k}"))
    return Sweep("t4-rate", lm.rate_cell, runs, lm.RATE_METRICS)


def _clip_ratio(cfg: T4Config) -> Sweep:
    """GD on CLIP at τ=1 on clip_ns × (0, 0.5), clip_reps reps: its own cells and seeds."""
    cells = [(n, p) for n in cfg.clip_ns for p in (0.0, 0.5)]
    runs = []
    for k in seed_list(cfg.clip_reps):
        for c, (n, p) in enumerate(cells):
            params = lm.rate_params(n, p, k, c, "permute", clip=lm.TABLE_CLIP)
            runs.append(RunSpec.of(params, "t4clip", f"n{n}", f"p{p}", f"rep{k}"))
    return Sweep("t4-clip", lm.rate_cell, runs, lm.RATE_METRICS)


def _unpaired(cfg: T4Config) -> Sweep:
    runs = []
    for k in seed_list(cfg.unpaired_reps):
        for r in cfg.unpaired_ranks:
            c = UNPAIRED_CELLS.index(r)
            p = {"r": r, "cell": c, "rep": k, "n": 100, "N": cfg.unpaired_N, "d1": 40, "d2": 39}
            p.update(keep=cfg.unpaired_keep, nu_refit=2.0, **lm.clip_params(UNPAIRED_CLIP))
            runs.append(RunSpec.of(p, "t4unp", f"r{r}", f"N{cfg.unpaired_N}", f"rep{k}"))
    return Sweep("t4-unpaired", lm.unpaired_run, runs, lm.UNPAIRED_METRICS)


def _detect(cfg: T4Config) -> Sweep:
    """The paper's Algorithm 1 (eq. 4.2 detector) in the τ → ∞ limit, at every detect rank."""
    runs = []
    for k in seed_list(cfg.detect_reps):
        for r in cfg.detect_ranks:
            p = {"r": r, "rep": k, "n": 100, "N": cfg.detect_N, "d1": 40, "d2": 39}
            p["nu_refit"] = 2.0
            runs.append(RunSpec.of(p, "t4det", f"r{r}", f"N{cfg.detect_N}", f"rep{k}"))
    return Sweep("t4-detect", lm.detect_run, runs, lm.DETECT_METRICS)


def _small(cfg: T4Config) -> list[Sweep]:
    grad = {"n_cases": cfg.gradient_cases, "seed": 0, "calibrate": 1}
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
    return [_gd(cfg), _rate(cfg), _clip_ratio(cfg), _unpaired(cfg), _detect(cfg), *_small(cfg)]


# --------------------------------------------------------------------------- T4b / T4c: fits


def kept_cells(df: pd.DataFrame, col: str = "sin_theta_svd", max_sin: float = 1.0) -> list:
    """The (n, p_n) cells whose mean sinΘ over the repetitions is at most `max_sin`.

    Only there is the per-direction sine ≲ 0.3 and the first-order (Wedin) perturbation behind
    the rate accurate to a few per cent; above it the error saturates (a random 10-dim subspace
    of R^40 has sinΘ ≈ 2.7) and no power law holds."""
    means = df.groupby(["n", "p_n"])[col].mean()
    return [cell for cell, m in means.items() if m <= max_sin]


def _ols(sub: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray]:
    """OLS of log sinΘ = a + b·log n + c·log(1/(1−p_n)): (coefficients, standard errors). A
    regressor that is constant over the rows gets the minimum-norm coefficient 0."""
    A = np.column_stack([np.ones(len(sub)), np.log(sub["n"]), -np.log1p(-sub["p_n"])])
    yv = np.log(sub[col].to_numpy())
    coef, *_ = np.linalg.lstsq(A, yv, rcond=None)
    resid = yv - A @ coef
    dof = max(len(yv) - 3, 1)
    cov = np.linalg.pinv(A.T @ A) * float(resid @ resid) / dof
    return coef, np.sqrt(np.diag(cov))


def fit_rate(df: pd.DataFrame, col: str = "sin_theta_svd", max_sin: float = 1.0) -> dict:
    """The pooled OLS of log sinΘ = a + b·log n + c·log(1/(1−p_n)) over every repetition of the
    `kept_cells` (T4 rate: b = −1/2, c = 1): a, b, c, their (pooled, i.i.d.-residual) standard
    errors and the cells used. The verdicts use `fit_rate_reps`; this is the figure's line."""
    ok = kept_cells(df, col, max_sin)
    sub = df.set_index(["n", "p_n"]).loc[ok].reset_index()
    coef, se = _ols(sub, col)
    return {
        "a": coef[0], "b": coef[1], "c": coef[2],
        "se_a": se[0], "se_b": se[1], "se_c": se[2], "cells": ok,
    }  # fmt: skip


def fit_rate_reps(
    df: pd.DataFrame, col: str = "sin_theta_svd", max_sin: float = 1.0, cells: list | None = None
):
    """One fit per repetition, on the cells `kept_cells` selects from the means over all
    repetitions (the same cells for every repetition), or on `cells` when given: a DataFrame
    rep, a, b, c, and the cells. The repetitions are independent draws (own basis, own data),
    so their b and c are i.i.d. replicates: the verdict judges their mean with a t interval."""
    ok = kept_cells(df, col, max_sin) if cells is None else list(cells)
    sub = df.set_index(["n", "p_n"]).loc[ok].reset_index()
    rows = []
    for k, one in sub.groupby("rep", sort=True):
        coef, _ = _ols(one, col)
        rows.append({"rep": k, "a": coef[0], "b": coef[1], "c": coef[2]})
    return pd.DataFrame(rows), ok


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


def rerate(df: pd.DataFrame, db: float = 0.0, dc: float = 0.0, col: str = "sin_theta_svd"):
    """The measured series with its exponents moved by (db, dc): every value times
    (n / n_min)^db · (1 − p_n)^(−dc). A series with rate n^b/(1−p_n)^c becomes one with
    n^(b+db)/(1−p_n)^(c+dc), each repetition keeping its own noise: T4b/T4c's calibration cases
    (e.g. db = +1/6 turns n^{-1/2} into the alternative n^{-1/3}). They are fitted on the cells
    the rule kept for the measured series, so the planted error is exactly (db, dc): re-rating
    can pull a saturated cell under sinΘ = 1, and a saturated cell in the fit is an error the
    calibration did not plant."""
    out = df.copy()
    out[col] = df[col] * (df["n"] / df["n"].min()) ** db * (1.0 - df["p_n"]) ** (-dc)
    return out


# T4b: leading order gives exactly −1/2; second-order terms at n=100 move b by ≈ 0.02 and its
# standard error is ≈ 0.01 at 5 reps, so ±0.1 passes the theory while rejecting n^{-1/3} or
# n^{-1} (≥ 0.17 away).
B_TOL = 0.1
# T4c: leading order gives exactly 1 (signal (1−p_n), unchanged noise); ±0.15 rejects
# 1/sqrt(1−p_n) and 1/(1−p_n)² while allowing the finite-n shrinkage of weak signals.
C_TOL = 0.15
# The calibration cases (db, dc) of T4b and T4c, fixed before their first run: the rate
# alternatives the theory names (n^{-1/3}: db = +1/6 = 1.7 B_TOL; 1/sqrt(1−p_n): dc = −1/2 =
# 3.3 C_TOL), a 2x C_TOL shift of c (the theory's alternative is further than 2x), and 0.5x
# shifts towards each alternative.
B_CALIB = {"near miss: n^{-1/3} (b = −1/3)": (1 / 6, "FAIL"), "0.5x tolerance": (0.05, "PASS")}
C_CALIB = {
    "near miss: 1/sqrt(1 − p_n) (c = 1/2)": (-0.5, "FAIL"),
    "near miss: 2x tolerance (c − 0.3)": (-0.3, "FAIL"),
    "0.5x tolerance": (-0.075, "PASS"),
}


def rate_judged(
    df: pd.DataFrame, cells: list | None = None
) -> tuple[V.Judged, V.Judged, pd.DataFrame, list]:
    """T4b/T4c's rule on one series: the per-repetition fits (on `kept_cells`, or on `cells`);
    b + 1/2 within ±B_TOL and c − 1 within ±C_TOL, each by the equivalence test (TOST) over the
    repetitions."""
    reps, cells = fit_rate_reps(df, cells=cells)
    jb = V.judge_equivalence(reps["b"] + 0.5, B_TOL)
    jc = V.judge_equivalence(reps["c"] - 1.0, C_TOL)
    return jb, jc, reps, cells


def rate_check(df: pd.DataFrame) -> tuple[dict, bool, bool]:
    """The superseded point rule on one series (pooled fit, |b + 1/2| <= B_TOL, |c − 1| <=
    C_TOL), kept for the old verdicts' record; the rows use `rate_judged`."""
    fit = fit_rate(df)
    return fit, bool(abs(fit["b"] + 0.5) <= B_TOL), bool(abs(fit["c"] - 1.0) <= C_TOL)


# T4a, 1e-6: GD converges linearly (in trial runs the residual fell ~10× per 10 steps and sat at
# ~1e-14 from step ~180 on), so 1e-6 leaves eight orders for slower seeds while being five
# orders below the statistical error to the truth (≈ 0.4) and six below a random subspace
# (sinΘ ≈ 2.7): it separates "is the SVD of S(G)" from "is near it".
SVD_TOL = 1e-6


def svd_distance(at_step: pd.DataFrame) -> np.ndarray:
    """T4a's judged quantity per seed: max(sinΘ to the SVD of S(G), relative residual)."""
    return np.maximum(at_step["sin_theta_to_svd"], at_step["svd_residual"]).to_numpy()


def _f3(v: float) -> str:
    """Three decimals, without the sign of a negative zero."""
    return f"{round(float(v), 3) + 0.0:.3f}"


def _ci(j: V.Judged, digits: int = 3) -> str:
    """'0.123 [0.100, 0.146], n=5' (or '0.123 (exact)')."""
    if j.deterministic:
        return f"{j.estimate:.{digits}g} (exact)"
    return f"{j.estimate:.{digits}g} [{j.ci_low:.{digits}g}, {j.ci_high:.{digits}g}], n={j.n}"


def _gd_svd(trace_runs: pd.DataFrame, fixed: pd.DataFrame) -> list[ClaimResult]:
    """T4a: GD from a small random init reaches G1ᵀG2 = SVD_r(S(G))/ρ (the SVD fixed point)."""
    trace = lm.trace_long(trace_runs)
    steps, reps = int(trace["step"].max()), trace["rep"].nunique()
    last = trace[trace["step"] == steps].sort_values("rep")
    first = trace[trace["step"] == trace["step"].min()].sort_values("rep")
    j = V.judge(svd_distance(last), SVD_TOL, "below")
    j_ctl = V.judge(svd_distance(first), SVD_TOL, "below")
    runs = trace_runs.sort_values("rep")
    # a finding, not a pass condition: under heavy mismatch the fixed point is still an SVD of
    # S(G) on r of its singular directions, but not always the top r
    hv = fixed.iloc[0]
    kept = [int(k) for k in str(hv["kept"]).split("/") if k]
    threshold = f"mean distance < {SVD_TOL:g} (one-sided 95 % upper bound)"
    calib = []
    for name, expect, size in (("near_miss", "FAIL", "2x"), ("half", "PASS", "0.5x")):
        calib.append(
            calibration(
                "T4a",
                f"The same check on each seed's final G with G1 perturbed (a Gaussian direction "
                f"drawn per seed) by the amount that makes the check read {size} its tolerance",
                V.judge(runs[f"calib_{name}"].to_numpy(), SVD_TOL, "below"),
                threshold,
                expect,
                fig("t4_gd_svd"),
                detail=f"response of the check to the perturbation, per seed: "
                f"{', '.join(f'{c:.3g}' for c in runs['calib_response'])} per unit relative size "
                f"(probe {lm.CALIB_PROBE:g}); {reps} seeds",
            )
        )
    return [
        judged_row(
            "T4a",
            "GD on the CLIP loss converges to the SVD of its contrastive cross-covariance: "
            "G1ᵀG2 = SVD_r(S(G))/ρ (distance = max(sinΘ to the SVD of S(G), relative residual))",
            j,
            threshold,
            figure=fig("t4_gd_svd"),
            detail=(
                f"n=300, p_n=0, d=(40,39), r=10, τ=1, ρ=1, lr=0.5, init N(0,0.01²), {steps} "
                f"steps, {reps} seeds; worst seed: sinΘ {last['sin_theta_to_svd'].max():.2e}, "
                f"residual {last['svd_residual'].max():.2e}; final sinΘ to truth "
                f"{last['sin_theta_to_truth'].mean():.3f}. Finding at n=100, p_n=0.9: GD stops "
                f"(‖∇‖/‖G‖={hv['grad_norm']:.0e}) holding singular directions {kept} of "
                f"S(G), sinΘ to its top {len(kept)} = {hv['sin_theta_top_r']:.2f}"
            ),
        ),
        *calib,
        judged_row(
            "T4a",
            f"The same check on the same GD runs at their first recorded step "
            f"({int(first['step'].iloc[0])} steps: not yet converged)",
            j_ctl,
            threshold,
            kind="control",
            figure=fig("t4_gd_svd"),
            detail=f"step {int(first['step'].iloc[0])}, {reps} seeds: the check must see that "
            "G is not yet the SVD of its own S(G).",
        ),
    ]


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
    jb, jc, per_rep, cells = rate_judged(perm)
    jb_r, jc_r, _, _ = rate_judged(redraw)
    jb_ctl, _, fit_n, cells_n = rate_judged(flat_in_n(perm))
    _, jc_ctl, fit_p, cells_p = rate_judged(flat_in_p(perm))
    n_cells = perm.groupby(["n", "p_n"]).ngroups
    where = f"{len(cells)} of {n_cells} cells (mean sinΘ ≤ 1), one fit per repetition, {reps} reps"
    b_thr = f"|b + 0.5| < {B_TOL} (TOST, 90 % interval inside)"
    c_thr = f"|c − 1| < {C_TOL} (TOST, 90 % interval inside)"
    b_cal = []
    for name, (db, expect) in B_CALIB.items():
        j, _, _, kept = rate_judged(rerate(perm, db=db), cells)
        b_cal.append(
            calibration(
                "T4b",
                f"The same fits and test on the measured series re-rated by (n/n_min)^{db:+.3g}, "
                "on the same cells "
                f"({name}: b moved by {db:+.3g})",
                j,
                b_thr,
                expect,
                fig("t4_rate"),
                detail=f"b + 0.5 = {_ci(j)}; the {len(kept)} cells of the evidence row",
                measured=round(j.estimate - 0.5, 4),
            )
        )
    c_cal = []
    for name, (dc, expect) in C_CALIB.items():
        _, j, _, kept = rate_judged(rerate(perm, dc=dc), cells)
        c_cal.append(
            calibration(
                "T4c",
                f"The same fits and test on the measured series re-rated by (1 − p_n)^{-dc:+.3g}, "
                "on the same cells "
                f"({name}: c moved by {dc:+.3g})",
                j,
                c_thr,
                expect,
                fig("t4_rate"),
                detail=f"c − 1 = {_ci(j)}; the {len(kept)} cells of the evidence row",
                measured=round(j.estimate + 1.0, 4),
            )
        )
    ratios = clip_ratios(clip)
    clip_reps = clip["rep"].nunique()
    return [
        judged_row(
            "T4b",
            f"For {SVD_ESTIMATOR}, sinΘ falls like n^{{-1/2}} (log–log slope b in n, mismatch "
            "as in-sample permutation; judged: b + 1/2 per repetition)",
            jb,
            b_thr,
            figure=fig("t4_rate"),
            detail=f"b + 0.5 = {_ci(jb)}; redraw variant b + 0.5 = {_ci(jb_r)} ({jb_r.verdict}); "
            f"per-repetition sd of b {per_rep['b'].std(ddof=1):.3f}; {where}",
            measured=round(jb.estimate - 0.5, 4),
        ),
        *b_cal,
        judged_row(
            "T4b",
            "The same fits and test on a series that does not fall with n: each cell's value "
            f"replaced by the n = {int(perm['n'].min())} value at the same p_n and repetition",
            jb_ctl,
            b_thr,
            kind="control",
            figure=fig("t4_rate"),
            detail=f"per-repetition b: mean {_f3(fit_n['b'].mean())}; {len(cells_n)} cells kept.",
            measured=round(jb_ctl.estimate - 0.5, 4) + 0.0,
        ),
        judged_row(
            "T4c",
            f"For {SVD_ESTIMATOR}, sinΘ grows like 1/(1 − p_n) (exponent c of 1/(1 − p_n) in "
            "the joint fit; judged: c − 1 per repetition)",
            jc,
            c_thr,
            figure=fig("t4_rate"),
            detail=f"c − 1 = {_ci(jc)}; redraw variant c − 1 = {_ci(jc_r)} ({jc_r.verdict}); "
            f"per-repetition sd of c {per_rep['c'].std(ddof=1):.3f}; {where}",
            measured=round(jc.estimate + 1.0, 4),
        ),
        *c_cal,
        judged_row(
            "T4c",
            "The same fits and test on a series that does not grow with 1/(1 − p_n): each "
            "cell's value replaced by the p_n = 0 value at the same n and repetition",
            jc_ctl,
            c_thr,
            kind="control",
            figure=fig("t4_rate"),
            detail=f"per-repetition c: mean {_f3(fit_p['c'].mean())}; {len(cells_p)} cells kept.",
            measured=round(jc_ctl.estimate + 1.0, 4) + 0.0,
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


# --------------------------------------------------------------------------- unpaired data

# T4d/T4g, 0.5: with ~1000 correct pairs added to 100, the n^{-1/2} rate predicts a ratio
# after/before ≈ 0.3; 0.5 leaves room for the refit's weighting and the wrong pairs. The design
# powers a PASS at ratio 0 and a FAIL at ratio 1 (2x the tolerance): unpaired data that do not
# help at all.
HELP_TOL = 0.5
# T4d/T4g, the contrast "helps more than at r ≈ log N": ratio(r=30) − ratio(r=10) < −0.05.
# Restated from the strict sign (ratio(30) < ratio(10)), which a threshold-free rule cannot
# judge with an interval. 0.05 = HELP_TOL/10, fixed before the verdict runs; it is under half of
# each pilot contrast (seeds 20000-20004: T4g's pipeline −0.170, sd 0.036 per seed; T4d's
# −0.137, sd 0.033; the old reports had −0.12), so the design PASSes at a contrast of −0.1
# and FAILs when there is none.
CONTRAST_MIN = 0.05
# T4e: the precision of Ê^u (eq. 4.2) at r = 30 minus that at r = 10 must exceed DROP_MIN.
# Fixed from a pilot of `detect_run` on seeds 20000-20004 (disjoint from the verdict seeds 0..
# and the power analysis's 10000..), N = 3000, before any verdict run: precision 0.179 (sd
# 0.018) at r = 10 and 0.811 (sd 0.012) at r = 30, a drop of 0.632. "Well below" is stated as
# a drop of at least half that, 0.632/2 rounded down to 0.3: the design then PASSes at the
# pilot's drop and FAILs when the precision does not depend on r (drop 0 = 2x the tolerance).
# Pilot precisions at the other ranks (same seeds): r = 6 0.050, 8 0.118, 12 0.255, 14 0.348,
# 16 0.421, 20 0.552, 25 0.710.
DROP_MIN = 0.3
T4E_PILOT = {6: 0.050, 8: 0.118, 10: 0.179, 12: 0.255, 14: 0.348, 16: 0.421, 20: 0.552,
             25: 0.710, 30: 0.811}  # fmt: skip
# T4e's calibration rank pairs, from the same pilot: (30, 25) has a drop of 0.10 (both ranks
# ≫ log N: no contrast to speak of, 1.7x the tolerance below the design's PASS point) and must
# FAIL; (30, 14) has 0.46 (half a tolerance above the threshold) and must PASS.
T4E_CALIB = {"near miss: r = 30 against r = 25 (both ≫ log N)": ((30, 25), "FAIL"),
             "0.5x tolerance: r = 30 against r = 14": ((30, 14), "PASS")}  # fmt: skip
# T4g's 0.5x calibration ranks, from the pilot of `detect_run` on seeds 20000-20004 (ratio
# after/before: r = 6 0.427, 8 0.340, 10 0.335, 12 0.306, 14 0.287, 16 0.259, 20 0.219, 25
# 0.193, 30 0.165). (20, 12): ratio(20) = 0.219 (0.44 of the way from the ideal 0 to HELP_TOL)
# and a contrast −0.087 (between the design's PASS point −0.1 and the threshold −0.05; sd 0.01
# per seed). (16, 10) sits exactly half-way in both (0.259, −0.076) but its contrast's sd of
# 0.04 would need about 15 seeds to PASS; this pair keeps the PASS within reach of the presets.
T4G_HALF = (20, 12)
# T4d's 0.5x calibration ranks, from a pilot of `unpaired_run` on seeds 20000-20004 (ratio
# after/before: r = 8 0.419, 10 0.316, 12 0.254, 14 0.224, 16 0.194, 20 0.191, 30 0.179; the
# refit on the pairs alone, T4d's near miss: 0.84-0.93). (14, 10): ratio(14) = 0.224 (0.45 of
# the way to HELP_TOL), contrast −0.092 (sd 0.041 per seed); (12, 10) (0.254, −0.062) is
# nearer half-way but would need about 30 seeds to PASS.
T4D_HALF = (14, 10)


# The seeds of the threshold pilot: disjoint from the verdict seeds (0, 1, ...) and from the
# power analysis's pilot seeds (10000, ...).
THRESHOLD_PILOT_SEEDS = tuple(range(20000, 20005))


def threshold_pilot(
    which: str = "detect",
    ranks: tuple[int, ...] = (6, 8, 10, 12, 14, 16, 20, 25, 30),
    seeds: tuple[int, ...] = THRESHOLD_PILOT_SEEDS,
    N: int = 3000,
) -> pd.DataFrame:
    """Rerun the pilot that fixed DROP_MIN, T4E_PILOT, T4E_CALIB and T4G_HALF (`which` =
    "detect": `detect_run`) or T4D_HALF ("unpaired": `unpaired_run`), one row per (rank,
    seed), with the parameters of the full preset. Minutes on one core."""
    rows = []
    for r in ranks:
        for k in seeds:
            p = {"r": r, "rep": k, "n": 100, "N": N, "d1": 40, "d2": 39, "nu_refit": 2.0}
            if which == "detect":
                out = lm.detect_run(p)
            else:
                p.update(cell=UNPAIRED_CELLS.index(r), keep=1000, **lm.clip_params(UNPAIRED_CLIP))
                out = lm.unpaired_run(p)
            rows.append({"r": r, "rep": k, **out})
    return pd.DataFrame(rows)


def ratio_by_rank(df: pd.DataFrame, after: str = "sin_theta_after") -> pd.DataFrame:
    """Per seed (rows) and rank (columns): sinΘ after / before."""
    t = df.assign(ratio=df[after] / df["sin_theta_before"])
    return t.pivot_table(index="rep", columns="r", values="ratio")


def helps_judged(ratio: pd.DataFrame, hi: int, lo: int) -> list[V.Judged]:
    """T4d/T4g's rule, per seed: [ratio(hi) < HELP_TOL, ratio(hi) − ratio(lo) < −CONTRAST_MIN],
    the two sub-cases of one row (Holm)."""
    return [
        V.judge(ratio[hi].to_numpy(), HELP_TOL, "below"),
        V.judge((ratio[hi] - ratio[lo]).to_numpy(), -CONTRAST_MIN, "below"),
    ]


def drop_judged(prec: pd.DataFrame, hi: int, lo: int) -> V.Judged:
    """T4e's rule, per seed: precision(hi) − precision(lo) > DROP_MIN."""
    return V.judge((prec[hi] - prec[lo]).to_numpy(), DROP_MIN, "above")


def helps_check(ratio_hi: float, ratio_lo: float) -> bool:
    """T4d's superseded point rule: ratio(30) <= HELP_TOL and ratio(30) < ratio(10)."""
    return ratio_hi <= HELP_TOL and ratio_hi < ratio_lo


# The superseded T4e thresholds (a Gaussian heuristic for the row argmax: top-1 accuracy ≈ 0.27
# at r=10 and ≈ 0.85 at r=30 for N=3000), applied to mutual argmax; kept for its labelled FAIL.
PREC_LOW, PREC_HIGH = 0.5, 0.75


def precision_check(prec_lo: float, prec_hi: float) -> bool:
    """T4e's superseded rule: precision at r ≈ log N <= PREC_LOW and at r ≫ log N >= PREC_HIGH."""
    return prec_lo <= PREC_LOW and prec_hi >= PREC_HIGH


def _help_threshold(hi: int, lo: int) -> str:
    return f"ratio(r={hi}) < {HELP_TOL} and ratio(r={hi}) − ratio(r={lo}) < −{CONTRAST_MIN} (Holm)"


def _unpaired_claims(df: pd.DataFrame) -> tuple[list[ClaimResult], ClaimResult]:
    """T4d: Algorithm 1 with the mutual-argmax detector and GD on CLIP, n=100 pairs, N unpaired;
    and the superseded mutual-argmax reading of T4e, as a labelled finding."""
    reps, N, keep = df["rep"].nunique(), int(df["N"].iloc[0]), int(df["keep"].iloc[0])
    m = df.groupby("r").mean(numeric_only=True)
    ratio, none = ratio_by_rank(df), ratio_by_rank(df, "sin_theta_after_none")
    hi, lo = R_HIGH, R_LOW
    unp = (
        f"n=100 pairs, N={N} unpaired (log N = {math.log(N):.2f}), keep ≤ {keep} mutual-argmax "
        f"pairs, ν=2, GD on CLIP (τ=1, ρ=1), d=(40,39), {reps} reps"
    )
    thr = _help_threshold(hi, lo)
    mean = ratio.mean()
    ratios = ", ".join(f"r={r}: {mean[r]:.3f}" for r in ratio.columns)
    h_hi, h_lo = T4D_HALF
    m_hi, m_lo = mean[hi], mean[lo]
    p10, p30 = m.loc[lo, "precision_mutual"], m.loc[hi, "precision_mutual"]
    old = V.judge(df[df.r == lo]["precision_mutual"].to_numpy(), PREC_LOW, "below")
    old_hi = V.judge(df[df.r == hi]["precision_mutual"].to_numpy(), PREC_HIGH, "above")
    old_verdict = V.claim_verdict(V.holm_verdicts([old, old_hi]))
    rows = [
        judged_row(
            "T4d",
            "Unpaired data help when r ≫ log N, and more than at r ≈ log N (Algorithm 1 with "
            "the mutual-argmax detector and GD on CLIP): sinΘ after / before at r = 30 against "
            "r = 10",
            helps_judged(ratio, hi, lo),
            thr,
            figure=fig("t4_unpaired"),
            detail=f"mean ratio {ratios}; sinΘ before → after: r={lo} "
            f"{m.loc[lo, 'sin_theta_before']:.3f} → {m.loc[lo, 'sin_theta_after']:.3f}, r={hi} "
            f"{m.loc[hi, 'sin_theta_before']:.3f} → {m.loc[hi, 'sin_theta_after']:.3f}; {unp}",
            measured=f"{m_hi:.3f} (r={hi}) vs {m_lo:.3f} (r={lo})",
        ),
        calibration(
            "T4d",
            "Near miss: the same rule on Algorithm 1 whose detector finds no pair (the refit "
            "with ν = 2 on the n pairs alone): no help (ratio ≈ 1 = 2x the tolerance) and no "
            "contrast",
            helps_judged(none, hi, lo),
            thr,
            "FAIL",
            fig("t4_unpaired"),
            detail=f"ratio r={hi}: {none[hi].mean():.3f}, r={lo}: {none[lo].mean():.3f}",
            measured=f"{none[hi].mean():.3f} (r={hi}) vs {none[lo].mean():.3f} (r={lo})",
        ),
        calibration(
            "T4d",
            f"About 0.5x tolerance: the same rule on Algorithm 1 at r = {h_hi} against r = "
            f"{h_lo}, ranks whose pilot values sit inside both thresholds (ratio 0.224, "
            "contrast −0.092)",
            helps_judged(ratio, h_hi, h_lo),
            _help_threshold(h_hi, h_lo),
            "PASS",
            fig("t4_unpaired"),
            detail=f"ratio r={h_hi}: {mean[h_hi]:.3f}, r={h_lo}: {mean[h_lo]:.3f}",
            measured=f"{mean[h_hi]:.3f} (r={h_hi}) vs {mean[h_lo]:.3f} (r={h_lo})",
        ),
        judged_row(
            "T4d",
            "The same rule with the two ranks swapped (r = 10 in r = 30's place)",
            helps_judged(ratio, lo, hi),
            _help_threshold(lo, hi),
            kind="control",
            figure=fig("t4_unpaired"),
            detail="a check that passed both ways round could not see the r-dependence.",
            measured=f"{m_lo:.3f} (r={lo} as r={hi}) vs {m_hi:.3f}",
        ),
    ]
    superseded = finding(
        "T4e",
        "Superseded reading of T4e (labelled, no verdict): precision of the mutual-argmax "
        "pairs, a detector Algorithm 1 does not use, against the old thresholds r = 10 ≤ "
        f"{PREC_LOW} and r = 30 ≥ {PREC_HIGH}",
        f"{p10:.3f} vs {p30:.3f}: the old rule FAILs"
        if old_verdict == "FAIL"
        else f"{p10:.3f} vs {p30:.3f}: the old rule gives {old_verdict}",
        f"mutual-argmax precision r={lo} {_ci(old)} (≤ {PREC_LOW}: {old.verdict}), r={hi} "
        f"{_ci(old_hi)} (≥ {PREC_HIGH}: {old_hi.verdict}); yield (mutual pairs / N) r={lo} "
        f"{m.loc[lo, 'yield_mutual']:.3f}, r={hi} {m.loc[hi, 'yield_mutual']:.3f}; "
        f"row-argmax precision r={lo} {m.loc[lo, 'precision_argmax']:.3f}, r={hi} "
        f"{m.loc[hi, 'precision_argmax']:.3f}; eq. 4.2 precision on the same GD fits r={lo} "
        f"{m.loc[lo, 'precision_top_n']:.3f}, r={hi} {m.loc[hi, 'precision_top_n']:.3f}. "
        "The mutual filter trades yield for precision: at r ≈ log N it finds fewer pairs, "
        f"not wrong ones. Old verdict: FAIL in quick and full. {unp}",
        fig("t4_unpaired"),
    )
    return rows, superseded


def _detect_claims(df: pd.DataFrame) -> tuple[list[ClaimResult], list[ClaimResult]]:
    """T4e (the paper's detector) and T4g (Algorithm 1 with it, τ → ∞ limit), over r."""
    reps, N = df["rep"].nunique(), int(df["N"].iloc[0])
    prec = df.pivot_table(index="rep", columns="r", values="precision_top_n")
    ratio = ratio_by_rank(df)
    none, oracle = (
        ratio_by_rank(df, "sin_theta_after_none"),
        ratio_by_rank(df, "sin_theta_after_oracle"),
    )
    hi, lo = R_HIGH, R_LOW
    run = (
        f"Algorithm 1 in the τ → ∞ limit: fit SVD_r(S̄) on n=100 pairs, Ê^u = the top N of the "
        f"row- and column-argmax candidates (eq. 4.2), refit SVD_r(S̄_ν) with ν=2 on pairs + "
        f"Ê^u; N={N} (log N = {math.log(N):.2f}), d=(40,39), {reps} seeds"
    )
    drop_thr = "precision(r=30) − precision(r=10) > " + f"{DROP_MIN}"
    pm = prec.mean()
    curve = ", ".join(f"r={r}: {pm[r]:.3f}" for r in prec.columns)
    rm, nm, om = ratio.mean(), none.mean(), oracle.mean()
    rcurve = ", ".join(f"r={r}: {rm[r]:.3f}" for r in ratio.columns)
    lit = df.groupby("r")[["n_candidates", "n_literal"]].mean()
    e_cal = []
    for name, ((a, b), expect) in T4E_CALIB.items():
        j = drop_judged(prec, a, b)
        e_cal.append(
            calibration(
                "T4e",
                f"The same rule on the precision at r = {a} minus that at r = {b} ({name})",
                j,
                f"precision(r={a}) − precision(r={b}) > {DROP_MIN}",
                expect,
                fig("t4_detect"),
                detail=f"drop {_ci(j)}; pilot drop {T4E_PILOT[a] - T4E_PILOT[b]:.3f}",
            )
        )
    g_hi, g_lo = T4G_HALF
    j_drop = drop_judged(prec, hi, lo)
    t4e = [
        judged_row(
            "T4e",
            "The precision of the paper's detector (eq. 4.2: the top N of the row- and column-"
            "argmax candidates) is well below at r ≈ log N what it is at r ≫ log N: precision "
            "at r = 30 minus that at r = 10",
            j_drop,
            drop_thr + " (threshold from a pilot on seeds 20000-20004)",
            figure=fig("t4_detect"),
            detail=f"drop {_ci(j_drop)}; precision over r (mean): {curve}; {run}",
        ),
        *e_cal,
        judged_row(
            "T4e",
            "The same rule with the two ranks swapped (r = 10's precision in r = 30's place)",
            drop_judged(prec, lo, hi),
            f"precision(r={lo}) − precision(r={hi}) > {DROP_MIN}",
            kind="control",
            figure=fig("t4_detect"),
            detail="a check that passed both ways round could not see the r-dependence.",
        ),
        finding(
            "T4e",
            "Eq. 4.2 read literally (every pair above the N-th largest candidate similarity) "
            "keeps more than N pairs; the number of distinct candidates per rank",
            ", ".join(f"r={int(r)}: {v.n_literal:.0f}" for r, v in lit.iterrows()),
            "literal count / distinct candidates (mean over seeds): "
            + ", ".join(
                f"r={int(r)}: {v.n_literal:.0f} / {v.n_candidates:.0f}" for r, v in lit.iterrows()
            )
            + f"; N={N}. The verdicts use the top-N rule (Lemma 8.2 uses only the event that the "
            "row-argmax pairs = column-argmax pairs = E^u).",
            fig("t4_detect"),
        ),
    ]
    t4g = [
        judged_row(
            "T4g",
            "With the paper's detector (Algorithm 1 in the τ → ∞ limit of its losses), unpaired "
            "data help when r ≫ log N, and more than at r ≈ log N: sinΘ after / before at "
            "r = 30 against r = 10, on a curve over r",
            helps_judged(ratio, hi, lo),
            _help_threshold(hi, lo),
            figure=fig("t4_detect"),
            detail=f"mean ratio over r: {rcurve}; with a perfect detector (the N true pairs): "
            + ", ".join(f"r={r}: {om[r]:.3f}" for r in oracle.columns)
            + f"; {run}",
            measured=f"{rm[hi]:.3f} (r={hi}) vs {rm[lo]:.3f} (r={lo})",
        ),
        calibration(
            "T4g",
            "Near miss: the same rule on Algorithm 1 whose detector finds no pair (the refit "
            "with ν = 2 on the n pairs alone): no help (ratio ≈ 1 = 2x the tolerance) and no "
            "contrast",
            helps_judged(none, hi, lo),
            _help_threshold(hi, lo),
            "FAIL",
            fig("t4_detect"),
            detail=f"ratio r={hi}: {nm[hi]:.3f}, r={lo}: {nm[lo]:.3f}",
            measured=f"{nm[hi]:.3f} (r={hi}) vs {nm[lo]:.3f} (r={lo})",
        ),
        calibration(
            "T4g",
            f"About 0.5x tolerance: the same rule at r = {g_hi} against r = {g_lo}, ranks whose "
            "pilot values sit inside both thresholds (ratio 0.219, contrast −0.087)",
            helps_judged(ratio, g_hi, g_lo),
            _help_threshold(g_hi, g_lo),
            "PASS",
            fig("t4_detect"),
            detail=f"ratio r={g_hi}: {rm[g_hi]:.3f}, r={g_lo}: {rm[g_lo]:.3f}",
            measured=f"{rm[g_hi]:.3f} (r={g_hi}) vs {rm[g_lo]:.3f} (r={g_lo})",
        ),
    ]
    return t4e, t4g


# T4f, 1e-8: both sides are float64 (eps 2e-16); a wrong term (e.g. the paper's "−1" on the
# diagonal) gives relative errors of order 1e-2 or more.
GRAD_TOL = 1e-8


def _gradient(df: pd.DataFrame) -> list[ClaimResult]:
    """T4f: closed-form gradient vs torch.autograd in float64 on random (n, d1, d2, r, τ, ν, ρ).

    Exact: one fixed set of cases (seed 0), every number a float64 computation; the identity
    must hold in every case, so the judged value is the worst case, judged exactly."""
    n = int(df["n_cases"].iloc[0])
    cases = f"{n} random (n, d1, d2, r, τ, ν, ρ) cases in float64 (seed 0)"
    thr = f"max relative error < {GRAD_TOL:g} (exact)"

    def ex(col: str) -> V.Judged:
        return V.exact(float(df[col].max()), GRAD_TOL, "below", n=n)

    return [
        judged_row(
            "T4f",
            "The CLIP-loss gradient equals −G2Sᵀ + ρG2G2ᵀG1 (S = XᵀMY/n) as autograd computes it",
            ex("max_rel_error"),
            thr,
            kind="implementation",
            detail=cases,
        ),
        calibration(
            "T4f",
            "Near miss: the same check on the closed form plus a known error of relative size "
            f"{lm.GRAD_CALIB['near_miss']:g} (2x the tolerance; a random direction per case)",
            ex("max_rel_error_near_miss"),
            thr,
            "FAIL",
            detail=cases + " (the same cases).",
        ),
        calibration(
            "T4f",
            "0.5x tolerance: the same check on the closed form plus a known error of relative "
            f"size {lm.GRAD_CALIB['half']:g}",
            ex("max_rel_error_half"),
            thr,
            "PASS",
            detail=cases + " (the same cases).",
        ),
        judged_row(
            "T4f",
            "The same check on the paper's printed formula: M_ii = ν − 1 in place of "
            "ν − (P^row_ii + P^col_ii)/2",
            ex("max_rel_error_printed"),
            thr,
            kind="control",
            detail=cases + " (the same cases).",
        ),
    ]


def evaluate(tables: dict[str, pd.DataFrame], cfg: T4Config) -> list[ClaimResult]:
    t4d, superseded = _unpaired_claims(tables["t4-unpaired"])
    t4e, t4g = _detect_claims(tables["t4-detect"])
    return [
        *_gd_svd(tables["t4-gd"], tables["t4-fixed-point"]),
        *_rate_claims(tables["t4-rate"], tables["t4-clip"]),
        *t4d,
        *t4e,
        superseded,
        *_gradient(tables["t4-gradient"]),
        *t4g,
    ]

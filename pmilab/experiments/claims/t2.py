"""T2: what each similarity family can represent (docs/theory.md T2).

Checks, on K-class latent joints (exact population loss) and on a Gaussian (minibatches):
- T2a  a linear head with d = K dimensions does not reach PMI: PMI is full rank, so even its
       exact Eckart–Young floor stays above the reach tolerance. That no linear head beats
       that floor, and that its table has rank <= d+1, holds by construction: an
       implementation check;
- T2b  KME's error collapses at M = K points: below REACH_TOL, and below the floor of a
       linear head with d = K dimensions (something no linear head of that size can do).
       Point-set heads train HeadsConfig.point_steps (10000) steps: at K = 2 the loss sits on
       a plateau until a step between 4000 and 8000 (results/t2/plateau.md), so a 2000-step
       budget measures the optimiser, not the capacity;
- T2c  WPSE's error falls with every doubling of M;
- T2d  on a Gaussian, the same bilinear head on norm (quadratic) features reaches PMI; that
       on raw inputs it stays at or above its closed-form floor is an implementation check.

Negative controls, each row's own check on a case the theory says must FAIL: T2a the tabular
head (unconstrained: it reaches PMI); T2b the linear head at d = K; T2c a linear head (d = 2)
trained at every M, whose function class does not grow with M; T2d the raw bilinear head.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from pmilab.experiments.claims.heads import HeadsConfig, heads_config, heads_sweep, run_params
from pmilab.experiments.claims.tolerances import REACH_TOL, REACH_TOL_MC, Z_TOL, rel_error
from pmilab.experiments.framework.claim import (
    ClaimResult,
    check_preset,
    control,
    fig,
    fmt,
    implementation,
)
from pmilab.experiments.framework.sweep import RunSpec, Sweep, seed_list
from pmilab.experiments.tasks.continuous import (
    CONTINUOUS_METRICS,
    continuous_head,
    continuous_heads,
)
from pmilab.experiments.tasks.discrete import DISCRETE_METRICS, discrete_head, discrete_heads
from pmilab.stats import group_mean_se

CLAIM = "T2"
TITLE = "What each similarity family can represent: linear floors, KME at M = K, WPSE in M"

# Relative slack for "never below the floor": training is float32 and the floor is exact
# float64, so a trained head may sit below it by roundoff only (~1e-6 relative); 1e-4 is far
# above roundoff and far below any real violation.
FLOOR_SLACK = 1e-4


@dataclass(frozen=True)
class GaussConfig:
    """A bilinear head (hidden=(), unnormalised, bias) on raw vs quadratic features (T2d)."""

    spec: str = "gaussian:dx=2,dy=2,rho=0.8/0.5"
    dim: int = 8  # >= rank(D) + 2 = 4: the quadratic-feature head represents PMI exactly
    batch_size: int = 256
    steps: int = 3000
    lr: float = 0.01
    eval_samples: int = 2048
    seeds: int = 3


@dataclass(frozen=True)
class T2Config:
    heads: HeadsConfig
    gauss: GaussConfig


GAUSS_PRESETS = {
    "full": GaussConfig(),
    "quick": GaussConfig(steps=1500, eval_samples=1024, seeds=5),
    "smoke": GaussConfig(steps=10, eval_samples=64, seeds=1),
}


def config(preset: str, seeds: int | None = None) -> T2Config:
    g = GAUSS_PRESETS[check_preset(preset)]
    if seeds:
        g = replace(g, seeds=seeds)
    return T2Config(heads_config(preset, seeds), g)


def gauss_sweep(g: GaussConfig) -> Sweep:
    runs = []
    for feats in ("raw", "quadratic"):
        for seed in seed_list(g.seeds):
            p = {
                "dist": g.spec,
                "similarity": "linear",
                "dim": g.dim,
                "points": 1,
                "hidden": "",
                "features": feats,
                "normalize": 0,
                "bias": 1,
                "logit_cap": 0,
                "objective": "symmetric",
                "population": 0,
                "batch_size": g.batch_size,
                "steps": g.steps,
                "lr": g.lr,
                "seed": seed,
                "eval_samples": g.eval_samples,
            }
            rid = (
                "t2gauss",
                "gaussian-2-2-0.8-0.5",
                feats,
                f"d{g.dim}",
                f"s{g.steps}",
                f"seed{seed}",
            )
            runs.append(RunSpec.of(p, *rid))
    return Sweep(
        "t2-gauss", continuous_head, runs, CONTINUOUS_METRICS, "T2", cell_task=continuous_heads
    )


def control_sweep(h: HeadsConfig) -> Sweep:
    """T2c's control: a linear head (d = 2) trained at each M of the WPSE curve. M changes
    nothing in a linear head, so its error cannot fall with M."""
    k = h.curve_ks[0]
    runs = []
    for m in h.points:
        for seed in seed_list(h.seeds):
            p = {**run_params(h, k, "linear", 2, m, seed), "probe_n": 0}
            runs.append(RunSpec.of(p, "t2ctl", f"k{k}", "linear", "d2", f"M{m}", f"seed{seed}"))
    return Sweep(
        "t2-control", discrete_head, runs, DISCRETE_METRICS, "T2", cell_task=discrete_heads
    )


def sweeps(cfg: T2Config) -> list[Sweep]:
    return [heads_sweep(cfg.heads), gauss_sweep(cfg.gauss), control_sweep(cfg.heads)]


def stays_above(df: pd.DataFrame) -> tuple[float, bool]:
    """T2a's check: the smallest relative error of these heads, and whether it stays above
    REACH_TOL (the head does not reach PMI)."""
    low = float(rel_error(df).min())
    return low, low > REACH_TOL


def _linear_floor(df: pd.DataFrame) -> list[ClaimResult]:
    lin = df[df.similarity == "linear"]
    at_k = lin[lin["dim"] == lin["k"]]
    tab = df[df.similarity == "tabular"]
    low, ok = stays_above(at_k)
    c_low, c_ok = stays_above(tab)
    floor_k = (at_k.rank_floor / at_k.product_std).min()
    gap = ((lin.pmi_rmse_product - lin.rank_floor) / lin.product_std).min()
    excess_rank = int((lin["rank"] - (lin["dim"] + 1)).max())
    return [
        ClaimResult(
            "T2a",
            "A linear head with d = K does not reach PMI (PMI is full rank): its error stays "
            "above the reach tolerance",
            low,
            f"smallest rmse/sd at d = K > {REACH_TOL}",
            ok,
            fig("t2_capacity"),
            f"{len(at_k)} runs at d = K; smallest error {fmt(low)} sd against an exact "
            f"Eckart-Young floor of {fmt(floor_k)} sd.",
        ),
        implementation(
            "T2a",
            "No linear head beats the exact Eckart-Young floor of its rank, and its table has "
            "rank <= d+1",
            float(gap),
            f"(rmse-floor)/sd >= -{FLOOR_SLACK}; rank <= d+1",
            gap >= -FLOOR_SLACK and excess_rank <= 0,
            fig("t2_capacity"),
            f"min (rmse - floor)/sd over {len(lin)} linear runs = {fmt(gap)}; max rank - (d+1) = "
            f"{excess_rank}.",
        ),
        control(
            "T2a",
            "The tabular head (a free table, no rank limit) through the same check",
            c_low,
            f"smallest rmse/sd > {REACH_TOL}",
            c_ok,
            fig("t2_capacity"),
            f"tabular: smallest error {fmt(c_low)} sd over {len(tab)} runs.",
        ),
    ]


def collapses(heads: pd.DataFrame, lin_k: pd.DataFrame) -> tuple[float, bool, list[str]]:
    """T2b's check: per K, the mean relative error of `heads` (already at M = K or d = K) is
    <= REACH_TOL and below the exact floor of a linear head with d = K."""
    rows, ok, worst = [], True, 0.0
    for k in sorted(heads.k.unique()):
        at = rel_error(heads[heads.k == k]).mean()
        floor = (lin_k[lin_k.k == k].rank_floor / lin_k[lin_k.k == k].product_std).min()
        worst = max(worst, float(at))
        ok &= bool(at <= REACH_TOL and (np.isnan(floor) or at < floor))
        rows.append(f"K={k}: {fmt(at)} (linear floor d=K {fmt(floor)})")
    return worst, ok, rows


def _kme_collapse(df: pd.DataFrame) -> list[ClaimResult]:
    kme = df[df.similarity == "kme"]
    lin = df[(df.similarity == "linear") & (df["dim"] == df["k"])]
    worst, ok, rows = collapses(kme[kme.points == kme.k], lin)
    below = ", ".join(
        f"K={k}: {fmt(rel_error(g).min())}" for k, g in kme[kme.points < kme.k].groupby("k")
    )
    c_worst, c_ok, c_rows = collapses(lin, lin)
    threshold = f"<= {REACH_TOL} and < linear floor(d=K), every K"
    return [
        ClaimResult(
            "T2b",
            "KME error collapses at M = K points: below the reach tolerance and below the "
            "floor of any linear head with d = K",
            worst,
            threshold,
            ok,
            fig("t2_capacity"),
            "M = K: " + "; ".join(rows) + f"; M < K, smallest: {below or 'none'} (relative "
            "errors rmse/sd, mean over seeds).",
        ),
        control(
            "T2b",
            "The linear head with d = K through the same check",
            c_worst,
            threshold,
            c_ok,
            fig("t2_capacity"),
            "linear d = K: " + "; ".join(c_rows) + ".",
        ),
    ]


def falls(curve_df: pd.DataFrame, by: str) -> tuple[float, bool, list[str]]:
    """T2c's check: per K, the mean error over seeds falls with every doubling of `by`."""
    ok, parts, worst = True, [], -np.inf
    for k in sorted(curve_df.k.unique()):
        curve = group_mean_se(curve_df[curve_df.k == k].assign(rel=rel_error), [by], "rel")
        if len(curve) < 2:
            continue
        steps = np.diff(curve["mean"].to_numpy())
        worst = max(worst, float(steps.max()))
        ok &= bool((steps < 0).all())
        parts.append(
            f"K={k}: "
            + ", ".join(f"M={m} {fmt(v)}" for m, v in zip(curve[by], curve["mean"], strict=True))
        )
    return worst, ok, parts


def _wpse_falls(df: pd.DataFrame, ctl: pd.DataFrame) -> list[ClaimResult]:
    worst, ok, parts = falls(df[df.similarity == "wpse"], "points")
    c_worst, c_ok, c_parts = falls(ctl, "points")
    return [
        ClaimResult(
            "T2c",
            "WPSE error falls steadily with M (every doubling of M lowers the mean error)",
            worst,
            "largest change per doubling < 0",
            ok,
            fig("t2_capacity"),
            "; ".join(parts),
        ),
        control(
            "T2c",
            "A linear head (d = 2) trained at every M (M does not enter a linear head) through "
            "the same check",
            c_worst,
            "largest change per doubling < 0",
            c_ok,
            fig("t2_capacity"),
            "linear d=2: " + "; ".join(c_parts),
        ),
    ]


def reaches_mc(df: pd.DataFrame) -> tuple[float, bool]:
    """T2d's check: mean relative error <= REACH_TOL_MC (Monte Carlo)."""
    rel = float((df.pmi_rmse_product / df.product_std).mean())
    return rel, rel <= REACH_TOL_MC


def _gauss(df: pd.DataFrame) -> list[ClaimResult]:
    raw, quad = df[df.features == "raw"], df[df.features == "quadratic"]
    floor = raw.bilinear_floor.iloc[0]
    z = ((raw.pmi_rmse_product - floor) / raw.pmi_rmse_product_se.clip(lower=1e-12)).min()
    rq, ok = reaches_mc(quad)
    rr, c_ok = reaches_mc(raw)
    floor_sd = fmt(floor / raw.product_std.iloc[0])
    return [
        ClaimResult(
            "T2d",
            "Gaussian: a bilinear head reaches PMI once its features carry the norms "
            "(quadratic features)",
            rq,
            f"quadratic: rmse/sd <= {REACH_TOL_MC}",
            ok,
            fig("t2_gaussian"),
            f"quadratic {fmt(rq)}, raw {fmt(rr)} (mean rmse/sd over {len(quad)} seeds).",
        ),
        implementation(
            "T2d",
            "On raw inputs the bilinear head cannot go below the closed-form floor "
            "sqrt(sum rho^4/(1-rho^2)^2)",
            float(z),
            f"raw >= floor - {Z_TOL:g} SE",
            z >= -Z_TOL,
            fig("t2_gaussian"),
            f"floor = {floor_sd} sd; min z of raw against floor = {fmt(z)}; {len(raw)} seeds.",
        ),
        control(
            "T2d",
            "The same bilinear head on raw inputs (no norm features) through the same check",
            rr,
            f"rmse/sd <= {REACH_TOL_MC}",
            c_ok,
            fig("t2_gaussian"),
            f"raw: {fmt(rr)} against a floor of {floor_sd} sd.",
        ),
    ]


def evaluate(tables: dict[str, pd.DataFrame], cfg: T2Config) -> list[ClaimResult]:
    df = tables["heads"]
    return [
        *_linear_floor(df),
        *_kme_collapse(df),
        *_wpse_falls(df, tables["t2-control"]),
        *_gauss(tables["t2-gauss"]),
    ]

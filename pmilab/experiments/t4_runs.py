"""The T4 experiments as functions that return tidy pandas tables (one row per repetition).

- `rate_table`:     sinΘ against n and p_n (the reference table of THEORY.md T4, and T4b/T4c);
- `gd_trace`:       GD on the CLIP loss from a small random init, tracked against the SVD of the
                    current contrastive cross-covariance S(G) (T4a);
- `unpaired_table`: Algorithm 1 at several signal ranks r (T4d/T4e).

Seeds: repetition k of a cell uses data seed 10_000·k + 100·(cell index) and basis seed k, so the
same call gives identical numbers on CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from pmilab.theory.clip_gd import ClipGDConfig, fit_clip_gd
from pmilab.theory.linear_mmcl import (
    balanced_factors,
    centred_cross_covariance,
    contrastive_cross_covariance,
    eckart_young_optimum,
    row_space,
    sin_theta,
    truncated_svd,
)
from pmilab.theory.spiked import SpikedModel
from pmilab.theory.unpaired import fit_with_unpaired

# THEORY.md T4 reference simulation: d=(40,39), r=10, noise sd 0.3, mean sinΘ over 5 repetitions.
REFERENCE = {
    (100, 0.0): 0.58,
    (100, 0.5): 1.09,
    (100, 0.8): 1.56,
    (100, 0.9): 1.53,
    (300, 0.0): 0.32,
    (300, 0.5): 0.64,
    (300, 0.8): 1.36,
    (300, 0.9): 1.55,
    (1000, 0.0): 0.17,
    (1000, 0.5): 0.35,
    (1000, 0.8): 0.90,
    (1000, 0.9): 1.32,
    (3000, 0.0): 0.10,
    (3000, 0.5): 0.20,
    (3000, 0.8): 0.50,
    (3000, 0.9): 0.97,
}
TABLE_NS = (100, 300, 1000, 3000)
TABLE_PS = (0.0, 0.5, 0.8, 0.9)

# GD on the CLIP loss for the table (T4): τ=1, ν=1, ρ=1, lr=0.5, spectral start SVD_r(S̄)/ρ
# (balanced factors), at most 1000 steps, stop at relative gradient norm 1e-6.
TABLE_CLIP = ClipGDConfig(tau=1.0, nu=1.0, rho=1.0, lr=0.5, steps=1000, tol=1e-6)


def rate_table(
    ns: Sequence[int] = TABLE_NS,
    ps: Sequence[float] = TABLE_PS,
    reps: int = 5,
    variant: str = "permute",
    clip: ClipGDConfig | None = None,
    progress: bool = True,
    d1: int = 40,
    d2: int = 39,
    r: int = 10,
    noise_sd: float = 0.3,
    clip_max_n: int = 10**9,
) -> pd.DataFrame:
    """sinΘ of the learned x-features for every (n, p_n, rep).

    Column `sin_theta_svd`: the optimum SVD_r(S̄)/ρ of the regularised linear loss, i.e. the
    τ→∞ limit of the CLIP loss. Column `sin_theta_clip` (only when `clip` is given): GD on the
    CLIP loss with that config, started from the linear-loss optimum, for cells with
    n <= `clip_max_n` (each GD step costs O(n²·d)).
    """
    cells = [(n, p) for n in ns for p in ps]
    rows = []
    bar = tqdm(total=len(cells) * reps, desc="T4 sinΘ table", disable=not progress, leave=False)
    for k in range(reps):
        model = SpikedModel(d1, d2, r, noise_sd, basis_seed=k)
        for c, (n, p) in enumerate(cells):
            data = model.sample_pairs(n, p, seed=10_000 * k + 100 * c, variant=variant)
            W, _ = eckart_young_optimum(centred_cross_covariance(data.X, data.Y), r, rho=1.0)
            G1, G2 = balanced_factors(W, r)
            row = {
                "n": n,
                "p_n": p,
                "rep": k,
                "variant": variant,
                "sin_theta_svd": sin_theta(row_space(G1), model.U1),
                "sin_theta_svd_y": sin_theta(row_space(G2), model.U2),
            }
            if clip is not None and n <= clip_max_n:
                t0 = time.perf_counter()
                fit = fit_clip_gd(data.X, data.Y, r, clip, init=(G1, G2))
                row.update(
                    sin_theta_clip=sin_theta(row_space(fit.G1), model.U1),
                    sin_theta_clip_y=sin_theta(row_space(fit.G2), model.U2),
                    clip_steps=fit.steps,
                    clip_grad_norm=fit.grad_norm,
                    clip_seconds=time.perf_counter() - t0,
                )
            rows.append(row)
            bar.update()
    bar.close()
    return pd.DataFrame(rows)


def gd_trace(
    n: int = 300,
    p: float = 0.0,
    reps: int = 3,
    cfg: ClipGDConfig | None = None,
    record_every: int = 10,
    r: int = 10,
) -> pd.DataFrame:
    """GD on the CLIP loss from N(0, 0.01²) entries; at every `record_every` steps record
    sinΘ(row space of G1, top-r left singular space of S(G)) (`sin_theta_to_svd`), the relative
    residual ‖G1ᵀG2 − SVD_r(S(G))/ρ‖_F / ‖SVD_r(S(G))/ρ‖_F, and sinΘ to the truth U1."""
    cfg = cfg or ClipGDConfig(tau=1.0, nu=1.0, rho=1.0, lr=0.5, steps=400, tol=0.0)
    rows = []
    for k in range(reps):
        model = SpikedModel(40, 39, r, 0.3, basis_seed=k)
        data = model.sample_pairs(n, p, seed=10_000 * k + 7)
        G1 = G2 = None
        done = 0
        while done < cfg.steps:
            chunk = min(record_every, cfg.steps - done)
            step_cfg = ClipGDConfig(cfg.tau, cfg.nu, cfg.rho, cfg.lr, chunk, 0.0, cfg.init_scale)
            init = None if G1 is None else (G1, G2)
            fit = fit_clip_gd(data.X, data.Y, r, step_cfg, seed=k, init=init)
            G1, G2, done = fit.G1, fit.G2, done + chunk
            S = contrastive_cross_covariance(G1, G2, data.X, data.Y, cfg.tau, cfg.nu)
            W_svd, _ = eckart_young_optimum(S, r, cfg.rho)
            U, _, _ = truncated_svd(S, r)
            resid = float((G1.T @ G2 - W_svd).norm() / W_svd.norm())
            rows.append(
                {
                    "rep": k,
                    "step": done,
                    "n": n,
                    "p_n": p,
                    "sin_theta_to_svd": sin_theta(row_space(G1), U),
                    "svd_residual": resid,
                    "sin_theta_to_truth": sin_theta(row_space(G1), model.U1),
                    "grad_norm": fit.grad_norm,
                }
            )
    return pd.DataFrame(rows)


def unpaired_table(
    ranks: Sequence[int] = (10, 30),
    n: int = 100,
    N: int = 3000,
    keep: int = 1000,
    nu_refit: float = 2.0,
    reps: int = 5,
    clip: ClipGDConfig | None = None,
    progress: bool = True,
    d1: int = 40,
    d2: int = 39,
) -> pd.DataFrame:
    """Algorithm 1 at each signal rank r: sinΘ before / after the refit and detection precision."""
    rows = []
    bar = tqdm(total=len(ranks) * reps, desc="T4 unpaired", disable=not progress, leave=False)
    for k in range(reps):
        for c, r in enumerate(ranks):
            model = SpikedModel(d1, d2, r, 0.3, basis_seed=k)
            pairs = model.sample_pairs(n, 0.0, seed=10_000 * k + 100 * c)
            un = model.sample_unpaired(N, seed=10_000 * k + 100 * c + 1)
            res = fit_with_unpaired(
                pairs.X, pairs.Y, un.X, un.Y, un.partner, r, keep=keep, nu_refit=nu_refit, cfg=clip
            )
            rows.append(
                {
                    "r": r,
                    "n": n,
                    "N": N,
                    "log_N": math.log(N),
                    "rep": k,
                    "keep": keep,
                    "nu_refit": nu_refit,
                    "sin_theta_before": sin_theta(row_space(res.before[0]), model.U1),
                    "sin_theta_after": sin_theta(row_space(res.after[0]), model.U1),
                    "n_mutual": res.n_mutual,
                    "n_kept": res.n_kept,
                    "yield_mutual": res.n_mutual / N,
                    "precision_kept": res.precision,
                    "precision_mutual": res.precision_all_mutual,
                    "precision_argmax": res.precision_argmax,
                }
            )
            bar.update()
    bar.close()
    return pd.DataFrame(rows)


def fit_rate(df: pd.DataFrame, col: str = "sin_theta_svd", max_sin: float = 1.0) -> dict:
    """OLS of log sinΘ = a + b·log n + c·log(1/(1−p_n)) over the repetitions of the cells whose
    mean sinΘ is at most `max_sin` (T4 rate: b = −1/2, c = 1). Returns a, b, c, their standard
    errors and the cells used."""
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
        "a": coef[0],
        "b": coef[1],
        "c": coef[2],
        "se_a": se[0],
        "se_b": se[1],
        "se_c": se[2],
        "cells": ok,
    }


def fixed_point_directions(
    n: int = 100, p: float = 0.9, seed: int = 1, r: int = 10, steps: int = 5000
) -> dict:
    """GD on the CLIP loss (τ=ρ=1) from a small random init to ‖∇‖/‖G‖ < 1e-10; then which
    singular directions of S(G) the learned row space holds (1-based, by descending singular
    value) and its sinΘ to the top-r left singular space (0 when the kept ones are the top r)."""
    model = SpikedModel(40, 39, r, 0.3, basis_seed=0)
    data = model.sample_pairs(n, p, seed=seed)
    fit = fit_clip_gd(data.X, data.Y, r, ClipGDConfig(steps=steps, tol=1e-10), seed=0)
    S = contrastive_cross_covariance(fit.G1, fit.G2, data.X, data.Y, 1.0, 1.0)
    U, _, _ = truncated_svd(S, min(S.shape))
    Q = row_space(fit.G1)  # (d1, r)
    captured = (Q.T @ U).pow(2).sum(0)  # (min(d1, d2),) share of each singular direction held
    kept = [int(k) + 1 for k in torch.nonzero(captured > 0.5).flatten()]
    return {
        "kept": kept,
        "sin_theta_top_r": sin_theta(Q, U[:, :r]),
        "grad_norm": fit.grad_norm,
        "steps": fit.steps,
        "n": n,
        "p_n": p,
    }

"""T4 task functions (linear multimodal contrastive learning, Nakada et al.): one run each.

- `rate_cell`:     sinΘ of one (n, p_n, repetition) cell of the reference table (T4b/T4c), for
                   the linear-loss SVD and, optionally, GD on the CLIP loss;
- `gd_trace`:      GD on the CLIP loss from a small random init, tracked against the SVD of the
                   current contrastive cross-covariance S(G) every `record_every` steps (T4a);
- `unpaired_run`:  Algorithm 1 at one signal rank r with the mutual-argmax detector and GD on
                   CLIP (T4d, and the superseded mutual-argmax reading of T4e);
- `detect_run`:    Algorithm 1 at one signal rank r with the paper's detector (eq. 4.2, top N of
                   the row- and column-argmax candidates) in the τ → ∞ limit of its losses: the
                   precision of Ê^u (T4e) and sinΘ before / after the refit (T4g);
- `gradient_identity`: the closed-form CLIP gradient against autograd in float64 (T4f);
- `fixed_point`:   which singular directions of S(G) GD keeps under heavy mismatch (a finding).

Seeds: repetition k of cell c uses data seed 10_000·k + 100·c and basis seed k, so the same
parameters give identical numbers on CPU (`detect_run`: 10_000·k + 100·r + 50 and + 51, so a
rank's data do not depend on which other ranks a preset runs).

Calibration cases (docs/theory.md T4): `gd_trace` also records the check of T4a on the final G
perturbed by a known amount, and `gradient_identity` the check of T4f on the closed form plus a
known error; both are sized in the check's own units (2x and 0.5x its tolerance).
"""

from __future__ import annotations

import math

import pandas as pd
import torch

from pmilab.theory.clip_gd import ClipGDConfig, fit_clip_gd
from pmilab.theory.linear_mmcl import (
    balanced_factors,
    centred_cross_covariance,
    clip_gradients,
    clip_loss,
    contrastive_cross_covariance,
    eckart_young_optimum,
    row_space,
    similarity,
    sin_theta,
    truncated_svd,
)
from pmilab.theory.spiked import SpikedModel
from pmilab.theory.unpaired import (
    detection_precision,
    fit_encoders,
    fit_with_unpaired,
    mutual_argmax_pairs,
)

NAN = float("nan")

# docs/theory.md T4 reference simulation: d=(40,39), r=10, noise sd 0.3, mean sinΘ over 5 reps.
REFERENCE = {
    (100, 0.0): 0.58, (100, 0.5): 1.09, (100, 0.8): 1.56, (100, 0.9): 1.53,
    (300, 0.0): 0.32, (300, 0.5): 0.64, (300, 0.8): 1.36, (300, 0.9): 1.55,
    (1000, 0.0): 0.17, (1000, 0.5): 0.35, (1000, 0.8): 0.90, (1000, 0.9): 1.32,
    (3000, 0.0): 0.10, (3000, 0.5): 0.20, (3000, 0.8): 0.50, (3000, 0.9): 0.97,
}  # fmt: skip
TABLE_NS = (100, 300, 1000, 3000)
TABLE_PS = (0.0, 0.5, 0.8, 0.9)

# GD on the CLIP loss for the table (T4): τ=1, ν=1, ρ=1, lr=0.5, spectral start SVD_r(S̄)/ρ
# (balanced factors), at most 1000 steps, stop at relative gradient norm 1e-6.
TABLE_CLIP = ClipGDConfig(tau=1.0, nu=1.0, rho=1.0, lr=0.5, steps=1000, tol=1e-6)

RATE_METRICS = [
    "sin_theta_svd",
    "sin_theta_svd_y",
    "sin_theta_clip",
    "sin_theta_clip_y",
    "clip_steps",
    "clip_grad_norm",
]
UNPAIRED_METRICS = [
    "sin_theta_before",
    "sin_theta_after",
    "sin_theta_after_none",
    "n_mutual",
    "n_kept",
    "yield_mutual",
    "precision_kept",
    "precision_mutual",
    "precision_argmax",
    "precision_top_n",
]
DETECT_METRICS = [
    "sin_theta_before",
    "sin_theta_after",
    "sin_theta_after_none",
    "sin_theta_after_oracle",
    "precision_top_n",
    "precision_mutual",
    "precision_argmax",
    "n_candidates",
    "n_literal",
]
GRADIENT_METRICS = [
    "max_rel_error",
    "max_rel_error_printed",
    "max_rel_error_near_miss",
    "max_rel_error_half",
]
FIXED_POINT_METRICS = ["kept", "sin_theta_top_r", "grad_norm", "gd_steps"]
TRACE_FIELDS = ["sin_theta_to_svd", "svd_residual", "sin_theta_to_truth", "grad_norm"]
# T4a's calibration: the final G perturbed so that the check reads CALIB_FACTORS x its tolerance
CALIB_FACTORS = {"near_miss": 2.0, "half": 0.5}
CALIB_PROBE = 1e-4  # relative size of the probe perturbation that measures the check's response
# T4f's calibration: the closed form plus a known relative error of 2x / 0.5x GRAD_TOL (1e-8)
GRAD_CALIB = {"near_miss": 2e-8, "half": 0.5e-8}


def clip_params(cfg: ClipGDConfig | None, prefix: str = "clip") -> dict:
    """A ClipGDConfig as plain-text run parameters (all NaN-free; `clip`=0 when absent)."""
    if cfg is None:
        return {prefix: 0}
    return {
        prefix: 1,
        f"{prefix}_tau": cfg.tau,
        f"{prefix}_nu": cfg.nu,
        f"{prefix}_rho": cfg.rho,
        f"{prefix}_lr": cfg.lr,
        f"{prefix}_max_steps": cfg.steps,
        f"{prefix}_tol": cfg.tol,
        f"{prefix}_init_scale": cfg.init_scale,
    }


def clip_config(p: dict, prefix: str = "clip") -> ClipGDConfig | None:
    if not int(p.get(prefix, 0)):
        return None
    return ClipGDConfig(
        float(p[f"{prefix}_tau"]),
        float(p[f"{prefix}_nu"]),
        float(p[f"{prefix}_rho"]),
        float(p[f"{prefix}_lr"]),
        int(p[f"{prefix}_max_steps"]),
        float(p[f"{prefix}_tol"]),
        float(p[f"{prefix}_init_scale"]),
    )


def rate_cell(p: dict) -> dict:
    """sinΘ of the learned x-features for one (n, p_n, rep) cell.

    `sin_theta_svd`: the optimum SVD_r(S̄)/ρ of the regularised linear loss, i.e. the τ→∞ limit
    of the CLIP loss. `sin_theta_clip` (only when the run has a clip config): GD on the CLIP loss
    with that config, started from the linear-loss optimum (each GD step costs O(n²·d)).
    Parameters: n, p_n, rep, cell (index of the cell in its table: part of the data seed),
    variant ("permute" | "redraw"), d1, d2, r, noise_sd and the clip fields.
    """
    k, c, n, r = int(p["rep"]), int(p["cell"]), int(p["n"]), int(p["r"])
    model = SpikedModel(int(p["d1"]), int(p["d2"]), r, float(p["noise_sd"]), basis_seed=k)
    data = model.sample_pairs(n, float(p["p_n"]), seed=10_000 * k + 100 * c, variant=p["variant"])
    W, _ = eckart_young_optimum(centred_cross_covariance(data.X, data.Y), r, rho=1.0)
    G1, G2 = balanced_factors(W, r)
    out = {
        "sin_theta_svd": sin_theta(row_space(G1), model.U1),
        "sin_theta_svd_y": sin_theta(row_space(G2), model.U2),
    }
    clip = clip_config(p)
    if clip is not None:
        fit = fit_clip_gd(data.X, data.Y, r, clip, init=(G1, G2))
        out.update(
            sin_theta_clip=sin_theta(row_space(fit.G1), model.U1),
            sin_theta_clip_y=sin_theta(row_space(fit.G2), model.U2),
            clip_steps=fit.steps,
            clip_grad_norm=fit.grad_norm,
        )
    return {k: out.get(k, NAN) for k in RATE_METRICS}


def rate_params(
    n: int,
    p_n: float,
    rep: int,
    cell: int,
    variant: str = "permute",
    clip: ClipGDConfig | None = None,
    d1: int = 40,
    d2: int = 39,
    r: int = 10,
    noise_sd: float = 0.3,
) -> dict:
    return {
        "n": n, "p_n": p_n, "rep": rep, "cell": cell, "variant": variant,
        "d1": d1, "d2": d2, "r": r, "noise_sd": noise_sd, **clip_params(clip),
    }  # fmt: skip


def trace_steps(steps: int, record_every: int) -> list[int]:
    """The steps at which `gd_trace` records: every `record_every`, and the last one."""
    out, done = [], 0
    while done < steps:
        done += min(record_every, steps - done)
        out.append(done)
    return out


def trace_metrics(steps: int, record_every: int, calibrate: bool = False) -> list[str]:
    out = [f"{f}_s{s}" for s in trace_steps(steps, record_every) for f in TRACE_FIELDS]
    if calibrate:
        out += ["calib_response"] + [f"calib_{name}" for name in CALIB_FACTORS]
    return out


def gd_trace(p: dict) -> dict:
    """GD on the CLIP loss from N(0, init_scale²) entries (one repetition `rep`); every
    `record_every` steps: sinΘ(row space of G1, top-r left singular space of S(G))
    (`sin_theta_to_svd`), the relative residual ‖G1ᵀG2 − SVD_r(S(G))/ρ‖_F / ‖SVD_r(S(G))/ρ‖_F,
    sinΘ to the truth U1, and the relative gradient norm; columns `<field>_s<step>`."""
    cfg = clip_config(p)
    k, n, r, every = int(p["rep"]), int(p["n"]), int(p["r"]), int(p["record_every"])
    model = SpikedModel(40, 39, r, 0.3, basis_seed=k)
    data = model.sample_pairs(n, float(p["p_n"]), seed=10_000 * k + 7)
    G1 = G2 = None
    out, done = {}, 0
    while done < cfg.steps:
        chunk = min(every, cfg.steps - done)
        step_cfg = ClipGDConfig(cfg.tau, cfg.nu, cfg.rho, cfg.lr, chunk, 0.0, cfg.init_scale)
        init = None if G1 is None else (G1, G2)
        fit = fit_clip_gd(data.X, data.Y, r, step_cfg, seed=k, init=init)
        G1, G2, done = fit.G1, fit.G2, done + chunk
        S = contrastive_cross_covariance(G1, G2, data.X, data.Y, cfg.tau, cfg.nu)
        W_svd, _ = eckart_young_optimum(S, r, cfg.rho)
        U, _, _ = truncated_svd(S, r)
        out[f"sin_theta_to_svd_s{done}"] = sin_theta(row_space(G1), U)
        out[f"svd_residual_s{done}"] = float((G1.T @ G2 - W_svd).norm() / W_svd.norm())
        out[f"sin_theta_to_truth_s{done}"] = sin_theta(row_space(G1), model.U1)
        out[f"grad_norm_s{done}"] = fit.grad_norm
    if int(p.get("calibrate", 0)):
        out.update(_svd_calibration(G1, G2, data.X, data.Y, r, cfg, float(p["tol"]), seed=k))
    return out


def svd_distance(G1, G2, X, Y, r: int, cfg: ClipGDConfig) -> float:
    """T4a's check on one G: max(sinΘ(row G1, top-r left singular space of S(G)), relative
    residual ‖G1ᵀG2 − SVD_r(S(G))/ρ‖_F / ‖SVD_r(S(G))/ρ‖_F): 0 exactly at the SVD fixed point."""
    S = contrastive_cross_covariance(G1, G2, X, Y, cfg.tau, cfg.nu)
    W_svd, _ = eckart_young_optimum(S, r, cfg.rho)
    U, _, _ = truncated_svd(S, r)
    res = float((G1.T @ G2 - W_svd).norm() / W_svd.norm())
    return max(sin_theta(row_space(G1), U), res)


def _svd_calibration(G1, G2, X, Y, r, cfg, tol, seed) -> dict:
    """T4a's calibration pair on one converged G: G1 + δ‖G1‖_F·E/‖E‖_F (E Gaussian, drawn per
    seed), δ chosen so that the check reads 2x and 0.5x `tol`. The check is linear in small δ
    (both parts are first order in the perturbation), so a probe at δ0 = CALIB_PROBE measures
    its response c = (d(δ0) − d(0))/δ0 and δ = factor·tol/c; the distances are then recomputed
    from scratch at that δ (`calib_<case>`), second-order terms (≈ δ·c, < 1e-5 relative)
    included."""
    gen = torch.Generator().manual_seed(1_000_003 + int(seed))
    E = torch.randn(G1.shape, generator=gen, dtype=G1.dtype)
    E = E * (G1.norm() / E.norm())
    d0 = svd_distance(G1, G2, X, Y, r, cfg)
    c = (svd_distance(G1 + CALIB_PROBE * E, G2, X, Y, r, cfg) - d0) / CALIB_PROBE
    out = {"calib_response": c}
    for name, factor in CALIB_FACTORS.items():
        out[f"calib_{name}"] = svd_distance(G1 + (factor * tol / c) * E, G2, X, Y, r, cfg)
    return out


def trace_long(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (rep, recorded step) from a table of `gd_trace` runs."""
    rows = []
    for rec in df.to_dict("records"):
        for s in trace_steps(int(rec["clip_max_steps"]), int(rec["record_every"])):
            row = {"rep": rec["rep"], "step": s, "n": rec["n"], "p_n": rec["p_n"]}
            row.update({f: rec[f"{f}_s{s}"] for f in TRACE_FIELDS})
            rows.append(row)
    return pd.DataFrame(rows)


def unpaired_run(p: dict) -> dict:
    """Algorithm 1 at signal rank r (repetition `rep`, rank index `cell`): sinΘ before / after
    the refit and the precision of the detected pairs."""
    k, c, r, N = int(p["rep"]), int(p["cell"]), int(p["r"]), int(p["N"])
    model = SpikedModel(int(p["d1"]), int(p["d2"]), r, 0.3, basis_seed=k)
    pairs = model.sample_pairs(int(p["n"]), 0.0, seed=10_000 * k + 100 * c)
    un = model.sample_unpaired(N, seed=10_000 * k + 100 * c + 1)
    res = fit_with_unpaired(
        pairs.X,
        pairs.Y,
        un.X,
        un.Y,
        un.partner,
        r,
        keep=int(p["keep"]),
        nu_refit=float(p["nu_refit"]),
        cfg=clip_config(p),
    )
    cfg = clip_config(p)
    # T4d's near miss: Algorithm 1 whose detector returns no pair (refit on the n pairs alone)
    none = fit_encoders(pairs.X, pairs.Y, r, cfg, nu=float(p["nu_refit"]), init=res.before)
    i, j, _, _ = top_n_pairs(similarity(*res.before, un.X, un.Y))
    return {
        "sin_theta_before": sin_theta(row_space(res.before[0]), model.U1),
        "sin_theta_after": sin_theta(row_space(res.after[0]), model.U1),
        "sin_theta_after_none": sin_theta(row_space(none[0]), model.U1),
        "n_mutual": res.n_mutual,
        "n_kept": res.n_kept,
        "yield_mutual": res.n_mutual / N,
        "precision_kept": res.precision,
        "precision_mutual": res.precision_all_mutual,
        "precision_argmax": res.precision_argmax,
        "precision_top_n": detection_precision(i, j, un.partner),
    }


def top_n_pairs(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """The detector of eq. 4.2 (docs/theory.md T4, Algorithm 1 step 3) on similarities s (N, N).

    Candidates: every row's best match and every column's best match, {(i, argmax_j s_ij)} ∪
    {(argmax_i s_ij, j)} (a pair that is both counts once); Ê^u = the N candidates with the
    largest s, best first (ties broken by the stable sort). Returns (i, j, the number of
    distinct candidates, the literal reading's count: pairs in [N]² with s >= the N-th largest
    candidate similarity, a finding).
    """
    N, M = s.shape
    rows, cols = torch.arange(N), torch.arange(M)
    key = torch.unique(torch.cat([rows * M + s.argmax(dim=1), s.argmax(dim=0) * M + cols]))
    i, j = key // M, key % M
    order = torch.argsort(s[i, j], descending=True, stable=True)[:N]
    i, j = i[order], j[order]
    n_literal = int((s >= s[i[-1], j[-1]]).sum())
    return i, j, int(key.numel()), n_literal


def detect_run(p: dict) -> dict:
    """Algorithm 1 with the paper's detector (eq. 4.2), in the τ → ∞ limit of its CLIP losses.

    1. fit SVD_r(S̄)/ρ on the n pairs (the τ → ∞ estimator of T4b/T4c);
    2. score the N unpaired x against the N unpaired x̃: s^u = Xu G1ᵀ G2 Yuᵀ;
    3. Ê^u = `top_n_pairs(s^u)`: N pairs, so precision = recall (`precision_top_n`, T4e);
    4. refit SVD_r(S̄_ν)/ρ on the n pairs + Ê^u with the positive term scaled by ν =
       `nu_refit` (the τ → ∞ limit of Algorithm 1's refit), `sin_theta_after` (T4g).
    Beside them: the refit on the n pairs alone (`sin_theta_after_none`: a detector that finds
    nothing, T4g's near miss), on the n pairs + the N true pairs (`..._oracle`: a perfect
    detector, a finding), and the precisions of the mutual-argmax pairs and of the row argmax.
    Parameters: r, rep, n, N, d1, d2, nu_refit. Data seeds 10_000·rep + 100·r + 50 (pairs) and
    + 51 (unpaired), basis seed rep.
    """
    k, r, N, nu = int(p["rep"]), int(p["r"]), int(p["N"]), float(p["nu_refit"])
    model = SpikedModel(int(p["d1"]), int(p["d2"]), r, 0.3, basis_seed=k)
    base = 10_000 * k + 100 * r + 50
    pairs = model.sample_pairs(int(p["n"]), 0.0, seed=base)
    un = model.sample_unpaired(N, seed=base + 1)
    G1, G2 = fit_encoders(pairs.X, pairs.Y, r, None)
    s = similarity(G1, G2, un.X, un.Y)
    i, j, n_cand, n_literal = top_n_pairs(s)
    mi, mj = mutual_argmax_pairs(G1, G2, un.X, un.Y)

    def refit(Xa, Ya) -> float:
        G = fit_encoders(torch.cat([pairs.X, Xa]), torch.cat([pairs.Y, Ya]), r, None, nu=nu)
        return sin_theta(row_space(G[0]), model.U1)

    none = fit_encoders(pairs.X, pairs.Y, r, None, nu=nu)
    return {
        "sin_theta_before": sin_theta(row_space(G1), model.U1),
        "sin_theta_after": refit(un.X[i], un.Y[j]),
        "sin_theta_after_none": sin_theta(row_space(none[0]), model.U1),
        "sin_theta_after_oracle": refit(un.X, un.Y[un.partner]),
        "precision_top_n": detection_precision(i, j, un.partner),
        "precision_mutual": detection_precision(mi, mj, un.partner),
        "precision_argmax": float((s.argmax(dim=1) == un.partner).double().mean()),
        "n_candidates": n_cand,
        "n_literal": n_literal,
    }


def gradient_identity(p: dict) -> dict:
    """T4f: the closed-form gradient against torch.autograd in float64 on `n_cases` random
    (n, d1, d2, r, τ, ν, ρ), drawn from a generator seeded with `seed`; the worst relative
    error (`max_rel_error`), and the same for the paper's printed formula with M_ii = ν − 1
    (`max_rel_error_printed`, T4f's negative control) on the same cases."""
    gen = torch.Generator().manual_seed(int(p["seed"]))
    worst = worst_printed = 0.0
    planted = dict.fromkeys(GRAD_CALIB, 0.0)
    for _ in range(int(p["n_cases"])):
        n, d1, d2, r = (
            int(torch.randint(lo, hi, (1,), generator=gen))
            for lo, hi in [(2, 40), (1, 12), (1, 12), (1, 6)]
        )
        tau, nu, rho = (
            float(torch.empty(1).uniform_(lo, hi, generator=gen))
            for lo, hi in [(0.2, 5.0), (1.0, 3.0), (0.0, 2.0)]
        )
        X = torch.randn(n, d1, generator=gen, dtype=torch.float64)
        Y = torch.randn(n, d2, generator=gen, dtype=torch.float64)
        G1 = torch.randn(r, d1, generator=gen, dtype=torch.float64).requires_grad_()
        G2 = torch.randn(r, d2, generator=gen, dtype=torch.float64).requires_grad_()
        a1, a2 = torch.autograd.grad(clip_loss(G1, G2, X, Y, tau, nu, rho), (G1, G2))
        scale = math.hypot(float(a1.norm()), float(a2.norm()))
        # the calibration direction: drawn per case, unit norm over both gradients
        E1 = torch.randn(r, d1, generator=gen, dtype=torch.float64)
        E2 = torch.randn(r, d2, generator=gen, dtype=torch.float64)
        e_norm = math.hypot(float(E1.norm()), float(E2.norm()))
        for printed in (False, True):
            c1, c2 = clip_gradients(
                G1.detach(), G2.detach(), X, Y, tau, nu, rho, printed_diagonal=printed
            )
            err = math.hypot(float((a1 - c1).norm()), float((a2 - c2).norm())) / scale
            if printed:
                worst_printed = max(worst_printed, err)
                continue
            worst = max(worst, err)
            for name, eta in GRAD_CALIB.items():  # the closed form plus a known error
                b1, b2 = c1 + eta * scale * E1 / e_norm, c2 + eta * scale * E2 / e_norm
                e = math.hypot(float((a1 - b1).norm()), float((a2 - b2).norm())) / scale
                planted[name] = max(planted[name], e)
    return {
        "max_rel_error": worst,
        "max_rel_error_printed": worst_printed,
        **{f"max_rel_error_{name}": v for name, v in planted.items()},
    }


def fixed_point(p: dict) -> dict:
    """GD on the CLIP loss (τ=ρ=1) from a small random init to ‖∇‖/‖G‖ < 1e-10; then which
    singular directions of S(G) the learned row space holds (1-based, by descending singular
    value; `kept` as "1/2/3") and its sinΘ to the top-r left singular space (0 when the kept
    ones are the top r). Parameters: n, p_n, seed (data), r, steps."""
    r = int(p["r"])
    model = SpikedModel(40, 39, r, 0.3, basis_seed=0)
    data = model.sample_pairs(int(p["n"]), float(p["p_n"]), seed=int(p["seed"]))
    cfg = ClipGDConfig(steps=int(p["steps"]), tol=1e-10)
    fit = fit_clip_gd(data.X, data.Y, r, cfg, seed=0)
    S = contrastive_cross_covariance(fit.G1, fit.G2, data.X, data.Y, 1.0, 1.0)
    U, _, _ = truncated_svd(S, min(S.shape))
    Q = row_space(fit.G1)  # (d1, r)
    captured = (Q.T @ U).pow(2).sum(0)  # (min(d1, d2),) share of each singular direction held
    kept = [int(k) + 1 for k in torch.nonzero(captured > 0.5).flatten()]
    return {
        "kept": "/".join(str(k) for k in kept),
        "sin_theta_top_r": sin_theta(Q, U[:, :r]),
        "grad_norm": fit.grad_norm,
        "gd_steps": fit.steps,
    }

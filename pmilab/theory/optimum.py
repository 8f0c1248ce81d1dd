"""Closed forms around the optimal similarity ℓ* = PMI + C (docs/theory.md T1, T2, T5, T6). Pure.

- `product_std`: the spread of PMI under p(x)p(y), the unit of every relative PMI error.
- `rank_floor`: the smallest `pmi_rmse_product` any logit table of rank <= r can reach (T2: a
  linear head of dimension d has rank <= d). Exact (Eckart–Young in the p(x)p(y)-weighted norm,
  minimised over the free constant C).
- `gaussian_bilinear_floor`: the smallest `pmi_rmse_product` a bilinear head (linear encoders,
  no ‖x‖² feature) reaches on a canonical Gaussian (T2/T6).
- `infonce_loss_bound`: an upper bound on the expected one-sided InfoNCE loss of the PMI critic
  with batch N, i.e. a lower bound on the MI estimate it saturates to (T1c, T5).
- `cap_floor`: the smallest Δ (`pmi_delta`) of a head whose logits are confined to [-t, t] (T5).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import Tensor


def _np(a) -> np.ndarray:
    return torch.as_tensor(a).detach().to(torch.float64).cpu().numpy()


def product_std(pmi_table, px, py) -> float:
    """sqrt(Var_{p(x)p(y)} PMI) over the cells where PMI is finite."""
    p, w = _np(pmi_table), np.outer(_np(px), _np(py))
    keep = np.isfinite(p) & (w > 0)
    w = np.where(keep, w, 0.0) / w[keep].sum()
    p = np.where(keep, p, 0.0)
    m = (w * p).sum()
    return float(np.sqrt((w * (p - m) ** 2).sum()))


def _tail(a: np.ndarray, r: int) -> float:
    s = np.linalg.svd(a, compute_uv=False)
    return float(np.sqrt((s[r:] ** 2).sum()))


def rank_floor(pmi_table, px, py, rank: int) -> float:
    """min over rank-`rank` tables L and constants C of sqrt(Σ p(x)p(y)(L + C − PMI)²) (T2).

    In the coordinates A = diag(√px) PMI diag(√py) the weighted norm is Frobenius and the
    constant is c·√px√pyᵀ, so the floor is min_c EY_r(A − c √px√pyᵀ) with EY_r the
    Eckart–Young tail sqrt(Σ_{i>r} σ_i²). It is bracketed by EY_{r+1}(A) <= floor <= EY_r(A − c̄ ...)
    with c̄ the weighted mean; the 1-D minimum over c is found by Brent's method. Needs a
    finite PMI table.
    """
    p = _np(pmi_table)
    if not np.isfinite(p).all():
        raise ValueError("rank_floor needs a finite PMI table (a joint with full support)")
    u, v = np.sqrt(_np(px)), np.sqrt(_np(py))
    a = u[:, None] * p * v[None, :]
    if rank >= min(a.shape):
        return 0.0
    c0 = float((np.outer(u**2, v**2) * p).sum())
    res = minimize_scalar(
        lambda c: _tail(a - c * np.outer(u, v), rank),
        bracket=(c0 - 1.0, c0 + 1.0),
        tol=1e-12,
    )
    return float(min(res.fun, _tail(a - c0 * np.outer(u, v), rank)))


def numerical_rank(table, rtol: float = 1e-6) -> int:
    """Number of singular values above rtol·σ_max of a (centred-or-not) table."""
    s = np.linalg.svd(_np(table), compute_uv=False)
    return int((s > rtol * s[0]).sum()) if s.size and s[0] > 0 else 0


def gaussian_bilinear_floor(rho) -> float:
    """Best `pmi_rmse_product` of ℓ = xᵀAy + aᵀx + bᵀy + c on a canonical Gaussian (T2, T6).

    PMI = Σ_i [ρ_i/(1−ρ_i²) x_i y_i − ρ_i²/(2(1−ρ_i²)) (x_i² + y_i²)] + const, and under
    p(x)p(y) = N(0, I)² the centred squares x_i² − 1 (variance 2) are orthogonal to every
    bilinear, linear and constant function; so the residual is exactly those terms:
    floor² = Σ_i (ρ_i²/(2(1−ρ_i²)))² · (2 + 2) = Σ_i ρ_i⁴ / (1 − ρ_i²)².
    """
    r = np.asarray(_np(rho), dtype=np.float64).reshape(-1)
    return float(np.sqrt(np.sum(r**4 / (1 - r**2) ** 2)))


def gaussian_product_std(rho) -> float:
    """sqrt(Var_{p(x)p(y)} PMI) of a canonical Gaussian: the bilinear part contributes
    Σ (ρ/(1−ρ²))², the squares Σ ρ⁴/(1−ρ²)² (see `gaussian_bilinear_floor`)."""
    r = np.asarray(_np(rho), dtype=np.float64).reshape(-1)
    return float(np.sqrt(np.sum(r**2 / (1 - r**2) ** 2 + r**4 / (1 - r**2) ** 2)))


def infonce_loss_bound(joint_table, n: int) -> float:
    """B_N = E_p[log(1 + (N−1) e^{−PMI})] >= E[one-sided InfoNCE loss_N of ℓ = PMI] (T1c).

    Given a positive pair (x, y), the N−1 negatives y' are i.i.d. p(y) and
    E_{y'} e^{PMI(x,y') − PMI(x,y)} = e^{−PMI(x,y)} Σ_{y'} p(y'|x) = e^{−PMI(x,y)}; Jensen
    (log concave) gives the bound. Hence E[log N − loss_N] >= log N − B_N: the estimate
    saturates at log N when I(X;Y) ≫ log N. A critic within Δ of PMI + C (every logit
    difference moves by <= 2Δ) loses at most 2Δ more.
    """
    p = torch.as_tensor(joint_table, dtype=torch.float64)
    p = p / p.sum()
    outer = p.sum(1, keepdim=True) * p.sum(0, keepdim=True)
    nz = p > 0
    neg_pmi = outer[nz].log() - p[nz].log()  # −PMI on the support
    vals = torch.logaddexp(torch.zeros_like(neg_pmi), math.log(n - 1) + neg_pmi)
    return float((p[nz] * vals).sum())


def cap_floor(pmi_table, px, py, cap: float) -> float:
    """Smallest Δ = half-range(ℓ − PMI) of logits confined to [−cap, cap] (T5).

    range(ℓ − PMI) >= range(PMI) − range(ℓ) >= range(PMI) − 2·cap, so Δ >= max(0, R − cap)
    with R the half-range of PMI over the product support; equality is reached by clipping
    PMI − mid-range to [−cap, cap].
    """
    p, w = _np(pmi_table), np.outer(_np(px), _np(py))
    vals = p[(w > 0) & np.isfinite(p)]
    half_range = 0.5 * float(vals.max() - vals.min())
    return max(0.0, half_range - float(cap))


def pmi_half_range(pmi_table: Tensor) -> float:
    p = _np(pmi_table)
    p = p[np.isfinite(p)]
    return 0.5 * float(p.max() - p.min())

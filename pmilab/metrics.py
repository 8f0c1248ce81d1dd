"""The measured quantities of docs/theory.md, named exactly as its table (pure functions).

Two regimes, chosen by whether `weights` is given:
- exact (discrete joints): `logits` and `pmi` are (nx, ny) tables and `weights` the
  probability of each cell (p(x)p(y) for the product, p(x, y) for the joint); se = 0;
- Monte Carlo (continuous joints): no weights; the product quantities take an (n, m) grid of
  x_i against independent y_j draws, the joint ones n paired draws (n,). Standard errors:
  iid for paired draws; for the grid, the first-order (Hoeffding) variance of a two-sample
  V-statistic, var(row means)/n + var(column means)/m.

Every function returns an `Estimate` (a float with `.se`). Cells whose PMI is not finite
(p(x, y) = 0 inside the product support, where PMI = −∞) are left out of the PMI errors.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pmilab.losses import infonce_mi_estimate, population_loss, table_infonce
from pmilab.stats import Estimate, mean_se
from pmilab.theory.linear_mmcl import sin_theta  # noqa: F401  (docs/theory.md name, T4)


def _prepare(logits: Tensor, pmi: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Residuals r = ℓ − PMI in float64 and normalised weights (None: uniform Monte Carlo)."""
    logits = torch.as_tensor(logits).detach().to(torch.float64).cpu()
    pmi = torch.as_tensor(pmi).detach().to(torch.float64).cpu()
    if logits.shape != pmi.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and PMI {tuple(pmi.shape)} differ in shape")
    r = logits - pmi
    if weights is None:
        if not torch.isfinite(r).all():
            raise ValueError("Monte Carlo PMI metrics need finite logits and PMI on every sample")
        return r, None
    w = torch.as_tensor(weights).detach().to(torch.float64).cpu()
    if w.shape != r.shape:
        raise ValueError(f"weights {tuple(w.shape)} and logits {tuple(r.shape)} differ in shape")
    keep = (w > 0) & torch.isfinite(pmi)
    w = torch.where(keep, w, torch.zeros_like(w))
    r = torch.where(keep, r, torch.zeros_like(r))
    return r, w / w.sum()


def _mc_se(values: Tensor) -> float:
    """SE of the mean of `values`: iid for (n,), two-sample V-statistic for an (n, m) grid."""
    if values.dim() == 1:
        return mean_se(values).se
    n, m = values.shape
    if n < 2 or m < 2:
        return math.nan
    var = values.mean(1).var(unbiased=True) / n + values.mean(0).var(unbiased=True) / m
    return var.sqrt().item()


def _centred_rmse(r: Tensor, w: Tensor | None) -> Estimate:
    if w is not None:
        c = (w * r).sum()
        return Estimate(((w * (r - c) ** 2).sum()).sqrt().item(), 0.0)
    sq = (r - r.mean()) ** 2
    rmse = sq.mean().sqrt().item()
    # delta method: se(sqrt(v)) = se(v) / (2 sqrt(v)); the uncertainty of C is second order.
    se = _mc_se(sq) / (2 * rmse) if rmse > 0 else 0.0
    return Estimate(rmse, se)


def pmi_rmse_product(logits: Tensor, pmi: Tensor, weights: Tensor | None = None) -> Estimate:
    """sqrt(E_{p(x)p(y)}[(ℓ − PMI − C)²]), C = E_{p(x)p(y)}[ℓ − PMI] (T1).

    Exact: (nx, ny) tables with weights p(x)p(y). Monte Carlo: an (n, m) grid, no weights.
    """
    r, w = _prepare(logits, pmi, weights)
    if w is None and r.dim() != 2:
        raise ValueError("Monte Carlo pmi_rmse_product needs an (n, m) grid of x against y")
    return _centred_rmse(r, w)


def pmi_rmse_joint(logits: Tensor, pmi: Tensor, weights: Tensor | None = None) -> Estimate:
    """The same under p(x, y) with its own C. Exact: weights p(x, y); Monte Carlo: (n,) pairs."""
    r, w = _prepare(logits, pmi, weights)
    if w is None and r.dim() != 1:
        raise ValueError("Monte Carlo pmi_rmse_joint needs (n,) paired logits and PMI")
    return _centred_rmse(r, w)


def pmi_delta(logits: Tensor, pmi: Tensor, weights: Tensor | None = None) -> Estimate:
    """Half the range of ℓ − PMI over the support (cells with weight > 0): the Δ of T3.

    On samples this is the range over the samples seen, a lower bound of the true sup; no se.
    """
    r, w = _prepare(logits, pmi, weights)
    vals = r.flatten() if w is None else r[w > 0]
    return Estimate(0.5 * (vals.max() - vals.min()).item(), 0.0)


def pmi_corr(logits: Tensor, pmi: Tensor, weights: Tensor | None = None) -> Estimate:
    """Pearson correlation of ℓ and PMI under p(x)p(y) (weights) or over a grid (Monte Carlo).

    The Monte Carlo se is the normal-theory (1 − ρ²)/sqrt(n − 3) with n the number of rows
    (rows of a grid are the independent units); it is an approximation, labelled as such.
    """
    r, w = _prepare(logits, pmi, weights)
    lg = torch.as_tensor(logits).detach().to(torch.float64).cpu()
    pm = torch.as_tensor(pmi).detach().to(torch.float64).cpu()
    if w is None:
        w = torch.full_like(r, 1.0 / r.numel())
    else:
        lg = torch.where(w > 0, lg, torch.zeros_like(lg))
        pm = torch.where(w > 0, pm, torch.zeros_like(pm))
    ml, mp = (w * lg).sum(), (w * pm).sum()
    cov = (w * (lg - ml) * (pm - mp)).sum()
    var_l, var_p = (w * (lg - ml) ** 2).sum(), (w * (pm - mp) ** 2).sum()
    rho = (cov / (var_l * var_p).sqrt()).item() if var_l > 0 and var_p > 0 else math.nan
    if weights is not None:
        return Estimate(rho, 0.0)
    n = r.shape[0]
    return Estimate(rho, (1 - rho**2) / math.sqrt(n - 3) if n > 3 else math.nan)


def pmi_rmse_product_above(logits: Tensor, pmi: Tensor, quantile: float = 0.5) -> Estimate:
    """`pmi_rmse_product` restricted to the pairs of an (n, m) Monte Carlo grid whose exact PMI
    lies above its `quantile` (default: the more likely half of the pairs), with the same
    constant C as `pmi_rmse_product` (the mean of ℓ − PMI over the whole grid).

    InfoNCE weights a negative pair by its softmax probability, so it barely constrains ℓ on
    the least likely pairs; comparing this with `pmi_rmse_product` shows how much of the error
    lies there (T6). No se (the cut is data-dependent).
    """
    if not 0 <= quantile < 1:
        raise ValueError(f"quantile must lie in [0, 1), got {quantile}")
    r, _ = _prepare(logits, pmi, None)
    if r.dim() != 2:
        raise ValueError("pmi_rmse_product_above needs an (n, m) grid of x against y")
    pm = torch.as_tensor(pmi).detach().to(torch.float64).cpu()
    keep = pm > torch.quantile(pm.flatten(), quantile)
    return Estimate(((r - r.mean())[keep] ** 2).mean().sqrt().item(), 0.0)


def pmi_row_offset(
    logit_table: Tensor, pmi_table: Tensor, px: Tensor, py: Tensor
) -> tuple[Estimate, Estimate]:
    """(within-row rmse, row-offset sd) of r = ℓ − PMI on a discrete joint (T1a contrast).

    Writing r(x, y) = c(x) + e(x, y) with c(x) = E_{p(y)} r(x, ·):
    within = sqrt(E_{p(x)p(y)} e²) and offset = sd_{p(x)} c(x). One-sided InfoNCE minimisers
    (PMI + c(x)) have within = 0 and any offset; symmetric ones (PMI + C) have both 0.
    Cells with non-finite PMI are left out (weights renormalised per row).
    """
    px = torch.as_tensor(px).to(torch.float64).cpu()
    py = torch.as_tensor(py).to(torch.float64).cpu()
    r, w = _prepare(logit_table, pmi_table, px[:, None] * py[None, :])
    wrow = w / w.sum(1, keepdim=True).clamp_min(1e-300)  # (nx, ny) p(y) within each row
    c = (wrow * r).sum(1)  # (nx,)
    pxw = w.sum(1)  # (nx,) p(x) restricted to the finite cells
    within = (w * (r - c[:, None]) ** 2).sum().sqrt().item()
    offset = (pxw * (c - (pxw * c).sum()) ** 2).sum().sqrt().item()
    return Estimate(within, 0.0), Estimate(offset, 0.0)


def mutual_information_table(joint: Tensor) -> float:
    """I(X;Y) = Σ p log(p / (p(x)p(y))) of a (nx, ny) joint table, in nats."""
    p = torch.as_tensor(joint).to(torch.float64)
    p = p / p.sum()
    outer = p.sum(1, keepdim=True) * p.sum(0, keepdim=True)
    nz = p > 0
    return (p[nz] * (p[nz].log() - outer[nz].log())).sum().item()


def excess_loss(logit_table: Tensor, joint_table: Tensor, objective: str = "symmetric") -> Estimate:
    """L∞(ℓ) + I(X;Y) >= 0, exact for a discrete joint; 0 iff ℓ = PMI + C (T1a).

    With objective="one_sided" the one-sided population loss is used (0 iff ℓ = PMI + c(x)).
    """
    ell = torch.as_tensor(logit_table).detach().to(torch.float64).cpu()
    p = torch.as_tensor(joint_table).detach().to(torch.float64).cpu()
    p = p / p.sum()
    return Estimate(population_loss(ell, p, objective).item() + mutual_information_table(p), 0.0)


def mi_infonce(logit_matrices: Tensor) -> Estimate:
    """log N − one-sided InfoNCE on held-out batches (T1c): mean over batches, se across them.

    logit_matrices: (N, N) for one batch or (K, N, N) for K independent batches.
    """
    lm = torch.as_tensor(logit_matrices).detach().to(torch.float64).cpu()
    if lm.dim() == 2:
        lm = lm[None]
    return mean_se(torch.stack([infonce_mi_estimate(m) for m in lm]))  # over K batches


def mi_infonce_table(logit_table: Tensor, x: Tensor, y: Tensor) -> Estimate:
    """`mi_infonce` for discrete states without forming N×N matrices (`losses.table_infonce`).

    logit_table (nx, ny); x, y (K, N) int64: K held-out batches of N pairs. Equal to
    `mi_infonce(stack of logit_table[x_k][:, y_k])`.
    """
    lt = torch.as_tensor(logit_table).detach().to(torch.float64).cpu()
    x, y = torch.as_tensor(x).cpu(), torch.as_tensor(y).cpu()
    n = x.shape[1]
    return mean_se(
        torch.stack(
            [
                math.log(n) - table_infonce(lt, xb, yb, "one_sided")
                for xb, yb in zip(x, y, strict=True)
            ]
        )
    )


__all__ = [
    "excess_loss",
    "mi_infonce",
    "mi_infonce_table",
    "mutual_information_table",
    "pmi_corr",
    "pmi_delta",
    "pmi_rmse_product_above",
    "pmi_rmse_joint",
    "pmi_rmse_product",
    "pmi_row_offset",
]

"""Algorithm 1 of Nakada et al. (docs/theory.md T4): use unpaired data through detected pairs.

1. Fit the linear encoders on the n observed pairs.
2. Among N unpaired x and N unpaired x̃, take the pairs (i, j) that are mutual argmax of the learned
   similarity s_ij (j = argmax_j' s_ij' and i = argmax_i' s_i'j); keep the top `keep` of them by s.
3. Refit on the pairs plus the detected pairs with the positive term scaled by ν > 1.

Why r against log N matters: for a true pair s ≈ ‖z‖² ≈ r ± √(2r), while the best of N−1 wrong
partners reaches about √(2 r log N); detection needs r ≫ 2 log N.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from pmilab.errors import InputError
from pmilab.theory.clip_gd import ClipGDConfig, fit_clip_gd
from pmilab.theory.linear_mmcl import (
    balanced_factors,
    centred_cross_covariance,
    eckart_young_optimum,
    similarity,
)

__all__ = [
    "fit_encoders",
    "mutual_argmax_pairs",
    "detection_precision",
    "argmax_precision",
    "UnpairedResult",
    "fit_with_unpaired",
]


def fit_encoders(
    X: Tensor,
    Y: Tensor,
    r: int,
    cfg: ClipGDConfig | None,
    nu: float = 1.0,
    init: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Encoders (G1, G2) from pairs: GD on the CLIP loss when `cfg` is given, else the closed-form
    optimum of the regularised linear loss (ρ=1), which is the τ→∞ limit of CLIP (T4).

    GD starts from `init` or, by default, from the linear-loss optimum (a spectral start).
    """
    W, _ = eckart_young_optimum(centred_cross_covariance(X, Y, nu), r, rho=1.0)
    spectral = balanced_factors(W, r)
    if cfg is None:
        return spectral
    # ν scales the positive weights, hence S and the curvature of the loss, by up to ν: divide the
    # step by ν to keep GD as stable as at ν=1.
    cfg = replace(cfg, nu=nu, lr=cfg.lr / nu)
    fit = fit_clip_gd(X, Y, r, cfg, init=spectral if init is None else init)
    return fit.G1, fit.G2


def mutual_argmax_pairs(
    G1: Tensor, G2: Tensor, Xu: Tensor, Yu: Tensor, keep: int | None = None
) -> tuple[Tensor, Tensor]:
    """Indices (i, j) of mutual-argmax pairs of s = Xu G1ᵀ G2 Yuᵀ (N, M), best `keep` first."""
    s = similarity(G1, G2, Xu, Yu)  # (N, M)
    best_j = s.argmax(dim=1)  # (N,)
    best_i = s.argmax(dim=0)  # (M,)
    i = torch.nonzero(best_i[best_j] == torch.arange(s.shape[0]), as_tuple=True)[0]
    j = best_j[i]
    order = torch.argsort(s[i, j], descending=True)
    if keep is not None:
        order = order[:keep]
    return i[order], j[order]


def detection_precision(i: Tensor, j: Tensor, partner: Tensor) -> float:
    """Fraction of detected pairs (i, j) that are true pairs (Y[partner[i]] is X[i]'s partner)."""
    if i.numel() == 0:
        return float("nan")
    return float((partner[i] == j).double().mean())


def argmax_precision(G1: Tensor, G2: Tensor, Xu: Tensor, Yu: Tensor, partner: Tensor) -> float:
    """Fraction of the N unpaired x whose best x̃ (row argmax of s, no mutual filter) is its partner."""
    return float((similarity(G1, G2, Xu, Yu).argmax(dim=1) == partner).double().mean())


@dataclass(frozen=True)
class UnpairedResult:
    """Encoders before / after the refit, and the detection statistics of step 2.

    precision: share of true pairs among the kept detected pairs; precision_all_mutual: the same
    over all mutual-argmax pairs; precision_argmax: top-1 accuracy of the row argmax (no filter).
    """

    before: tuple[Tensor, Tensor]
    after: tuple[Tensor, Tensor]
    n_mutual: int
    n_kept: int
    precision: float
    precision_all_mutual: float
    precision_argmax: float


def fit_with_unpaired(
    X: Tensor,
    Y: Tensor,
    Xu: Tensor,
    Yu: Tensor,
    partner: Tensor,
    r: int,
    keep: int,
    nu_refit: float = 2.0,
    cfg: ClipGDConfig | None = None,
) -> UnpairedResult:
    """Algorithm 1 (T4): fit on pairs, detect mutual-argmax pairs, refit with ν = `nu_refit`."""
    if nu_refit <= 1.0:
        raise InputError(f"nu_refit={nu_refit} must be > 1 (Algorithm 1 refits with ν > 1).")
    if keep < 1:
        raise InputError(f"keep={keep} must be >= 1 detected pairs.")
    G1, G2 = fit_encoders(X, Y, r, cfg)
    i_all, j_all = mutual_argmax_pairs(G1, G2, Xu, Yu)
    i, j = i_all[:keep], j_all[:keep]
    X2 = torch.cat([X, Xu[i]])
    Y2 = torch.cat([Y, Yu[j]])
    after = fit_encoders(X2, Y2, r, cfg, nu=nu_refit, init=(G1, G2))
    return UnpairedResult(
        before=(G1, G2),
        after=after,
        n_mutual=int(i_all.numel()),
        n_kept=int(i.numel()),
        precision=detection_precision(i, j, partner),
        precision_all_mutual=detection_precision(i_all, j_all, partner),
        precision_argmax=argmax_precision(G1, G2, Xu, Yu, partner),
    )

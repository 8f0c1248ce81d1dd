"""Multivariate Student-t (X, Y) ~ t_nu(0, I): uncorrelated but dependent (docs/theory.md T6).

Cov(X, Y) = 0, yet I(X;Y) > 0 through the shared scale. Closed forms from the entropy of the
multivariate t with identity dispersion,
    H_d = log Γ(ν/2) - log Γ((ν+d)/2) + d/2 log(νπ) + (ν+d)/2 [ψ((ν+d)/2) - ψ(ν/2)],
    I(X;Y) = H_dx + H_dy - H_{dx+dy}.
"""

from __future__ import annotations

import math

import torch
from scipy.special import digamma, gammaln
from scipy.stats import gamma
from torch import Tensor

from pmilab.dists.base import (
    F64,
    Estimate,
    check_dims,
    check_n,
    check_pmi_matrix,
    check_xy,
    generator,
)
from pmilab.errors import InputError


def _log_t_density(v: Tensor, df: float) -> Tensor:
    """(...,) log density of t_df(0, I_d) at v (..., d)."""
    d = v.shape[-1]
    c = gammaln((df + d) / 2) - gammaln(df / 2) - d / 2 * math.log(df * math.pi)
    return c - (df + d) / 2 * torch.log1p(v.pow(2).sum(-1) / df)


def _entropy(d: int, df: float) -> float:
    return (
        gammaln(df / 2)
        - gammaln((df + d) / 2)
        + d / 2 * math.log(df * math.pi)
        + (df + d) / 2 * (digamma((df + d) / 2) - digamma(df / 2))
    )


class StudentT:
    discrete = False
    # What one (x, y) pair of `pmi_matrix` holds: r2, its log1p, the joint term and the sums.
    pair_bytes = 6 * F64

    def __init__(self, dim_x: int, dim_y: int, df: float) -> None:
        check_dims(dim_x=dim_x, dim_y=dim_y)
        if not (math.isfinite(df) and df > 0):
            raise InputError(f"degrees of freedom df must be a positive finite number, got {df!r}")
        self.dim_x, self.dim_y, self.df = int(dim_x), int(dim_y), float(df)
        # What one draw of `sample` holds: z and xy (d numbers each), u, w and scipy's copies.
        self.draw_bytes = F64 * (3 * (self.dim_x + self.dim_y) + 6)

    def __repr__(self) -> str:
        return f"StudentT(dim_x={self.dim_x}, dim_y={self.dim_y}, df={self.df:g})"

    def sample(self, n: int, seed: int | None = 0) -> tuple[Tensor, Tensor]:
        n = check_n(n, self.draw_bytes)
        g = generator(seed)
        z = torch.randn(n, self.dim_x + self.dim_y, generator=g, dtype=torch.float64)
        # chi2_df / df ~ Gamma(df/2, scale=2/df), drawn by inverse CDF from a seeded uniform
        u = torch.rand(n, generator=g, dtype=torch.float64).clamp(1e-300, 1 - 1e-16)
        w = torch.from_numpy(gamma.ppf(u.numpy(), a=self.df / 2, scale=2 / self.df))
        xy = z / w.sqrt()[:, None]
        return xy[:, : self.dim_x], xy[:, self.dim_x :]

    def pmi(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = check_xy(x, y, self.dim_x, self.dim_y, paired=True)
        return (
            _log_t_density(torch.cat([x, y], 1), self.df)
            - _log_t_density(x, self.df)
            - _log_t_density(y, self.df)
        )

    def pmi_matrix(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = check_xy(x, y, self.dim_x, self.dim_y, paired=False)
        check_pmi_matrix(x.shape[0], y.shape[0], self.pair_bytes)
        df, d = self.df, self.dim_x + self.dim_y
        c = gammaln((df + d) / 2) - gammaln(df / 2) - d / 2 * math.log(df * math.pi)
        r2 = x.pow(2).sum(1)[:, None] + y.pow(2).sum(1)[None, :]
        joint = c - (df + d) / 2 * torch.log1p(r2 / df)
        return joint - _log_t_density(x, df)[:, None] - _log_t_density(y, df)[None, :]

    def mutual_information(self) -> Estimate:
        return Estimate(
            _entropy(self.dim_x, self.df)
            + _entropy(self.dim_y, self.df)
            - _entropy(self.dim_x + self.dim_y, self.df)
        )

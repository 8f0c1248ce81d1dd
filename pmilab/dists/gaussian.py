"""Jointly Gaussian (X, Y) with closed-form PMI and MI (docs/theory.md T6).

Default covariance [[I, R], [R^T, I]] with the canonical correlations `rho` on R's diagonal:
    I(X;Y) = -1/2 sum_i log(1 - rho_i^2),  Var_p[PMI] = sum_i rho_i^2,
and PMI is a quadratic form. A full covariance may be given instead (e.g. `dense`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pmilab.dists.base import (
    F64,
    Estimate,
    as_float64,
    check_dims,
    check_n,
    check_pmi_matrix,
    check_xy,
    generator,
)
from pmilab.errors import InputError


class Gaussian:
    discrete = False
    # What one (x, y) pair of `pmi_matrix` holds: the (n, m) cross term, the broadcast sums.
    pair_bytes = 5 * F64

    def __init__(self, dim_x: int, dim_y: int, rho=None, cov=None) -> None:
        check_dims(dim_x=dim_x, dim_y=dim_y)
        self.dim_x, self.dim_y = int(dim_x), int(dim_y)
        d = self.dim_x + self.dim_y
        if (rho is None) == (cov is None):
            raise InputError("Gaussian needs exactly one of rho= (canonical correlations) or cov=")
        if cov is None:
            r = as_float64(rho, "rho").reshape(-1)
            if r.numel() > min(self.dim_x, self.dim_y):
                raise InputError(
                    f"rho has {r.numel()} values but at most min(dim_x, dim_y) = {min(self.dim_x, self.dim_y)} canonical correlations exist"
                )
            if (r.abs() >= 1).any():
                raise InputError(
                    f"every canonical correlation must satisfy |rho| < 1, got {r.tolist()}"
                )
            cov = torch.eye(d, dtype=torch.float64)
            idx = torch.arange(r.numel())
            cov[idx, self.dim_x + idx] = r
            cov[self.dim_x + idx, idx] = r
            self.rho = r
        else:
            cov = as_float64(cov, "cov")
            if cov.shape != (d, d):
                raise InputError(
                    f"cov must be ({d}, {d}) for dim_x={self.dim_x}, dim_y={self.dim_y}, got {tuple(cov.shape)}"
                )
            if not torch.allclose(cov, cov.T, atol=1e-12):
                raise InputError("cov must be symmetric")
            self.rho = None
        try:
            self._chol = torch.linalg.cholesky(cov)
        except RuntimeError:
            raise InputError(
                "cov must be positive definite (|rho| < 1 for canonical correlations)"
            ) from None
        self.cov = cov
        dx = self.dim_x
        prec = torch.linalg.inv(cov)
        sxx_inv = torch.linalg.inv(cov[:dx, :dx])
        syy_inv = torch.linalg.inv(cov[dx:, dx:])
        # PMI(x, y) = -1/2 [x^T Qx x + 2 x^T B y + y^T Qy y] + c
        self._qx = prec[:dx, :dx] - sxx_inv
        self._qy = prec[dx:, dx:] - syy_inv
        self._b = prec[:dx, dx:]
        logdet = torch.linalg.slogdet
        self._mi = 0.5 * float(logdet(cov[:dx, :dx])[1] + logdet(cov[dx:, dx:])[1] - logdet(cov)[1])
        self._c = self._mi  # -1/2 (logdet S - logdet Sxx - logdet Syy) = +I(X;Y)
        # What one draw of `sample` holds: the standard normals z and xy = z L^T.
        self.draw_bytes = 3 * F64 * d

    @classmethod
    def dense(cls, dim_x: int, dim_y: int, corr: float) -> Gaussian:
        """All off-diagonal correlations equal to `corr` (bmi's multinormal-dense task)."""
        d = dim_x + dim_y
        if not -1 / (d - 1) < corr < 1:
            raise InputError(
                f"a dense correlation must lie in (-1/{d - 1}, 1) for dimension {d}, got {corr}"
            )
        cov = torch.full((d, d), float(corr), dtype=torch.float64)
        cov.fill_diagonal_(1.0)
        return cls(dim_x, dim_y, cov=cov)

    def __repr__(self) -> str:
        return f"Gaussian(dim_x={self.dim_x}, dim_y={self.dim_y}, I={self._mi:.4f})"

    def sample(self, n: int, seed: int | None = 0) -> tuple[Tensor, Tensor]:
        n = check_n(n, self.draw_bytes)
        z = torch.randn(n, self.dim_x + self.dim_y, generator=generator(seed), dtype=torch.float64)
        xy = z @ self._chol.T
        return xy[:, : self.dim_x], xy[:, self.dim_x :]

    def pmi(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = check_xy(x, y, self.dim_x, self.dim_y, paired=True)
        quad = (
            ((x @ self._qx) * x).sum(1)
            + 2 * ((x @ self._b) * y).sum(1)
            + ((y @ self._qy) * y).sum(1)
        )
        return -0.5 * quad + self._c

    def pmi_matrix(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = check_xy(x, y, self.dim_x, self.dim_y, paired=False)
        check_pmi_matrix(x.shape[0], y.shape[0], self.pair_bytes)
        qx = ((x @ self._qx) * x).sum(1)  # (n,)
        qy = ((y @ self._qy) * y).sum(1)  # (m,)
        return -0.5 * (qx[:, None] + 2 * x @ self._b @ y.T + qy[None, :]) + self._c

    def mutual_information(self) -> Estimate:
        return Estimate(self._mi)

    def pmi_variance(self) -> float:
        """Var_p[PMI] = sum rho_i^2 for canonical correlations (T6)."""
        if self.rho is None:
            raise InputError(
                "pmi_variance has a closed form only for the canonical (rho=) parametrisation"
            )
        return float((self.rho**2).sum())

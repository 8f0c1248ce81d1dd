"""A joint with a continuous latent and exact PMI: two noisy views of a point on a ring
(docs/theory.md T10).

    theta ~ U[0, 2 pi),  X = r u(theta) + s eps,  Y = r u(theta) + s eps',  u(t) = (cos t, sin t),

eps, eps' ~ N(0, I_2) independent. X and Y are independent given the continuous latent theta.
With a = r / s^2, p(x | theta) = exp(-(|x|^2 + r^2) / 2 s^2) exp(a x.u(theta)) / (2 pi s^2), and
the integral over the circle, (1/2 pi) int exp(k1 cos(t - p1) + k2 cos(t - p2)) dt =
I0(|k1 e^{i p1} + k2 e^{i p2}|) (I0: the modified Bessel function of order 0), gives

    p(x)    = exp(-(|x|^2 + r^2) / 2 s^2) I0(a |x|) / (2 pi s^2),
    p(x, y) = exp(-(|x|^2 + |y|^2 + 2 r^2) / 2 s^2) I0(a |x + y|) / (2 pi s^2)^2,
    exp PMI(x, y) = I0(a |x + y|) / (I0(a |x|) I0(a |y|)).

The posteriors p(theta | x) are von Mises with mean direction x/|x| and concentration a |x|;
exp PMI = int p(theta|x) p(theta|y) / p(theta) dtheta is an L^2 inner product over the latent
circle (THEORY.md T2), not a quadratic form. Everything is computed in the log domain:
log I0(z) = log i0e(z) + z. The PMI's law depends on r / s alone (a rescaling of x and y is a
bijection). `mutual_information()` is exact up to quadrature (Gauss–Hermite over the two noise
vectors with theta fixed at 0, by rotational symmetry), independent of any sampling.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from pmilab.dists.base import (
    F64,
    Estimate,
    check_n,
    check_pmi_matrix,
    check_xy,
    generator,
)
from pmilab.errors import InputError

QUAD_NODES = 40  # Gauss–Hermite nodes per coordinate of `mutual_information` (40^4 points)


def log_i0(z: Tensor) -> Tensor:
    """log I0(z) for z >= 0, without overflow: log i0e(z) + z."""
    return torch.log(torch.special.i0e(z)) + z


class RingLatent:
    """Two noisy views X, Y in R^2 of a uniform point on a ring of radius r (noise sd s); see
    the module docstring."""

    discrete = False
    dim_x = dim_y = 2
    # What one (x, y) pair of `pmi_matrix` holds: the (n, m, 2) sums, their norms, i0e, logs.
    pair_bytes = 6 * F64
    # What one draw of `sample` holds: theta, the two points, the two noise vectors.
    draw_bytes = 9 * F64

    def __init__(self, r: float = 2.0, s: float = 1.0) -> None:
        for name, v in (("r", r), ("s", s)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise InputError(f"ring needs a finite number {name}, got {v!r}")
            if v <= 0:
                raise InputError(f"ring needs {name} > 0, got {v!r}")
        self.r, self.s = float(r), float(s)
        self.a = self.r / self.s**2
        self._mi: Estimate | None = None

    def __repr__(self) -> str:
        return f"RingLatent(r={self.r:g}, s={self.s:g})"

    def _log_i0_norm(self, v: Tensor) -> Tensor:
        return log_i0(self.a * torch.linalg.vector_norm(v, dim=-1))

    def pmi(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = check_xy(x, y, 2, 2, paired=True)
        return self._log_i0_norm(x + y) - self._log_i0_norm(x) - self._log_i0_norm(y)

    def pmi_matrix(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = check_xy(x, y, 2, 2, paired=False)
        check_pmi_matrix(x.shape[0], y.shape[0], self.pair_bytes)
        both = self._log_i0_norm(x[:, None, :] + y[None, :, :])
        return both - self._log_i0_norm(x)[:, None] - self._log_i0_norm(y)[None, :]

    def sample_with_latent(self, n: int, seed: int | None = 0) -> tuple[Tensor, Tensor, Tensor]:
        n = check_n(n, self.draw_bytes)
        g = generator(seed)
        theta = 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
        u = self.r * torch.stack([theta.cos(), theta.sin()], 1)
        x = u + self.s * torch.randn(n, 2, generator=g, dtype=torch.float64)
        y = u + self.s * torch.randn(n, 2, generator=g, dtype=torch.float64)
        return x, y, theta

    def sample(self, n: int, seed: int | None = 0) -> tuple[Tensor, Tensor]:
        x, y, _ = self.sample_with_latent(n, seed)
        return x, y

    def log_marginal(self, v: Tensor) -> Tensor:
        """(n,) log p(x) (X and Y have the same marginal)."""
        v = torch.as_tensor(v, dtype=torch.float64)
        sq = (v**2).sum(-1)
        return (
            -(sq + self.r**2) / (2 * self.s**2)
            + self._log_i0_norm(v)
            - math.log(2 * math.pi * self.s**2)
        )

    def mutual_information(self) -> Estimate:
        """I(X;Y) = E_p[PMI] by quadrature (no sampling; `mutual_information_quadrature`)."""
        if self._mi is None:
            self._mi = Estimate(self.mutual_information_quadrature())
        return self._mi

    def mutual_information_quadrature(self, nodes: int = QUAD_NODES) -> float:
        """E_p[PMI] with theta fixed at 0 (the law is rotation invariant): x = (r, 0) + s e,
        y = (r, 0) + s e', a tensor-product Gauss–Hermite rule of `nodes` points in each of the
        4 coordinates of (e, e'). The integrand is smooth (I0 is even and entire, so
        log I0(a |v|) is smooth in v); 32, 40 and 48 nodes agree to 1e-6 nats at r/s = 1.5 and 2
        (tests/dists/test_ring.py), far below the Monte Carlo error of any check."""
        t, w = np.polynomial.hermite_e.hermegauss(int(nodes))
        w = w / math.sqrt(2 * math.pi)
        ex, ey = np.meshgrid(t, t, indexing="ij")
        pts = torch.from_numpy(np.stack([ex.ravel(), ey.ravel()], 1))  # (nodes^2, 2)
        wts = torch.from_numpy(np.multiply.outer(w, w).ravel())
        v = pts * self.s + torch.tensor([self.r, 0.0], dtype=torch.float64)
        return float(wts @ self.pmi_matrix(v, v) @ wts)

    def product_std(self, nodes: int = 20) -> float:
        """sd of PMI under p(x)p(y) by quadrature: x at angle 0, y at angle phi (a uniform
        grid of 2 `nodes` angles: the integrand is smooth and periodic), each with its own noise
        (Gauss–Hermite, `nodes` points per coordinate). A check of the Monte Carlo sd the
        tasks compute, not used by them."""
        t, w = np.polynomial.hermite_e.hermegauss(int(nodes))
        w = w / math.sqrt(2 * math.pi)
        ex, ey = np.meshgrid(t, t, indexing="ij")
        e = torch.from_numpy(np.stack([ex.ravel(), ey.ravel()], 1))
        we = torch.from_numpy(np.multiply.outer(w, w).ravel())
        x = e * self.s + torch.tensor([self.r, 0.0], dtype=torch.float64)
        m1 = m2 = 0.0
        k = 2 * int(nodes)
        for phi in 2 * math.pi * np.arange(k) / k:
            y = e * self.s + self.r * torch.tensor([math.cos(phi), math.sin(phi)])
            g = self.pmi_matrix(x, y.to(torch.float64))
            m1 += float(we @ g @ we) / k
            m2 += float(we @ g**2 @ we) / k
        return math.sqrt(max(m2 - m1**2, 0.0))

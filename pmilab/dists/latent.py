"""Latent-class joints: X ⟂ Y | Z with Z taking K values (docs/theory.md T2, T3).

    p(x, y) = sum_z p(z) p(x|z) p(y|z),   exp PMI(x, y) = sum_z p(z|x) p(z|y) / p(z)

so exp(PMI) is an inner product of nonnegative K-vectors and has rank <= K, while PMI itself is
generically full rank. The latent z is the label of the downstream task (T3).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pmilab.dists.base import (
    F64,
    as_float64,
    check_dims,
    check_n,
    check_probability_vector,
    check_table,
    generator,
)
from pmilab.dists.discrete import Discrete
from pmilab.errors import InputError


class LatentClass(Discrete):
    """Discrete joint built from a prior (K,) and conditionals p(x|z) (K, nx), p(y|z) (K, ny)."""

    def __init__(self, prior, px_given_z, py_given_z) -> None:
        prior = as_float64(prior, "prior")
        pxz = as_float64(px_given_z, "px_given_z")
        pyz = as_float64(py_given_z, "py_given_z")
        if prior.ndim != 1 or pxz.ndim != 2 or pyz.ndim != 2:
            raise InputError(
                f"LatentClass needs prior (K,), px_given_z (K, nx), py_given_z (K, ny); got shapes "
                f"{tuple(prior.shape)}, {tuple(pxz.shape)}, {tuple(pyz.shape)}"
            )
        k = prior.shape[0]
        if pxz.shape[0] != k or pyz.shape[0] != k:
            raise InputError(
                f"px_given_z and py_given_z need one row per latent class (K={k}), got "
                f"{pxz.shape[0]} and {pyz.shape[0]} rows"
            )
        self.prior = check_probability_vector(prior, "prior")
        self.px_given_z = check_probability_vector(pxz, "px_given_z")
        self.py_given_z = check_probability_vector(pyz, "py_given_z")
        if (self.prior == 0).any():
            raise InputError("every latent class needs prior > 0; drop classes with zero prior")
        self.k = k
        check_table(pxz.shape[1], pyz.shape[1])  # before the einsum allocates it
        table = torch.einsum("z,zx,zy->xy", self.prior, self.px_given_z, self.py_given_z)
        super().__init__(table, drop_empty=False)

    def posterior_x(self) -> Tensor:
        """(nx, K) p(z | x)."""
        joint = self.prior[None, :] * self.px_given_z.T  # (nx, K)
        return joint / joint.sum(1, keepdim=True)

    def posterior_y(self) -> Tensor:
        """(ny, K) p(z | y)."""
        joint = self.prior[None, :] * self.py_given_z.T
        return joint / joint.sum(1, keepdim=True)

    def pmi_table(self) -> Tensor:
        """(nx, ny) PMI from the latent factorisation: log sum_z p(z|x) p(z|y) / p(z)."""
        return torch.log(
            torch.einsum("xz,yz,z->xy", self.posterior_x(), self.posterior_y(), 1 / self.prior)
        )

    def sample_with_latent(self, n: int, seed: int | None = 0) -> tuple[Tensor, Tensor, Tensor]:
        """n draws (x, y, z): z ~ prior, then x ~ p(x|z), y ~ p(y|z)."""
        # one draw holds z, u, x, y and a row of p(x|z) and of p(y|z) with their cumsums
        n = check_n(n, F64 * (2 * (self.nx + self.ny) + 6))
        g = generator(seed)
        z = torch.multinomial(self.prior, n, replacement=True, generator=g)
        # Inverse-CDF draws keep one uniform per coordinate, so results are reproducible by seed.
        x = _draw_rows(self.px_given_z[z], g)
        y = _draw_rows(self.py_given_z[z], g)
        return x, y, z


def _draw_rows(probs: Tensor, g: torch.Generator) -> Tensor:
    """One categorical draw per row of probs (n, S)."""
    u = torch.rand(probs.shape[0], 1, generator=g, dtype=torch.float64)
    cdf = probs.cumsum(1)
    return torch.searchsorted(cdf, u * cdf[:, -1:]).squeeze(1).clamp_max(probs.shape[1] - 1)


def random_latent_class(
    nx: int, ny: int, k: int, concentration: float = 0.5, seed: int = 0
) -> LatentClass:
    """A random K-class latent model: p(x|z), p(y|z) ~ Dirichlet(concentration) and prior ~
    Dirichlet(5) (keeps every class populated).

    Smaller concentration -> peakier conditionals -> larger MI and PMI range. The default 0.5
    gives I ~ 0.1-0.3 nats and PMI in about [-4, 1.5] for K=4: dependent enough to measure,
    without extreme cells.
    """
    check_dims(nx=nx, ny=ny, k=k)
    if not concentration > 0:
        raise InputError(f"concentration must be > 0, got {concentration!r}")
    rng = np.random.default_rng(seed)
    prior = rng.dirichlet(np.full(k, 5.0))
    # A floor keeps PMI finite and moderate even for small concentrations (no exact zeros).
    pxz = rng.dirichlet(np.full(nx, concentration), size=k) + 1e-6
    pyz = rng.dirichlet(np.full(ny, concentration), size=k) + 1e-6
    return LatentClass(prior, pxz / pxz.sum(1, keepdims=True), pyz / pyz.sum(1, keepdims=True))

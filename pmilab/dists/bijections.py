"""Bijections with exact inverses. PMI is invariant under x -> f(x), y -> g(y) (docs/theory.md T6):
the Jacobians of p(x,y), p(x) and p(y) cancel, so PMI_f(f(x), g(y)) = PMI(x, y).

Each bijection maps (n, d) float64 tensors to (n, d) (or int64 indices for `Permutation`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pmilab.dists.base import as_float64
from pmilab.errors import InputError


class Bijection:
    name = "bijection"

    def forward(self, v: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def inverse(self, v: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class Identity(Bijection):
    name = "identity"

    def forward(self, v: Tensor) -> Tensor:
        return v

    def inverse(self, v: Tensor) -> Tensor:
        return v


class Affine(Bijection):
    """v -> v A^T + b with A invertible."""

    name = "affine"

    def __init__(self, a, b=None) -> None:
        self.a = as_float64(a, "A")
        if self.a.ndim != 2 or self.a.shape[0] != self.a.shape[1]:
            raise InputError(
                f"an affine map needs a square matrix A, got shape {tuple(self.a.shape)}"
            )
        if torch.linalg.matrix_rank(self.a) < self.a.shape[0]:
            raise InputError("an affine map needs an invertible matrix A")
        d = self.a.shape[0]
        self.b = torch.zeros(d, dtype=torch.float64) if b is None else as_float64(b, "b").reshape(d)

    @classmethod
    def random(cls, dim: int, seed: int = 0) -> Affine:
        """A well-conditioned random affine map (orthogonal times positive scales, plus a shift)."""
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
        scales = torch.exp(torch.rand(dim, generator=g, dtype=torch.float64) * 2 - 1)
        return cls(q * scales[None, :], torch.randn(dim, generator=g, dtype=torch.float64))

    def forward(self, v: Tensor) -> Tensor:
        return v @ self.a.T + self.b

    def inverse(self, v: Tensor) -> Tensor:
        return torch.linalg.solve(self.a, (v - self.b).T).T


class Asinh(Bijection):
    """Elementwise asinh (compresses tails)."""

    name = "asinh"

    def forward(self, v: Tensor) -> Tensor:
        return torch.asinh(v)

    def inverse(self, v: Tensor) -> Tensor:
        return torch.sinh(v)


class HalfCube(Bijection):
    """Elementwise v -> sign(v) |v|^{3/2} (bmi's half-cube; stretches tails)."""

    name = "halfcube"

    def forward(self, v: Tensor) -> Tensor:
        return torch.sign(v) * v.abs().pow(1.5)

    def inverse(self, v: Tensor) -> Tensor:
        return torch.sign(v) * v.abs().pow(2.0 / 3.0)


class Spiral(Bijection):
    """Rotate the first two coordinates by an angle speed * ||v||^2 (a 2-D spiral).

    A rotation keeps ||v||, so the inverse reads the angle off the output's norm.
    """

    name = "spiral"

    def __init__(self, speed: float = 0.5) -> None:
        self.speed = float(speed)

    def _rotate(self, v: Tensor, sign: float) -> Tensor:
        if v.shape[-1] < 2:
            raise InputError("the spiral needs at least 2 dimensions")
        theta = sign * self.speed * v.pow(2).sum(-1)
        c, s = torch.cos(theta), torch.sin(theta)
        out = v.clone()
        out[..., 0] = c * v[..., 0] - s * v[..., 1]
        out[..., 1] = s * v[..., 0] + c * v[..., 1]
        return out

    def forward(self, v: Tensor) -> Tensor:
        return self._rotate(v, 1.0)

    def inverse(self, v: Tensor) -> Tensor:
        return self._rotate(v, -1.0)


class Permutation(Bijection):
    """Relabels discrete states: index i -> perm[i]."""

    name = "permutation"

    def __init__(self, perm) -> None:
        p = torch.as_tensor(perm, dtype=torch.long)
        if p.ndim != 1 or not torch.equal(p.sort().values, torch.arange(p.numel())):
            raise InputError("perm must be a permutation of 0..n-1")
        self.perm = p
        self.inv = torch.empty_like(p)
        self.inv[p] = torch.arange(p.numel())

    @classmethod
    def random(cls, n: int, seed: int = 0) -> Permutation:
        return cls(torch.randperm(n, generator=torch.Generator().manual_seed(seed)))

    def forward(self, v: Tensor) -> Tensor:
        return self.perm[torch.as_tensor(v, dtype=torch.long)]

    def inverse(self, v: Tensor) -> Tensor:
        return self.inv[torch.as_tensor(v, dtype=torch.long)]


ELEMENTWISE = {"identity": Identity, "asinh": Asinh, "halfcube": HalfCube, "spiral": Spiral}

"""The two-modality spiked covariance model with mismatched pairs (docs/theory.md T4).

    x = U1 z + ξ,   x̃ = U2 z̃ + ξ̃,   z ~ N(0, I_r),   ξ ~ N(0, σ² I_d1),   ξ̃ ~ N(0, σ² I_d2)

U_k (d_k, r) orthonormal. A correctly matched pair shares its latent (z̃ = z). A fraction p_n of
the n observed pairs is mismatched, in one of two variants:
  - "permute": the x̃ of the mismatched pairs are cyclically shifted among themselves, as in the
    paper (the sample holds the right x̃ somewhere, attached to the wrong x);
  - "redraw":  a mismatched x̃ is built from a fresh independent latent z̃ ~ N(0, I_r).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from pmilab.errors import InputError

__all__ = ["SpikedModel", "PairedSample", "UnpairedSample"]

VARIANTS = ("permute", "redraw")


def _orthonormal(d: int, r: int, gen: torch.Generator) -> Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, r, generator=gen, dtype=torch.float64))
    return q  # (d, r)


@dataclass(frozen=True)
class PairedSample:
    """n observed pairs: X (n, d1), Y (n, d2), matched (n,) bool (True where z̃_i = z_i)."""

    X: Tensor
    Y: Tensor
    matched: Tensor


@dataclass(frozen=True)
class UnpairedSample:
    """N x's and N x̃'s without their pairing: Y[partner[i]] is the true partner of X[i]."""

    X: Tensor
    Y: Tensor
    partner: Tensor


@dataclass(frozen=True)
class SpikedModel:
    """Spiked model with dims (d1, d2), signal rank r, noise sd σ; `basis_seed` fixes U1, U2."""

    d1: int = 40
    d2: int = 39
    r: int = 10
    noise_sd: float = 0.3
    basis_seed: int = 0
    U1: Tensor = field(init=False, repr=False, compare=False)
    U2: Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (1 <= self.r <= min(self.d1, self.d2)):
            raise InputError(
                f"signal rank r={self.r} must lie in [1, min(d1, d2)={min(self.d1, self.d2)}]; "
                "lower r or raise the dimensions."
            )
        if self.noise_sd < 0:
            raise InputError(f"noise_sd={self.noise_sd} must be >= 0.")
        gen = torch.Generator().manual_seed(self.basis_seed)
        object.__setattr__(self, "U1", _orthonormal(self.d1, self.r, gen))
        object.__setattr__(self, "U2", _orthonormal(self.d2, self.r, gen))

    def _views(self, z: Tensor, zt: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        n, m = z.shape[0], zt.shape[0]
        xi = self.noise_sd * torch.randn(n, self.d1, generator=gen, dtype=torch.float64)
        xit = self.noise_sd * torch.randn(m, self.d2, generator=gen, dtype=torch.float64)
        return z @ self.U1.T + xi, zt @ self.U2.T + xit

    def sample_pairs(
        self, n: int, p_mismatch: float = 0.0, seed: int = 0, variant: str = "permute"
    ) -> PairedSample:
        """n pairs of which round(p_mismatch·n) are mismatched (see the module docstring).

        A single mismatched pair cannot be permuted among itself, so "permute" with exactly one
        mismatched pair redraws its latent instead.
        """
        if n < 2:
            raise InputError(f"n={n} pairs: need at least 2.")
        if not 0.0 <= p_mismatch <= 1.0:
            raise InputError(f"p_mismatch={p_mismatch} must lie in [0, 1].")
        if variant not in VARIANTS:
            raise InputError(f"variant={variant!r} unknown; use one of {VARIANTS}.")
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.r, generator=gen, dtype=torch.float64)  # (n, r)
        k = int(round(p_mismatch * n))
        bad = torch.randperm(n, generator=gen)[:k]  # indices of the mismatched pairs
        zt = z.clone()
        if variant == "permute" and k >= 2:
            # a single cycle over the chosen indices: a derangement, so all k pairs are wrong
            zt[bad] = z[bad.roll(1)]
        elif variant == "redraw" or k == 1:
            zt[bad] = torch.randn(k, self.r, generator=gen, dtype=torch.float64)
        matched = torch.ones(n, dtype=torch.bool)
        matched[bad] = False
        X, Y = self._views(z, zt, gen)
        return PairedSample(X, Y, matched)

    def sample_unpaired(self, N: int, seed: int = 0) -> UnpairedSample:
        """N latent pairs whose x̃'s are shuffled; the true pairing is kept only for scoring."""
        if N < 2:
            raise InputError(f"N={N} unpaired samples: need at least 2.")
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(N, self.r, generator=gen, dtype=torch.float64)
        X, Y_true = self._views(z, z, gen)
        perm = torch.randperm(N, generator=gen)  # Y[j] = Y_true[perm[j]]
        partner = torch.empty(N, dtype=torch.long)
        partner[perm] = torch.arange(N)  # X[i] pairs with Y[partner[i]]
        return UnpairedSample(X, Y_true[perm], partner)

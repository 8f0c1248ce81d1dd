"""A mixture-of-linear similarity: ℓ(x, y) = log Σ_k exp⟨f_k(x), g_k(y)⟩.

Each encoder emits one vector of size K·D, read as K vectors of size D (`points` = K and
`dim` = D of the run). exp ℓ is a sum of K exponentiated bilinear forms, so ℓ is no longer
limited to rank K·D, as a linear head of that size is.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pmilab.interfaces import HeadInputs
from pmilab.similarity import SimilarityHead


class MixtureHead(SimilarityHead):
    """K components of dimension D; built from a run's `dim` (D) and `points` (K)."""

    def __init__(self, dim: int, points: int) -> None:
        super().__init__()
        self.components, self.dim = int(points), int(dim)

    @classmethod
    def head_inputs(cls, dim: int, points: int) -> HeadInputs:
        return HeadInputs.vector(points * dim)

    def _split(self, z: Tensor) -> Tensor:
        return z.unflatten(-1, (self.components, self.dim))  # (B, K·D) -> (B, K, D)

    def logit_matrix(self, zx: Tensor, zy: Tensor) -> Tensor:
        s = torch.einsum("bkd,ckd->bck", self._split(zx), self._split(zy))  # (B, C, K)
        return torch.logsumexp(s, dim=-1)  # (B, C)

    def paired_logits(self, zx: Tensor, zy: Tensor) -> Tensor:
        s = (self._split(zx) * self._split(zy)).sum(-1)  # (B, K)
        return torch.logsumexp(s, dim=-1)  # (B,)

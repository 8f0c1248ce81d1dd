"""A free logit per (x, y) cell: the unconstrained reference of docs/theory.md T1.

With no capacity limit the population loss is minimised exactly at ℓ = PMI + C (T1a), so a
tabular head measures what the optimiser and the sample size alone achieve.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pmilab.errors import InputError
from pmilab.similarity.base import SimilarityHead


class Tabular(SimilarityHead):
    """ℓ(x, y) = table[x, y] for integer states x in [0, nx), y in [0, ny).

    `logit_matrix(x, y)`: x (B,), y (C,) int64 -> (B, C); `paired_logits(x, y)`: (B,) each.
    The table starts at zero (every pair equally similar).
    """

    def __init__(self, nx: int, ny: int) -> None:
        super().__init__()
        if int(nx) < 1 or int(ny) < 1:
            raise InputError(f"a tabular head needs nx, ny >= 1, got {nx} x {ny}")
        self.nx, self.ny = int(nx), int(ny)
        self.table = nn.Parameter(torch.zeros(self.nx, self.ny))

    def _check(self, x: Tensor, y: Tensor, paired: bool) -> None:
        if x.dim() != 1 or y.dim() != 1:
            raise ValueError(
                f"tabular logits take 1-D index tensors, got {tuple(x.shape)}, {tuple(y.shape)}"
            )
        if x.dtype.is_floating_point or y.dtype.is_floating_point:
            raise ValueError("tabular logits take integer state indices, not floats")
        if paired and x.shape[0] != y.shape[0]:
            raise ValueError(f"paired logits need equal lengths, got {x.shape[0]} and {y.shape[0]}")

    def logit_matrix(self, x: Tensor, y: Tensor) -> Tensor:
        self._check(x, y, paired=False)
        return self.table[x][:, y]  # (B, C)

    def paired_logits(self, x: Tensor, y: Tensor) -> Tensor:
        self._check(x, y, paired=True)
        return self.table[x, y]  # (B,)

    def no_decay_parameters(self) -> list[nn.Parameter]:
        return [self.table]

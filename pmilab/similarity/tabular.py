"""A free logit per (x, y) cell: the unconstrained reference of docs/theory.md T1.

With no capacity limit the population loss is minimised exactly at ℓ = PMI + C (T1a), so a
tabular head measures what the optimiser and the sample size alone achieve.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pmilab.errors import InputError
from pmilab.interfaces import HeadInputs
from pmilab.similarity.base import SimilarityHead, under_vmap


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
        """x, y: 1-D integer tensors of states in [0, nx) and [0, ny) (no negative wrap-around)."""
        for name, v, size in (("x", x, self.nx), ("y", y, self.ny)):
            if not torch.is_tensor(v):
                raise InputError(
                    f"{name} must be a 1-D torch.Tensor of state indices, got {type(v).__name__}"
                )
            if v.dim() != 1:
                raise InputError(
                    f"{name} must be a 1-D tensor of state indices, got shape {tuple(v.shape)}"
                )
            if v.is_floating_point() or v.is_complex() or v.dtype == torch.bool:
                raise InputError(
                    f"{name} must hold integer state indices, got dtype {str(v.dtype).removeprefix('torch.')}; use .long()"
                )
            if v.numel() and not under_vmap(v) and (int(v.min()) < 0 or int(v.max()) >= size):
                raise InputError(
                    f"{name} indices must lie in [0, {size - 1}] (the head has {size} states), "
                    f"got range [{int(v.min())}, {int(v.max())}]"
                )
        if paired and x.shape[0] != y.shape[0]:
            raise InputError(f"paired logits need equal lengths, got {x.shape[0]} and {y.shape[0]}")

    def logit_matrix(self, x: Tensor, y: Tensor) -> Tensor:
        self._check(x, y, paired=False)
        return self.table[x][:, y]  # (B, C)

    def paired_logits(self, x: Tensor, y: Tensor) -> Tensor:
        self._check(x, y, paired=True)
        return self.table[x, y]  # (B,)

    def no_decay_parameters(self) -> list[nn.Parameter]:
        return [self.table]

    @classmethod
    def head_inputs(cls, dim: int, points: int) -> HeadInputs:
        """The raw state indices (a discrete joint only); dim and points do not apply."""
        return HeadInputs.indices()

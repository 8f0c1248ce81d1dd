"""Heads and joints that break pmilab's contract: each must be refused in one line."""

from __future__ import annotations

from torch import Tensor, nn


class NoLogits(nn.Module):
    """A head that forgot `logit_matrix` (everything else is there)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    @classmethod
    def head_inputs(cls, dim: int, points: int):
        from pmilab.interfaces import HeadInputs

        return HeadInputs.vector(dim)

    def paired_logits(self, zx: Tensor, zy: Tensor) -> Tensor:
        return (zx * zy).sum(-1)

    def no_decay_parameters(self) -> list:
        return []

    def clamp_(self) -> None:
        pass

    def redraw(self, generator=None) -> None:
        pass

    def batch_refusal(self) -> None:
        return None


class NoDims:
    """A continuous joint without dim_x / dim_y."""

    discrete = False

    def sample(self, n, seed=0):
        raise NotImplementedError

    def pmi(self, x, y):
        raise NotImplementedError

    def pmi_matrix(self, x, y):
        raise NotImplementedError

    def mutual_information(self):
        return 0.0

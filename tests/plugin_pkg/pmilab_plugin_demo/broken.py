"""Heads and joints that break pmilab's contract: each is refused in one line, or, for a head
whose two forms disagree (`Inconsistent`), FAILs the report card's contract row HC0."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

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


class WrongShape(NoLogits):
    """A head whose logit_matrix returns one logit per x, not a (B, C) matrix."""

    def logit_matrix(self, zx: Tensor, zy: Tensor) -> Tensor:
        return zx.sum(-1)


class Inconsistent(NoLogits):
    """A head whose two forms disagree: paired_logits is the diagonal of logit_matrix plus
    `offset` (it trains on one score and is evaluated on another)."""

    offset = 1.0

    def logit_matrix(self, zx: Tensor, zy: Tensor) -> Tensor:
        return zx @ zy.T

    def paired_logits(self, zx: Tensor, zy: Tensor) -> Tensor:
        return (zx * zy).sum(-1) + self.offset


# ---- claims that break the contract (each refused in one line by `pmilab verify --claims`)


def _claim_parts(**changes) -> SimpleNamespace:
    from pmilab_plugin_demo import claim

    parts = dict(CLAIM="BRK", TITLE="a broken claim", config=claim.config, sweeps=claim.sweeps,
                 evaluate=claim.evaluate)  # fmt: skip
    return SimpleNamespace(**{**parts, **changes})


def _lambda_sweeps(cfg):
    from pmilab_plugin_demo import claim

    return [replace(sw, task=lambda p: {}) for sw in claim.sweeps(cfg)]


reserved_id = _claim_parts(CLAIM="T9")  # IDs T<digit>... are pmilab's
same_id = _claim_parts(CLAIM="MIX")  # the ID of pmilab_plugin_demo.claim
no_evaluate = SimpleNamespace(CLAIM="NOE", TITLE="no evaluate", config=None, sweeps=None)
lambda_task = _claim_parts(CLAIM="LAM", sweeps=_lambda_sweeps)  # a worker cannot import it

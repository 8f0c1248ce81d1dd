"""AdamW with the project's one weight-decay rule.

The rule (docs/architecture.md), as in nanoGPT's `configure_optimizers` and open_clip:
- **decayed:** every parameter with two or more dimensions (weight matrices, embedding tables,
  convolution kernels, point projections);
- **not decayed:** every parameter with fewer than two dimensions (biases, norm gains, scalars),
  and every parameter the similarity head lists in `no_decay_parameters()` (its logit scale,
  bias and bandwidth, and the free logit table of the tabular head): shrinking a temperature or
  a bandwidth towards 0 is not regularisation, it changes the logit's range.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def decay_names(model: nn.Module, no_decay: Iterable[nn.Parameter]) -> set[str]:
    """Names of the parameters of `model` that are decayed under the rule above (the one place
    the rule is decided; the replicate trainer applies it to one replicate's parameters)."""
    skip = {id(p) for p in no_decay}
    return {n for n, p in model.named_parameters() if p.ndim >= 2 and id(p) not in skip}


def decay_groups(
    model: nn.Module, no_decay: Iterable[nn.Parameter], weight_decay: float
) -> list[dict]:
    """Parameter groups of `model` under the rule above (parameters in model order)."""
    names = decay_names(model, no_decay)
    decay, rest = [], []
    for name, p in model.named_parameters():
        (decay if name in names else rest).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if rest:
        groups.append({"params": rest, "weight_decay": 0.0})
    return groups


def adamw(
    model: nn.Module,
    no_decay: Iterable[nn.Parameter],
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW over `model` with the grouping rule of this module."""
    return adamw_groups(decay_groups(model, no_decay, weight_decay), lr, betas, eps)


def adamw_groups(
    groups: list[dict], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
) -> torch.optim.AdamW:
    """AdamW over parameter groups already split by the rule (`decay_names`), e.g. the stacked
    parameters of `training.replicas`."""
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=True)

"""Exact gradient accumulation (`--accum-freq k`), open_clip's feature-caching scheme.

k micro-batches of B pairs give the loss and the gradients of one batch of k·B pairs: every
micro-batch sees all k·B negatives (and, under DDP, all world·k·B).

1. Without grad, encode every micro-batch and cache its outputs (points, weights or z).
2. For j = 1..k: encode micro-batch j again, with grad; put its fresh outputs in place of its
   cached ones; compute the loss of all k micro-batches together (`model.forward(cached=...)`,
   the local slab of `runtime.distributed.local_infonce`, built on `losses.infonce_two_way`);
   backward. Only micro-batch j's outputs carry grad, so the k backward passes add up to the
   gradient of the k·B loss for every tower parameter.
3. The similarity head's own parameters (logit scale, bandwidth) enter every one of the k
   losses directly, with the same value each time (the cached outputs equal the fresh ones:
   no dropout, same inputs), so they received k times their gradient: it is divided by k.
   (open_clip keeps the k-fold logit-scale gradient; here every gradient is exact.)

Under DDP, passes 1..k-1 run in `no_sync()`; the last one averages the summed gradients.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn


def accumulate(
    model: nn.Module,
    ddp: nn.Module,
    micro: list[tuple[Tensor, Tensor, Tensor]],
    autocast: bool | torch.dtype | None = False,
    distributed: bool = False,
    scale: float = 1.0,
) -> Tensor:
    """Forward and backward of one optimizer step over micro-batches (images, ids, mask).

    `model` is the bare ImageTextModel, `ddp` the module to call (the DDP wrapper, or `model`).
    `autocast`: the towers' autocast (`runtime.precision.encoder_autocast`). `scale`: the
    gradients are of `scale` times the loss (fp16's loss scaling; the caller unscales).
    Returns the (detached, unscaled) loss of the whole set, this rank's local slab under DDP.
    """
    k = len(micro)
    if k == 1:
        loss = ddp(*micro[0], autocast=autocast)
        _backward(loss, scale)
        return loss.detach()
    with torch.no_grad():
        cached = [model.encode_pair(*m, autocast=autocast) for m in micro]
    first = None
    for j, m in enumerate(micro):
        sync = not distributed or j == k - 1
        with contextlib.nullcontext() if sync else ddp.no_sync():
            loss = ddp(*m, autocast=autocast, cached=cached, slot=j)
            _backward(loss, scale)
        first = loss.detach() if first is None else first
    for p in model.similarity.parameters():
        if p.grad is not None:
            p.grad /= k
    return first


def _backward(loss: Tensor, scale: float) -> None:
    (loss if scale == 1.0 else loss * scale).backward()

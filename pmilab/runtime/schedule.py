"""The learning-rate schedule of every trainer: linear warmup, then cosine decay to 0."""

from __future__ import annotations

import math


def warmup_cosine(step: int, lr: float, warmup: int, steps: int) -> float:
    """The learning rate of 0-based `step` in a run of `steps` optimizer steps.

    Steps 0..warmup-1 rise linearly to `lr` (step 0 gets lr/warmup, never 0); the remaining
    steps follow half a cosine from `lr` down to 0 at step `steps`, and stay at 0 after it.
    Callers make sure that warmup < steps (a longer warmup would never reach the peak).
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    span = max(steps - warmup, 1)
    return 0.5 * lr * (1 + math.cos(math.pi * min(step - warmup, span) / span))

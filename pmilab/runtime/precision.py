"""Precision: which dtype the parameters hold, and where bf16 autocast runs.

The rule (docs/architecture.md): the encoders (towers, MLPs) may run under bf16 autocast; the
similarity head, its logsumexp and the loss always run in the parameters' dtype (fp32 or fp64),
because bf16 logits lose the differences InfoNCE is made of.

- "auto": bf16 autocast for the encoders on CUDA, plain fp32 elsewhere;
- "fp32": no autocast; "bf16": autocast for the encoders (also on CPU, for tests);
- "fp64": float64 parameters and no autocast (exactness tests).
"""

from __future__ import annotations

import contextlib

import torch

from pmilab.errors import InputError

PRECISIONS = ("auto", "fp32", "bf16", "fp64")


def resolve_precision(name: str, device: torch.device) -> str:
    """'auto' -> 'bf16' on CUDA, else 'fp32'; other names are checked and returned."""
    if name not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return name


def param_dtype(precision: str) -> torch.dtype:
    """The dtype of the parameters (and of the head and loss) under `precision`."""
    return torch.float64 if precision == "fp64" else torch.float32


def encoder_autocast(device_type: str, enabled: bool):
    """The context the encoders run in: bf16 autocast when enabled, else nothing."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)

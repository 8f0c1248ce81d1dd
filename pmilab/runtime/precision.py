"""Precision: which dtype the parameters hold, and where bf16 autocast runs.

The rule (docs/architecture.md): the encoders (towers, MLPs) may run under bf16 autocast; the
similarity head, its logsumexp and the loss always run in the parameters' dtype (fp32 or fp64),
because bf16 logits lose the differences InfoNCE is made of.

- "auto": bf16 autocast for the encoders on CUDA, plain fp32 elsewhere;
- "fp32": no autocast; "bf16": autocast for the encoders (also on CPU, for tests);
- "amp": open_clip's `--precision amp`: fp16 autocast for the encoders with dynamic loss
  scaling (`torch.amp.GradScaler`: the loss is multiplied by the scale before backward, the
  gradients are divided by it before clipping, and a step whose gradients overflowed is
  skipped and the scale halved); fp16 needs it, bf16 (with fp32's exponent range) does not;
- "fp64": float64 parameters and no autocast (exactness tests).
"""

from __future__ import annotations

import contextlib

import torch

from pmilab.errors import InputError

PRECISIONS = ("auto", "fp32", "bf16", "amp", "fp64")
AUTOCAST = {"bf16": torch.bfloat16, "amp": torch.float16}  # the encoders' autocast dtype


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


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The encoders' autocast dtype under a resolved `precision` (None: no autocast)."""
    return AUTOCAST.get(precision)


def needs_scaler(precision: str) -> bool:
    """fp16 autocast needs dynamic loss scaling (its gradients underflow without it)."""
    return AUTOCAST.get(precision) == torch.float16


def encoder_autocast(device_type: str, enabled: bool | torch.dtype | None):
    """The context the encoders run in: autocast to `enabled` when it is a dtype, bf16 when it
    is True, nothing when it is False or None."""
    if enabled is None or enabled is False:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if enabled is True else enabled
    return torch.autocast(device_type=device_type, dtype=dtype)

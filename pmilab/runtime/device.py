"""Device resolution: "auto" picks CUDA when present, else CPU (docs/architecture.md)."""

from __future__ import annotations

import torch

from pmilab.errors import InputError


def resolve_device(device: str | torch.device) -> torch.device:
    """ "auto" -> CUDA when present, else CPU; anything else must name an available device."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for but CUDA is not available; use cpu or auto")
    return dev

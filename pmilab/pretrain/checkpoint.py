"""Checkpoints: atomic, the last k kept, and safe to read (a bad file is one line, never a traceback).

A checkpoint holds the model, the optimizer, the step reached, the configs, the tokenizer, the
skipped samples and the RNG states (torch, numpy, python; CUDA when present). The data order is
a function of (seed, step) (data.batch_indices), so the step is the data position.

- Atomic: written to a temporary name and renamed into place (`pmilab.atomic`), so a SIGKILL at
  any moment leaves the previous checkpoint or the new one, never a torn file. Nothing is ever
  rewritten in place: an earlier checkpoint stays byte-identical.
- `OUT/ckpt.pt` is always the latest. With `keep > 1` the k latest are also kept as
  `OUT/checkpoints/ckpt-STEP.pt` (hard links to the same bytes where the file system allows).
- Read with `torch.load(weights_only=True)`: only tensors and plain containers, so a foreign
  pickle cannot run code. A file that is truncated, random bytes, or not a pmilab checkpoint is
  an `InputError` naming the file.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from pmilab import atomic
from pmilab.errors import InputError

CKPT = "ckpt.pt"
KEPT = "checkpoints"
FORMAT = "pmilab-pretrain/2"
REQUIRED = ("format", "model", "optimizer", "step", "model_config", "config", "rng")


def rng_state() -> dict:
    """RNG states in plain types (weights_only-loadable)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), cached],
        "python": list(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out: Path, payload: dict, keep: int = 1) -> Path:
    """Write OUT/ckpt.pt atomically; with keep > 1 also keep the k latest numbered copies."""
    out = Path(out)
    path = atomic.save_torch(out / CKPT, {"format": FORMAT, **payload})
    kept = out / KEPT
    if keep > 1:
        kept.mkdir(exist_ok=True)
        name = kept / f"ckpt-{int(payload['step']):08d}.pt"
        tmp = kept / f".{name.name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)
        except OSError:  # no hard links here: a copy
            shutil.copyfile(path, tmp)
        os.replace(tmp, name)
    numbered = sorted(kept.glob("ckpt-*.pt")) if kept.is_dir() else []  # by step (8 digits)
    for old in numbered[: max(0, len(numbered) - (keep if keep > 1 else 0))]:
        old.unlink()
    return path


def load_checkpoint(directory: Path) -> dict:
    """The checkpoint in `directory` (a run's --out); InputError if it is missing or unreadable."""
    path = Path(directory) / CKPT
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint {CKPT} in {directory}; pass the --out directory of a `pmilab pretrain` run"
        )
    return read_checkpoint(path)


def read_checkpoint(path: Path) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types on bad bytes; each means the same
        raise InputError(
            f"{path} is not a readable checkpoint ({type(e).__name__}: truncated, corrupt or not "
            "written by `pmilab pretrain`); delete it to start afresh or choose another --out"
        ) from None
    missing = [k for k in REQUIRED if not isinstance(ckpt, dict) or k not in ckpt]
    if missing or ckpt.get("format") != FORMAT:
        raise InputError(
            f"{path} is not a {FORMAT} checkpoint (missing {', '.join(missing) or 'format'}); "
            "it was written by another program or an older pmilab"
        )
    return ckpt

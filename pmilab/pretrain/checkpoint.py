"""Atomic checkpoints with everything a bit-identical resume needs.

A checkpoint holds the model, the optimizer, the step reached, the configs, the skip counters
and the RNG states (torch, numpy, python; CUDA when present). The data order is a function of
(seed, step) (data.batch_indices), so the step is the data position. Files are written to a
temporary name and renamed into place (os.replace is atomic on POSIX): a SIGKILL at any moment
leaves either the previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from pmilab import atomic
from pmilab.errors import InputError

CKPT = "ckpt.pt"


def rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out: Path, payload: dict) -> None:
    atomic.save_torch(Path(out) / CKPT, payload)


def load_checkpoint(directory: Path) -> dict:
    """The checkpoint in `directory` (a run's --out); one clear error if there is none."""
    path = Path(directory) / CKPT
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint {CKPT} in {directory}; pass the --out directory of a `pmilab pretrain` run"
        )
    return torch.load(path, map_location="cpu", weights_only=False)


def check_compatible(ckpt: dict, model_cfg: dict, where: Path) -> None:
    """Refuse to resume a checkpoint whose architecture differs from the requested one."""
    old = ckpt["model_config"]
    if old["similarity"] != model_cfg["similarity"]:
        raise InputError(
            f"the checkpoint in {where} was trained with --similarity {old['similarity']}, not "
            f"{model_cfg['similarity']}; use --similarity {old['similarity']} or another --out"
        )
    diff = {k: (old[k], v) for k, v in model_cfg.items() if k in old and old[k] != v}
    if diff:
        k, (a, b) = next(iter(diff.items()))
        raise InputError(
            f"the checkpoint in {where} has {k}={a!r} but this run asks for {k}={b!r}; "
            "resume with the original settings or use another --out"
        )

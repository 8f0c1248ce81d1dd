"""`Run`: a trained model with its config, metrics and loss history; saves a run directory."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pmilab import atomic, outputs
from pmilab.errors import InputError
from pmilab.training.config import FitConfig
from pmilab.training.model import PairModel

EVAL_CHUNK = 128  # rows of a logit matrix computed at once in evaluation (bounds memory)


def check_out_dir(out: str | Path, overwrite: bool = False, create: bool = False) -> Path:
    """`out` as a Path, checked before any training: a folder path that is not a file, not
    below a file, and holds no earlier output of any pmilab command unless `overwrite` (CLI:
    --overwrite; `pmilab.outputs` owns that rule). With `create`, the folder is made now, so an
    unwritable place fails before training too."""
    if not str(out).strip():
        raise InputError("the output folder must be a path, got an empty string")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"the output folder {out} is an existing file; give a folder path")
    base = next((p for p in out.parents if p.exists()), Path("."))
    if not base.is_dir():
        raise InputError(f"cannot create the output folder {out}: {base} is a file")
    outputs.check_out(out, overwrite, flag="--overwrite (overwrite=True)")
    if create:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"cannot create the output folder {out}: {e.strerror}") from None
    return out


@dataclass
class Run:
    """The result of `fit`.

    config:     the resolved FitConfig (lr filled in).
    model:      the trained PairModel (encoders + head), in eval mode.
    dist:       the distribution it was trained on.
    metrics:    docs/theory.md names (`pmi_rmse_product`, ... and `<name>_se` on continuous joints).
    history:    training loss per step.
    stopped_at: the step at which training stopped on a non-finite loss (None if it finished).
    message:    why it stopped early, or why its logits are degenerate ("" if neither).
    """

    config: FitConfig
    model: PairModel
    dist: object
    metrics: dict = field(default_factory=dict)
    history: list[float] = field(default_factory=list)
    stopped_at: int | None = None
    message: str = ""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _input(self, v, name: str) -> Tensor:
        """x or y as a tensor on the model's device; state indices of a discrete joint are
        checked here (1-D integers in range: no -1 wrap-around, no raw IndexError)."""
        v = torch.as_tensor(v)
        if not self.dist.discrete:
            return v.to(self.device, next(self.model.parameters()).dtype)
        size = self.dist.nx if name == "x" else self.dist.ny
        if v.dim() != 1 or v.is_floating_point() or v.is_complex() or v.dtype == torch.bool:
            raise InputError(
                f"{name} must be a 1-D sequence of integer state indices, got shape "
                f"{tuple(v.shape)} and dtype {str(v.dtype).removeprefix('torch.')}"
            )
        if v.numel() and (int(v.min()) < 0 or int(v.max()) >= size):
            raise InputError(
                f"{name} indices must lie in [0, {size - 1}] (the joint has {size} states), "
                f"got range [{int(v.min())}, {int(v.max())}]"
            )
        return v.to(self.device)

    @torch.no_grad()
    def logits(self, x, y) -> Tensor:
        """(n,) float64 logits ℓ(x_i, y_i) of paired inputs, on CPU."""
        self.model.eval()
        x, y = self._input(x, "x"), self._input(y, "y")
        out = [
            self.model.paired_logits(x[i : i + EVAL_CHUNK], y[i : i + EVAL_CHUNK])
            for i in range(0, len(x), EVAL_CHUNK)
        ]
        return torch.cat(out).to(torch.float64).cpu()

    @torch.no_grad()
    def logit_matrix(self, x, y) -> Tensor:
        """(n, m) float64 logits ℓ(x_i, y_j), computed in row chunks, on CPU."""
        self.model.eval()
        x, y = self._input(x, "x"), self._input(y, "y")
        rows = [
            self.model.logit_matrix(x[i : i + EVAL_CHUNK], y) for i in range(0, len(x), EVAL_CHUNK)
        ]
        return torch.cat(rows).to(torch.float64).cpu()

    def logit_table(self) -> Tensor:
        """(nx, ny) float64 learned logits of a discrete joint."""
        if not self.dist.discrete:
            raise ValueError("logit_table() needs a discrete joint; use logit_matrix(x, y)")
        return self.logit_matrix(torch.arange(self.dist.nx), torch.arange(self.dist.ny))

    def save(self, out: str | Path) -> Path:
        """Write config.json, metrics.json, model.pt and, for discrete joints, logits.npy."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        config = {**self.config.as_dict(), "dist": repr(self.dist)}
        atomic.write_text(out / "config.json", json.dumps(config, indent=2, default=str))
        atomic.write_text(out / "metrics.json", json.dumps(_jsonable(self.metrics), indent=2))
        atomic.save_torch(out / "model.pt", self.model.state_dict())
        if self.dist.discrete:
            table = self.logit_table().numpy()
            atomic.write_atomic(out / "logits.npy", lambda f: np.save(f, table))
        else:  # an overwritten earlier run's table would not belong to this run
            (out / "logits.npy").unlink(missing_ok=True)
        return out


def _jsonable(metrics: dict) -> dict:
    """NaN/inf are not JSON; write them as null."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in metrics.items()
    }

"""The training log: OUT/log.csv always, TensorBoard event files with `--report-to tensorboard`.

Every `--log-every` steps one row: the loss of the last step, its LR and logit scale, and the
throughput of the steps since the previous row: samples/s (global, all ranks), data time
(seconds per step spent waiting for batches) and step time. TensorBoard gets the same scalars
under `train/` in OUT/tensorboard (open_clip's names: `samples_per_second`, `data_time`, ...).
A resumed run first drops the rows written after its checkpoint.
"""

from __future__ import annotations

import csv
from pathlib import Path

FIELDS = [
    "step",
    "loss",
    "lr",
    "logit_scale",
    "images",
    "skipped",
    "samples_per_s",
    "data_s",
    "step_s",
    "elapsed_s",
]
TB_SCALARS = ("loss", "lr", "logit_scale", "samples_per_s", "data_s", "step_s")


class RunLog:
    """Append rows to log.csv (and TensorBoard); only the main rank makes one."""

    def __init__(self, out: Path, start: int, tensorboard: bool) -> None:
        self.path = Path(out) / "log.csv"
        truncate_log(self.path, start)
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(Path(out) / "tensorboard"), purge_step=start + 1)

    def write(self, row: dict) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, FIELDS)
            if new:
                w.writeheader()
            w.writerow({k: fmt(row[k]) for k in FIELDS})
        if self.tb is not None:
            for k in TB_SCALARS:
                self.tb.add_scalar(f"train/{k}", row[k], row["step"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def truncate_log(path: Path, step: int) -> None:
    """Drop log rows past `step` (written after the checkpoint a resumed run restarts from)."""
    if not path.exists():
        return
    with open(path) as f:
        rows = list(csv.DictReader(f))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(r for r in rows if int(r["step"]) <= step)

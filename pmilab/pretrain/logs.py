"""The training log: OUT/log.csv always, TensorBoard event files with `--report-to tensorboard`.

Every `--log-every` steps one row: the loss of the last step, its LR and logit scale, and the
throughput of the steps since the previous row: samples/s (global, all ranks), data time
(seconds per step spent waiting for batches) and step time. TensorBoard gets the same scalars
under `train/` in OUT/tensorboard (open_clip's names: `samples_per_second`, `data_time`, ...).
A resumed run first drops the rows written after its checkpoint.

Warnings (a skipped sample, a clamped warmup, a collapsed run) are printed while `pretrain` and
`eval` run as one line, `pmilab pretrain: warning: MESSAGE` (`one_line_warnings`), never with
the Python source line that the default format puts under each warning.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
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
PACKAGE = Path(__file__).resolve().parents[1]  # pmilab/: its own warnings need no location
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


@contextmanager
def one_line_warnings(prog: str) -> Iterator[None]:
    """Within the block, print each warning as one line `PROG: warning: MESSAGE` on stderr.

    Python's default format adds the file, line and source text of the `warnings.warn` call:
    noise to someone reading about their data. Only the format changes: the filters, and tests
    that record warnings (`catch_warnings(record=True)` never formats), behave as before. A
    warning from another library keeps its category and location, without the source line.
    """
    previous = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None) -> str:
        if PACKAGE in Path(filename).resolve().parents:
            return f"{prog}: warning: {message}\n"
        return f"{prog}: warning: {category.__name__}: {message} ({filename}:{lineno})\n"

    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = previous

"""The training log: OUT/log.csv always, TensorBoard event files with `--report-to tensorboard`.

Every `--log-every` steps one row: the loss of the last step, its LR and logit scale, and the
throughput of the steps since the previous row: samples/s (global, all ranks), data time
(seconds per step spent waiting for batches) and step time. TensorBoard gets the same scalars
under `train/` in OUT/tensorboard (open_clip's names: `samples_per_second`, `data_time`, ...).
A resumed run first drops the rows written after its checkpoint.

Evaluation during training (val.py) appends one JSON object per evaluation to OUT/val.jsonl
and its numbers to TensorBoard under `val/`. With TensorBoard, the run's settings are written
once per session as hyperparameters (the HParams dashboard), with `train/loss` and the `val/`
metrics the run computes as its metrics.

Warnings (a skipped sample, a clamped warmup, a collapsed run) are printed while `pretrain` and
`eval` run as one line, `pmilab pretrain: warning: MESSAGE` (`one_line_warnings`), never with
the Python source line that the default format puts under each warning.
"""

from __future__ import annotations

import csv
import json
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


VAL_LOG = "val.jsonl"


class RunLog:
    """Append rows to log.csv (and TensorBoard); only the main rank makes one."""

    def __init__(self, out: Path, start: int, tensorboard: bool) -> None:
        self.path = Path(out) / "log.csv"
        self.val_path = Path(out) / VAL_LOG
        truncate_log(self.path, start)
        truncate_jsonl(self.val_path, start)
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

    def write_val(self, row: dict, numbers: dict[str, float]) -> None:
        """One evaluation: a line of val.jsonl, and `numbers` as TensorBoard's val/ scalars."""
        with open(self.val_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in numbers.items():
                self.tb.add_scalar(f"val/{k}", v, row["step"])
            self.tb.flush()

    def hparams(self, settings: dict, metrics: list[str]) -> None:
        """The run's settings as TensorBoard hyperparameters, with the metric tags they are
        judged by (scalars written under those tags show in the HParams dashboard)."""
        if self.tb is None:
            return
        from torch.utils.tensorboard.summary import hparams

        values = {k: v for k, v in settings.items() if isinstance(v, bool | int | float | str)}
        exp, ssi, sei = hparams(values, dict.fromkeys(metrics, 0.0))
        writer = self.tb._get_file_writer()
        for summary in (exp, ssi, sei):
            writer.add_summary(summary)
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


def truncate_jsonl(path: Path, step: int) -> None:
    """Drop val.jsonl rows past `step` (a fresh run, step 0, drops them all)."""
    if not path.exists():
        return
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["step"] <= step))


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

"""Evaluation during training: `--val-data` and `--zeroshot-frequency` (open_clip's flags).

- `--val-data SPEC` (shapes, digits: their held-out split; a CSV/TSV; shards: the first
  `--val-num-samples` samples) is evaluated every `--val-frequency` epochs and at the end of the
  run: `val_loss` (the training loss, symmetric InfoNCE, on consecutive blocks of one global
  batch of held-out pairs, averaged) and retrieval R@1/5/10 with mean and median rank, both
  ways, as `pmilab eval` computes them (evaluate.py).
- `--zeroshot-frequency N`: zero-shot top-1 every N epochs and at the end, on the validation
  data when it has named classes (shapes, digits, a CSV `label` column), else on the training
  set's held-out split (shapes, digits). Data with no named classes is refused before training.
- Rows go to OUT/val.jsonl (`step`, `epoch`, the metrics) and, with `--report-to tensorboard`,
  to TensorBoard under `val/`. Only the main rank evaluates; under DDP the others wait.
- Evaluation leaves training untouched: the model is switched to eval mode and back, and every
  RNG state (torch, numpy, python, CUDA) is restored afterwards, so a run's training numbers are
  the same with and without it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pmilab.errors import InputError
from pmilab.losses import symmetric_infonce
from pmilab.pretrain.checkpoint import rng_state, set_rng_state
from pmilab.pretrain.data import ImageText, SkipLog
from pmilab.pretrain.evaluate import (
    class_scores,
    class_text_outputs,
    embed_images,
    embed_texts,
    logit_matrix,
    retrieval_metrics,
)
from pmilab.pretrain.preprocess import Preprocess
from pmilab.pretrain.readers import CsvKeys, load_data

# The metric names written (TensorBoard: "val/" + name), declared to the HParams dashboard.
VAL_METRICS = ("val_loss", "retrieval_r1_i2t", "retrieval_r1_t2i", "retrieval_r5_i2t")
ZEROSHOT_METRICS = ("zeroshot_top1",)


def held_out(spec: str, cfg, limit: int) -> ImageText:
    """The held-out split of `spec` (at most `limit` samples), read as `pmilab eval` reads it."""
    keys = CsvKeys(cfg.csv_separator, cfg.csv_img_key, cfg.csv_caption_key)
    sizes = (cfg.shapes_train, cfg.shapes_test)
    data = load_data(spec, "test", sizes, progress=False, keys=keys, limit=limit)
    return data.subset(np.arange(min(limit, len(data))))


def has_classes(data: ImageText) -> bool:
    return data.labels is not None and data.prompts is not None


class InRunEval:
    """The evaluations of one run (main rank): which data, when, and the metrics."""

    def __init__(self, cfg, plan, prep: Preprocess) -> None:
        self.cfg, self.plan, self.prep = cfg, plan, prep.for_eval()
        self.val = self.zeroshot = None
        n = cfg.val_num_samples
        if cfg.val_data:
            self.val = held_out(cfg.val_data, cfg, n)
        if plan.zeroshot_every:
            if self.val is not None and has_classes(self.val):
                self.zeroshot = self.val
            elif cfg.data in ("shapes", "digits") and not cfg.val_data:
                self.zeroshot = held_out(cfg.data, cfg, n)
            else:
                where = f"--val-data {cfg.val_data}" if cfg.val_data else f"--data {cfg.data}"
                raise InputError(
                    f"--zeroshot-frequency needs held-out data with named classes, and {where} "
                    "has none: pass --val-data shapes, digits, or a CSV with a 'label' column"
                )

    def metric_names(self) -> list[str]:
        names = list(VAL_METRICS) if self.val is not None else []
        return names + (list(ZEROSHOT_METRICS) if self.zeroshot is not None else [])

    def due(self, step: int) -> tuple[bool, bool]:
        """(validation due, zero-shot due) after `step` optimizer steps (and at the end)."""
        end = step == self.plan.steps

        def every(n: int | None) -> bool:
            return n is not None and (step % n == 0 or end)

        return (
            self.val is not None and every(self.plan.val_every),
            self.zeroshot is not None and every(self.plan.zeroshot_every),
        )

    def run(self, model, tok, step: int, global_batch: int) -> dict | None:
        """The metrics due after `step` steps ({} keys: VAL_METRICS and more, zeroshot_top1),
        or None when nothing is due. RNG states and the model's mode are restored."""
        val_due, zs_due = self.due(step)
        if not (val_due or zs_due):
            return None
        state, was_training = rng_state(), model.training
        model.eval()
        try:
            res: dict = {"step": step, "epoch": self.plan.epoch(step)}
            if val_due:
                res.update(self.validation(model, tok, global_batch))
            if zs_due:
                res.update(self.zeroshot_top1(model, tok))
        finally:
            model.train(was_training)
            set_rng_state(state)
        return res

    @torch.no_grad()
    def validation(self, model, tok, global_batch: int) -> dict:
        img, kept = embed_images(model, self.val, SkipLog(), prep=self.prep)
        txt = embed_texts(model, tok, [self.val.captions[i] for i in kept])
        lm = logit_matrix(model, img, txt).double().cpu()  # (n, n) images x their captions
        b = min(global_batch, len(lm))
        k = len(lm) // b
        blocks = torch.stack([lm[i * b : (i + 1) * b, i * b : (i + 1) * b] for i in range(k)])
        loss = float(symmetric_infonce(blocks).mean())
        return {"n_val": len(kept), "val_loss": loss, **retrieval_metrics(lm)}

    @torch.no_grad()
    def zeroshot_top1(self, model, tok) -> dict:
        data = self.zeroshot
        img, kept = embed_images(model, data, SkipLog(), prep=self.prep)
        scores = class_scores(model, img, class_text_outputs(model, tok, data.prompts))
        top1 = float((scores.argmax(1).cpu().numpy() == data.labels[kept]).mean())
        return {"zeroshot_top1": top1, "zeroshot_chance": 1.0 / len(data.class_names)}


def scalars(row: dict) -> dict[str, float]:
    """The numbers of a row for TensorBoard (not step and epoch)."""
    return {
        k: float(v)
        for k, v in row.items()
        if k not in ("step", "epoch") and isinstance(v, int | float) and math.isfinite(v)
    }

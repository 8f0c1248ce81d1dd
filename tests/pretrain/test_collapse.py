"""Collapse detection: a pretraining stuck at ln N (the InfoNCE loss of constant logits) with
constant logits after warmup is warned about once and recorded in summary.json."""

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from pmilab.pretrain.model import ImageTextModel
from pmilab.pretrain.train import (
    COLLAPSE_LOGIT_STD,
    COLLAPSE_LOSS_TOL,
    COLLAPSE_PATIENCE,
    CollapseWatch,
    PretrainConfig,
    train,
)

LN16 = math.log(16)  # 2.7725887...: batch 16


def constant(value: float = 0.5):
    return lambda: torch.full((16, 16), value)


def plus_minus(sd: float):
    """16 x 16 logits, half -sd and half +sd: standard deviation sd * sqrt(256 / 255)."""
    return lambda: torch.tensor([-sd, sd]).repeat(128).view(16, 16)


def test_the_rule_fires_once_after_warmup_and_patience():
    watch = CollapseWatch(warmup=5, steps=100)
    fired = [s for s in range(1, 101) if watch.update(s, LN16, 16, constant())]
    assert fired == [5 + COLLAPSE_PATIENCE]
    assert watch.summary() == {"collapsed": True, "collapsed_at_step": 5 + COLLAPSE_PATIENCE}


def test_the_rule_needs_the_loss_at_ln_n_and_near_constant_logits():
    off = CollapseWatch(warmup=0, steps=100)  # the loss just outside its tolerance
    near = LN16 - 1.01 * COLLAPSE_LOSS_TOL
    assert not any(off.update(s, near, 16, constant()) for s in range(1, 101))
    spread = CollapseWatch(warmup=0, steps=100)  # loss at ln N, logits just too spread
    spread_logits = plus_minus(1.01 * COLLAPSE_LOGIT_STD)
    assert float(spread_logits().std()) > COLLAPSE_LOGIT_STD
    assert not any(spread.update(s, LN16, 16, spread_logits) for s in range(1, 101))
    assert off.summary() == spread.summary() == {"collapsed": False}
    inside = CollapseWatch(warmup=0, steps=100)  # the same, just inside both tolerances
    inside_logits = plus_minus(0.99 * COLLAPSE_LOGIT_STD * (255 / 256) ** 0.5)
    assert float(inside_logits().std()) < COLLAPSE_LOGIT_STD
    fired = [
        s
        for s in range(1, 101)
        if inside.update(s, near + 0.02 * COLLAPSE_LOSS_TOL, 16, inside_logits)
    ]
    assert fired == [COLLAPSE_PATIENCE]


def test_a_short_run_needs_every_step_after_warmup():
    watch = CollapseWatch(warmup=2, steps=6)
    assert [s for s in range(1, 7) if watch.update(s, LN16, 16, constant())] == [6]
    resumed = CollapseWatch(warmup=2, steps=6, state={"streak": 3, "step": None})
    assert resumed.update(6, LN16, 16, constant())  # the checkpointed streak carries over


COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255,) * 3}
COLOURS |= {"black": (0, 0, 0), "yellow": (255, 255, 0), "cyan": (0, 255, 255)}
COLOURS |= {"magenta": (255, 0, 255)}


def colours_csv(root: Path) -> Path:
    """32 solid 8x8 squares captioned by their colour: learnable in a few dozen steps."""
    lines = ["filepath,caption"]
    for k in range(4):
        for name, rgb in COLOURS.items():
            Image.new("RGB", (8, 8), rgb).save(root / f"{name}{k}.png")
            lines.append(f"{name}{k}.png,a {name} square")
    (root / "data.csv").write_text("\n".join(lines) + "\n")
    return root / "data.csv"


def tiny(root: Path, steps: int = 40) -> PretrainConfig:
    return PretrainConfig(
        data=str(colours_csv(root)),
        out=str(root / "run"),
        similarity="wpse",
        preprocess="simple",  # the [-1, 1] scale these thresholds were set with (CSV: clip)
        image_size=8,
        width=16,
        dim=8,
        batch_size=16,
        steps=steps,
        warmup=5,
        ckpt_every=steps,
        log_every=steps,
        threads=1,
        progress=False,
    )


def run(cfg: PretrainConfig) -> tuple[dict, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = train(cfg)
    return summary, [str(w.message) for w in caught if "collapsed" in str(w.message)]


def test_a_run_with_constant_logits_warns_once_and_records_it(tmp_path, monkeypatch):
    real = ImageTextModel.logit_matrix
    monkeypatch.setattr(ImageTextModel, "logit_matrix", lambda self, *p: 0.0 * real(self, *p))
    summary, warned = run(tiny(tmp_path))
    assert len(warned) == 1 and f"collapsed at step {5 + COLLAPSE_PATIENCE}" in warned[0]
    assert summary["final_loss"] == pytest.approx(LN16, abs=1e-5)
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["collapsed"] is True and written["collapsed_at_step"] == 5 + COLLAPSE_PATIENCE


def test_control_a_run_that_learns_does_not_warn(tmp_path):
    summary, warned = run(tiny(tmp_path))
    assert warned == []
    assert summary["final_loss"] < LN16 - 0.5  # it left ln N
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["collapsed"] is False

"""Logs (must-show): log.csv and TensorBoard event files with throughput, data time, LR, scale."""

import csv

import pytest

from pmilab.cli import main


def test_tensorboard_events_match_the_csv_log(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    args = ["pretrain", "--data", "digits", "--image-size", "8", "--width", "16", "--dim", "4"]
    args += ["--batch-size", "8", "--steps", "4", "--warmup", "1", "--log-every", "2"]
    args += ["--report-to", "tensorboard", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [2, 4]
    for r in rows:
        assert float(r["samples_per_s"]) > 0 and float(r["step_s"]) > 0
        assert 0 <= float(r["data_s"]) <= float(r["step_s"])
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {f"train/{k}" for k in ("loss", "lr", "logit_scale", "samples_per_s", "data_s")} <= tags
    for key in ("loss", "lr", "logit_scale", "samples_per_s"):
        got = [(e.step, e.value) for e in acc.Scalars(f"train/{key}")]
        want = [(int(r["step"]), float(r[key])) for r in rows]
        assert [s for s, _ in got] == [s for s, _ in want]
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-5)


def test_grad_checkpointing_flag_runs_on_transformers_towers(tmp_path):
    out = tmp_path / "run"
    args = ["pretrain", "--data", "digits", "--tower", "hf-vit", "--text-tower", "clip"]
    args += ["--image-size", "8", "--patch-size", "4", "--width", "16", "--dim", "4"]
    args += ["--batch-size", "8", "--steps", "2", "--warmup", "0", "--grad-checkpointing"]
    assert (
        main(
            [*args, "--tokenizer", "bpe", "--vocab-size", "300", "--no-progress", "--out", str(out)]
        )
        == 0
    )
    small = ["pretrain", "--data", "digits", "--steps", "1", "--grad-checkpointing"]
    assert main([*small, "--out", str(tmp_path / "x")]) == 2  # the small towers have none

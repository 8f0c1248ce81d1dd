"""The training loop's open_clip flags, end to end on sklearn's digits (issue 26): gradient
clipping, epochs and save frequency, evaluation during training (val.jsonl, TensorBoard scalars
and hyperparameters), --resume latest, --aug rrc, and --image-size with a pretrained tower."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from pmilab.cli import main
from pmilab.pretrain.data import SkipLog
from pmilab.pretrain.evaluate import embed_images, embed_texts, evaluate, load_run, logit_matrix
from pmilab.pretrain.readers import load_data
from pmilab.pretrain.train import PretrainConfig, train

TINY = ["--data", "digits", "--image-size", "8", "--width", "16", "--dim", "4"]
TINY += ["--batch-size", "16", "--warmup", "1", "--threads", "1", "--no-progress"]


def tiny(out, **kw) -> PretrainConfig:
    base = dict(data="digits", image_size=8, width=16, dim=4, batch_size=16, warmup=1)
    return PretrainConfig(**{**base, "out": str(out), "progress": False, **kw})


def columns(out, *names) -> list[tuple]:
    with open(out / "log.csv") as f:
        return [tuple(r[n] for n in names) for r in csv.DictReader(f)]


def weights(out) -> dict:
    return torch.load(out / "ckpt.pt", weights_only=False)["model"]


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return all(torch.equal(wa[k], wb[k]) for k in wa)


def test_grad_clip_norm_clips_every_step_to_the_cap(tmp_path, monkeypatch):
    real = torch.nn.utils.clip_grad_norm_
    seen = []

    def spy(params, max_norm, *a, **kw):
        params = list(params)
        before = real(params, max_norm, *a, **kw)
        after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        seen.append((float(before), float(after)))
        return before

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    train(tiny(tmp_path / "off", steps=3))
    assert seen == []  # --grad-clip-norm 0: never called
    train(tiny(tmp_path / "clip", steps=3, grad_clip_norm=0.05))
    assert len(seen) == 3
    for before, after in seen:
        assert before > 0.05 and after == pytest.approx(0.05, rel=1e-4)
        assert after != pytest.approx(0.05 * (1 + 2e-4), rel=1e-4)  # the tolerance tells 2x
    # a cap above every gradient norm changes nothing, bit for bit
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real)
    train(tiny(tmp_path / "loose", steps=3, grad_clip_norm=1e6))
    assert same_weights(tmp_path / "off", tmp_path / "loose")
    assert not same_weights(tmp_path / "off", tmp_path / "clip")


def test_epochs_lr_scheduler_and_save_frequency_drive_the_run(tmp_path):
    """--epochs 3 of --train-num-samples 64 at batch 16: 12 steps; a checkpoint each epoch;
    the logged LR is open_clip's const-cooldown (1 epoch of cooldown, power 2, end 1e-4)."""
    out = tmp_path / "run"
    args = [*TINY, "--epochs", "3", "--train-num-samples", "64", "--save-frequency", "1"]
    args += ["--keep-checkpoints", "5", "--lr-scheduler", "const-cooldown", "--lr", "0.01"]
    args += ["--epochs-cooldown", "1", "--lr-cooldown-power", "2", "--lr-cooldown-end", "1e-4"]
    assert main(["pretrain", *args, "--log-every", "1", "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 12
    assert json.loads((out / "config.json").read_text())["pretrain"]["steps"] == 12
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept == [f"ckpt-{s:08d}.pt" for s in (4, 8, 12)]
    rows = columns(out, "step", "lr")
    assert [int(s) for s, _ in rows] == list(range(1, 13))

    def open_clip(step):  # const_lr_cooldown, written out: warmup 1, cooldown from step 8
        if step < 1:
            return 0.01 * (step + 1) / 1
        if step < 8:
            return 0.01
        return (1 - (step - 8) / 4) ** 2 * (0.01 - 1e-4) + 1e-4

    assert [float(lr) for _, lr in rows] == pytest.approx([open_clip(s) for s in range(12)], 1e-5)


def test_evaluation_during_training_matches_pmilab_eval_and_leaves_training_alone(tmp_path):
    """--val-data digits and --zeroshot-frequency 1, epochs of 160 samples (10 steps): rows at
    steps 10 and 20 in val.jsonl; the last equals `pmilab eval` of the final checkpoint; the
    training log is that of the same run without evaluation; TensorBoard has the val/ scalars
    and the settings as hyperparameters."""
    plain, evald = tmp_path / "plain", tmp_path / "eval"
    base = dict(steps=20, train_num_samples=160, log_every=5)
    train(tiny(plain, **base))
    extra = dict(val_data="digits", zeroshot_frequency=1, val_num_samples=200)
    summary = train(tiny(evald, **base, **extra, epochs=2, report_to="tensorboard"))
    names = ("step", "loss", "lr", "logit_scale")
    assert columns(plain, *names) == columns(evald, *names)
    assert same_weights(plain, evald)

    rows = [json.loads(x) for x in (evald / "val.jsonl").read_text().splitlines()]
    assert [(r["step"], r["epoch"]) for r in rows] == [(10, 1.0), (20, 2.0)]
    last = rows[-1]
    assert summary["val"] == last
    res = evaluate(evald, "digits", n_max=200, progress=False)
    for key in ("retrieval_r1_i2t", "retrieval_r5_t2i", "retrieval_mean_rank_i2t"):
        assert last[key] == pytest.approx(res[key], abs=1e-9), key
    assert last["zeroshot_top1"] == pytest.approx(res["zeroshot_top1"], abs=1e-9)
    assert last["n_val"] == 200 and last["zeroshot_chance"] == 0.1

    # val_loss: symmetric InfoNCE over blocks of the global batch (16), written out here
    model, tok, _ = load_run(evald)

    test = load_data("digits", "test").subset(np.arange(200))
    img, kept = embed_images(model, test, SkipLog())
    lm = logit_matrix(model, img, embed_texts(model, tok, [test.captions[i] for i in kept]))
    losses = []
    for i in range(200 // 16):
        b = lm[i * 16 : (i + 1) * 16, i * 16 : (i + 1) * 16].double()
        rows_ = -torch.log_softmax(b, 1).diagonal().mean()
        cols_ = -torch.log_softmax(b, 0).diagonal().mean()
        losses.append(float(0.5 * (rows_ + cols_)))
    ref = sum(losses) / len(losses)
    assert last["val_loss"] == pytest.approx(ref, rel=1e-6)
    # control of the tolerance: off by 2x it fails, by 0.5x it passes
    assert last["val_loss"] != pytest.approx(ref * (1 + 2e-6), rel=1e-6)
    assert last["val_loss"] == pytest.approx(ref * (1 + 0.5e-6), rel=1e-6)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(evald / "tensorboard"))
    acc.Reload()
    zs = acc.Scalars("val/zeroshot_top1")
    assert [(e.step, round(e.value, 6)) for e in zs] == [
        (r["step"], round(r["zeroshot_top1"], 6)) for r in rows
    ]
    assert [e.step for e in acc.Scalars("val/val_loss")] == [10, 20]
    content = acc.PluginTagToContent("hparams")
    parse = plugin_data_pb2.HParamsPluginData.FromString
    exp = parse(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in exp.metric_infos} >= {"train/loss", "val/zeroshot_top1"}
    start = parse(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["lr"].number_value == pytest.approx(0.002)
    assert start.hparams["val_data"].string_value == "digits"


def test_zeroshot_without_named_classes_is_one_line(tmp_path, capsys):
    table = tmp_path / "pairs.csv"
    rows = ["filepath,caption"]
    for i in range(8):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (30 * i, 0, 0)).save(buf, "PNG")
        (tmp_path / f"{i}.png").write_bytes(buf.getvalue())
        rows.append(f"{i}.png,shade {i}")
    table.write_text("\n".join(rows) + "\n")
    args = ["pretrain", *TINY, "--data", str(table), "--batch-size", "4", "--out"]
    assert main([*args, str(tmp_path / "r"), "--zeroshot-frequency", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--zeroshot-frequency needs held-out data with named classes" in err[0]
    assert not (tmp_path / "r").exists()


def test_resume_latest_needs_no_flags_retyped(tmp_path, capsys):
    """A run with many non-default settings, continued by --resume latest with only a longer
    --steps, ends with the weights of the same run made in one go (const LR: an extension
    moves no LR); plain --resume without the flags is refused, naming them."""
    flags = [*TINY, "--lr", "0.01", "--seed", "3", "--lr-scheduler", "const"]
    flags += ["--grad-clip-norm", "1.0", "--similarity", "kme", "--warmup", "2"]
    once, twice = tmp_path / "once", tmp_path / "twice"
    assert main(["pretrain", *flags, "--steps", "6", "--out", str(once)]) == 0
    assert main(["pretrain", *flags, "--steps", "4", "--out", str(twice)]) == 0
    capsys.readouterr()
    assert main(["pretrain", "--out", str(twice), "--steps", "6", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--similarity 'kme' (now 'linear')" in err[0]
    assert main(["pretrain", "--out", str(twice), "--resume", "latest", "--steps", "6"]) == 0
    assert "extends the run from 4 to 6 steps" in capsys.readouterr().out
    assert same_weights(once, twice)
    saved = json.loads((twice / "config.json").read_text())["pretrain"]
    assert (saved["lr"], saved["seed"], saved["steps"], saved["resume"]) == (0.01, 3, 6, True)
    empty = tmp_path / "empty"
    assert main(["pretrain", "--out", str(empty), "--resume", "latest"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume latest: no config.json in" in err[0]


def test_rrc_training_repeats_per_seed_and_augments(tmp_path):
    runs = {
        name: tiny(tmp_path / name, steps=3, aug=aug, seed=seed)
        for name, aug, seed in (("a", "rrc", 0), ("b", "rrc", 0), ("c", "rrc", 1), ("d", "none", 0))
    }
    for cfg in runs.values():
        train(cfg)
    assert same_weights(tmp_path / "a", tmp_path / "b")
    assert not same_weights(tmp_path / "a", tmp_path / "c")
    assert not same_weights(tmp_path / "a", tmp_path / "d")


def clip_vision_folder(tmp_path, size: int = 16):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    conf = CLIPVisionConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=size,
        patch_size=4,
    )
    CLIPVisionModel(conf).save_pretrained(tmp_path / "clip")
    return tmp_path / "clip"


def test_image_size_with_a_pretrained_tower_is_honoured_or_one_line(tmp_path, capsys):
    """No --image-size: the tower's own 16 px; the same size given: fine; another: refused in
    one line naming both (before it was dropped silently)."""
    folder = clip_vision_folder(tmp_path)
    args = ["pretrain", "--data", "digits", "--pretrained-image", str(folder), "--dim", "4"]
    args += ["--batch-size", "8", "--steps", "1", "--warmup", "0", "--no-progress", "--out"]
    assert main([*args, str(tmp_path / "own")]) == 0
    model, _, ckpt = load_run(tmp_path / "own")
    assert model.cfg.image_size == 16 and ckpt["config"]["image_size"] == 0
    assert main([*args, str(tmp_path / "same"), "--image-size", "16"]) == 0
    capsys.readouterr()
    assert main([*args, str(tmp_path / "other"), "--image-size", "32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--image-size 32: the pretrained image tower in" in err[0]
    assert "takes 16 px images" in err[0] and not (tmp_path / "other").exists()
    assert math.isfinite(json.loads((tmp_path / "own" / "summary.json").read_text())["final_loss"])

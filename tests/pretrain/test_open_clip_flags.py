"""open_clip's flags on `pmilab pretrain` (issue 26): each parses to the configuration of the
pmilab flag with the same meaning; the run plan (epochs, sample budgets, cadences), open_clip's
LR schedules, --config FILE, the model presets (counted on the meta device, never built), and the
grouped --help. The end-to-end runs of these flags are in test_loop_flags.py."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import fields

import pytest

from pmilab.cli import build_parser, main
from pmilab.cli.pretrain import GROUPS, OWN_OPTIONS, given_settings
from pmilab.errors import InputError
from pmilab.pretrain.config import PRESETS, PretrainConfig, read_config_file
from pmilab.pretrain.plan import lr_at, plan_run


def parse(*argv: str) -> PretrainConfig:
    args = build_parser().parse_args(["pretrain", *argv])
    return PretrainConfig.from_flags(given_settings(args))


def one_error_line(capsys, argv: list[str]) -> str:
    assert main(["pretrain", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# ---------------------------------------------------------------------------------------------
# open_clip's names -> the same parsed configuration


def test_precision_names_mean_what_they_mean_in_open_clip():
    """amp: fp16 autocast with a gradient scaler (tests/pretrain/test_amp.py); amp_bf16 and
    amp_bfloat16: bf16 autocast, pmilab's bf16."""
    bf16 = parse("--precision", "bf16")
    assert parse("--precision", "amp_bf16") == parse("--precision", "amp_bfloat16") == bf16
    assert bf16.precision == "bf16"
    assert parse("--precision", "amp").precision == "amp" != bf16.precision
    assert parse("--precision", "fp32").precision == "fp32" != bf16.precision
    assert PretrainConfig(precision="amp_bf16") == PretrainConfig(precision="bf16")


def test_local_loss_and_gather_with_grad_are_accepted_no_ops():
    assert parse("--local-loss", "--gather-with-grad") == parse() == PretrainConfig()


def test_pretrained_is_one_flag_for_both_towers_not_an_ambiguous_prefix(tmp_path, capsys):
    cfg = parse("--pretrained", str(tmp_path))
    assert cfg.pretrained_image == cfg.pretrained_text == str(tmp_path)
    assert cfg == parse("--pretrained-image", str(tmp_path), "--pretrained-text", str(tmp_path))
    line = one_error_line(capsys, ["--pretrained", "laion2b_s34b_b79k", "--out", str(tmp_path)])
    assert line.startswith("pmilab pretrain: error: --pretrained laion2b_s34b_b79k: not a folder")


def test_each_new_flag_reaches_its_field():
    cfg = parse(
        "--grad-clip-norm", "1.5", "--lr-scheduler", "const-cooldown", "--epochs-cooldown", "2",
        "--lr-cooldown-end", "1e-5", "--lr-cooldown-power", "2", "--epochs", "7",
        "--train-num-samples", "640", "--zeroshot-frequency", "2", "--val-data", "digits",
        "--val-frequency", "3", "--val-num-samples", "50", "--save-frequency", "4",
        "--preprocess", "clip", "--aug", "rrc",
    )  # fmt: skip
    assert (cfg.grad_clip_norm, cfg.lr_scheduler, cfg.epochs_cooldown) == (1.5, "const-cooldown", 2)
    assert (cfg.lr_cooldown_end, cfg.lr_cooldown_power, cfg.epochs) == (1e-5, 2.0, 7)
    assert (cfg.train_num_samples, cfg.zeroshot_frequency, cfg.val_data) == (640, 2, "digits")
    assert (cfg.val_frequency, cfg.val_num_samples, cfg.save_frequency) == (3, 50, 4)
    assert (cfg.preprocess, cfg.aug) == ("clip", "rrc")
    assert cfg != parse()


def test_bad_values_are_one_line(capsys, tmp_path):
    out = ["--out", str(tmp_path / "r")]
    assert "--steps and --epochs" in one_error_line(capsys, ["--steps", "5", "--epochs", "2", *out])
    line = one_error_line(capsys, ["--lr-scheduler", "const-cooldown", *out])
    assert "needs --epochs-cooldown" in line
    assert "--grad-clip-norm must be >= 0" in one_error_line(capsys, ["--grad-clip-norm", "-1"])
    with pytest.raises(SystemExit):  # argparse: not a value --resume takes
        build_parser().parse_args(["pretrain", "--resume", "yesterday"])
    assert "--resume: takes no value or 'latest'" in capsys.readouterr().err


def test_preprocess_default_follows_the_data():
    assert parse().preprocess == "simple"  # shapes: today's numbers
    assert parse("--data", "digits").preprocess == "simple"
    assert parse("--data", "pairs.csv").preprocess == "clip"
    assert parse("--train-data", "shards/{000..009}.tar").preprocess == "clip"
    assert parse("--data", "pairs.csv", "--preprocess", "simple").preprocess == "simple"


# ---------------------------------------------------------------------------------------------
# the run plan: epochs, sample budgets, cadences in epochs


def plan(n: int | None, world: int = 1, **kw):
    return plan_run(PretrainConfig(batch_size=8, accum_freq=2, **kw), n, world)


def test_epochs_and_train_num_samples_set_the_run_length():
    assert plan(100).steps == 300 and plan(100).steps_per_epoch == 6  # 100 // (8 x 2)
    assert plan(100, epochs=3).steps == 18
    assert plan(100, epochs=3, train_num_samples=50).steps == 9  # 50 // 16 = 3 per epoch
    assert plan(100, world=2, epochs=3).steps == 9  # the global batch is 32
    assert plan(None, epochs=2, train_num_samples=160).steps == 20  # shards, S given
    p = plan(100, epochs=4, save_frequency=2, val_data="digits", zeroshot_frequency=3)
    assert (p.ckpt_every, p.val_every, p.zeroshot_every) == (12, 6, 18)
    assert plan(100, ckpt_every=7).ckpt_every == 7 and plan(100).val_every is None
    assert plan(100).epoch(9) == 1.5 and plan(None).epoch(9) is None


def test_epochs_without_an_epoch_length_or_shorter_than_a_batch_are_refused():
    with pytest.raises(InputError, match="--epochs counts epochs.*--train-num-samples"):
        plan(None, epochs=2)
    with pytest.raises(InputError, match="--zeroshot-frequency counts epochs"):
        plan(None, zeroshot_frequency=1)
    with pytest.raises(InputError, match="shorter than one global batch of 16"):
        plan(100, train_num_samples=10, epochs=1)
    kw = {"lr_scheduler": "const-cooldown", "epochs_cooldown": 5, "epochs": 2}
    with pytest.raises(InputError, match="longer than the run"):
        plan(100, **kw)


# ---------------------------------------------------------------------------------------------
# open_clip's schedules (scheduler.py), written out here as the reference


def open_clip_lr(name, step, base, warmup, steps, cooldown=0, power=1.0, end=0.0):
    if step < warmup:
        return base * (step + 1) / warmup
    if name == "cosine":
        e, es = step - warmup, steps - warmup
        return 0.5 * (1 + math.cos(math.pi * e / es)) * base
    if name == "const":
        return base
    start = steps - cooldown
    if step < start:
        return base
    e, es = step - start, steps - start
    return (1 - e / es) ** power * (base - end) + end


@pytest.mark.parametrize(
    "name, kw",
    [
        ("cosine", {}),
        ("const", {}),
        ("const-cooldown", {"cooldown": 12}),
        ("const-cooldown", {"cooldown": 40, "power": 2.0, "end": 1e-4}),
    ],
)
def test_lr_schedules_are_open_clips(name, kw):
    cfg = PretrainConfig(
        lr=1e-3,
        lr_scheduler=name,
        epochs_cooldown=1 if "cooldown" in kw else 0,
        lr_cooldown_power=kw.get("power", 1.0),
        lr_cooldown_end=kw.get("end", 0.0),
    )
    got = [lr_at(s, cfg, 5, 50, kw.get("cooldown", 0)) for s in range(50)]
    want = [open_clip_lr(name, s, 1e-3, 5, 50, **kw) for s in range(50)]
    assert got == pytest.approx(want, rel=1e-12, abs=0)
    if name == "const-cooldown":  # control: a linear cooldown instead of the power is told
        wrong = [open_clip_lr(name, s, 1e-3, 5, 50, **{**kw, "power": 1.5}) for s in range(50)]
        assert got != pytest.approx(wrong, rel=1e-3)


# ---------------------------------------------------------------------------------------------
# --config FILE


def test_config_file_parses_like_the_flags_and_flags_win(tmp_path, capsys):
    path = tmp_path / "c.json"
    settings = {"lr": 0.01, "grad-clip-norm": 1.0, "data": "digits", "lr_scheduler": "const"}
    path.write_text(json.dumps(settings))
    flags = ["--lr", "0.01", "--grad-clip-norm", "1", "--data", "digits", "--lr-scheduler", "const"]
    assert parse("--config", str(path)) == parse(*flags) != parse()
    assert parse("--config", str(path), "--lr", "0.5").lr == 0.5
    assert read_config_file(path)["grad_clip_norm"] == 1.0
    # a run's own config.json (its "pretrain" object) is a config file too
    run = tmp_path / "config.json"
    run.write_text(json.dumps({"pretrain": {**settings, "steps": 9}, "model": {}}))
    assert parse("--config", str(run)).steps == 9
    bad = {"unknown.json": {"lr": 0.1, "lerning_rate": 1}, "type.json": {"steps": "ten"}}
    for name, content in bad.items():
        (tmp_path / name).write_text(json.dumps(content))
    line = one_error_line(capsys, ["--config", str(tmp_path / "unknown.json")])
    assert "unknown setting 'lerning_rate'" in line
    assert "'steps' must be int, got 'ten'" in one_error_line(
        capsys, ["--config", str(tmp_path / "type.json")]
    )
    (tmp_path / "broken.json").write_text("{lr: 1")
    assert "is not JSON" in one_error_line(capsys, ["--config", str(tmp_path / "broken.json")])


# ---------------------------------------------------------------------------------------------
# model presets: open_clip's ViT-B-32, ViT-B-16, ViT-L-14 (never instantiated here)

# open_clip model_configs/*.json (OpenAI's shapes): image (width, layers, patch), text (width,
# layers), embed_dim; heads are width / 64 in both towers.
OPEN_CLIP = {
    "ViT-B-32": ((768, 12, 32), (512, 12), 512),
    "ViT-B-16": ((768, 12, 16), (512, 12), 512),
    "ViT-L-14": ((1024, 24, 14), (768, 12), 768),
}


def layer_params(w: int) -> int:
    """One pre-norm transformer block of width w, MLP 4w: qkv+out (4w^2 + 4w), two layer norms
    (4w), fc1 + fc2 (8w^2 + 5w) = 12w^2 + 13w."""
    return 12 * w * w + 13 * w


def vision_params(w: int, layers: int, patch: int, size: int = 224) -> int:
    """CLIP's visual tower without its projection: patch conv (no bias), class token, position
    embeddings, pre and post layer norms, the blocks."""
    tokens = (size // patch) ** 2 + 1
    return 3 * patch * patch * w + w + tokens * w + 4 * w + layers * layer_params(w)


def text_params(w: int, layers: int, vocab: int = 49408, context: int = 77) -> int:
    """CLIP's text tower without its projection: token and position embeddings, the blocks and
    the final layer norm."""
    return vocab * w + context * w + layers * layer_params(w) + 2 * w


def test_presets_are_open_clips_shapes():
    assert list(PRESETS) == ["ViT-B-32", "ViT-B-16", "ViT-L-14"]
    for name, ((w, layers, patch), (tw, tl), dim) in OPEN_CLIP.items():
        cfg = parse("--model", name)
        assert (cfg.tower, cfg.width, cfg.image_layers, cfg.patch_size) == (
            "clip",
            w,
            layers,
            patch,
        )
        assert (cfg.image_heads, cfg.text_heads) == (w // 64, tw // 64)
        assert (cfg.text_tower, cfg.text_width, cfg.text_layers, cfg.dim) == ("clip", tw, tl, dim)
        assert (cfg.image_size, cfg.context, cfg.vocab_size, cfg.tokenizer) == (
            224,
            77,
            49408,
            "bpe",
        )


def test_published_counts_anchor_the_arithmetic():
    """OpenAI's released parameter counts (with projections) minus the projection matrices."""
    assert vision_params(768, 12, 32) == 87_849_216 - 768 * 512  # ViT-B/32 visual
    assert vision_params(768, 12, 16) == 86_192_640 - 768 * 512  # ViT-B/16 visual
    assert vision_params(1024, 24, 14) == 303_966_208 - 1024 * 768  # ViT-L/14 visual
    assert text_params(768, 12) == 123_650_304 - 768 * 768  # ViT-L/14 text


@pytest.mark.parametrize("name", list(OPEN_CLIP))
def test_preset_towers_count_as_open_clip_on_the_meta_device(name):
    """transformers' CLIP towers built from the preset's configs, on the meta device (no
    memory, no time): their parameter counts are the arithmetic of open_clip's shapes."""
    import torch
    from transformers import CLIPTextModel, CLIPVisionModel

    from pmilab.pretrain.hf_towers import image_config, text_config

    cfg = parse("--model", name)
    vis = image_config("clip", cfg.width, cfg.image_layers, cfg.image_heads, cfg.patch_size, 224)
    txt = text_config(cfg.vocab_size, cfg.context, cfg.text_width, cfg.text_layers, cfg.text_heads)
    assert vis.intermediate_size == 4 * cfg.width and txt.intermediate_size == 4 * cfg.text_width
    assert txt.max_position_embeddings == 77 and txt.vocab_size == 49408
    with torch.device("meta"):
        n_vis = sum(p.numel() for p in CLIPVisionModel(vis).parameters())
        n_txt = sum(p.numel() for p in CLIPTextModel(txt).parameters())
    (w, layers, patch), (tw, tl), _ = OPEN_CLIP[name]
    assert n_vis == vision_params(w, layers, patch)
    assert n_txt == text_params(tw, tl)


def test_a_pretrained_image_tower_replaces_the_presets_image_fields(tmp_path):
    cfg = parse("--model", "ViT-L-14", "--pretrained-image", str(tmp_path))
    assert cfg.image_size == 0 and cfg.width == PretrainConfig().width  # the tower's own
    assert cfg.text_width == 768 and cfg.dim == 768  # the rest of the preset stays


# ---------------------------------------------------------------------------------------------
# --help


def test_every_field_has_one_help_group():
    grouped = [n for names in GROUPS.values() for n in names]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) | set(OWN_OPTIONS) == {f.name for f in fields(PretrainConfig)}


def test_help_groups_the_flags_and_names_the_open_clip_flags():
    done = subprocess.run(
        [sys.executable, "-m", "pmilab", "pretrain", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    text = " ".join(done.stdout.split())
    for title in (*GROUPS, "open_clip compatibility"):
        assert f"\n{title}:" in done.stdout, title
    assert "open_clip flags accepted with the same meaning:" in text
    for name in ("--grad-clip-norm", "--lr-scheduler", "--save-frequency", "--local-loss"):
        assert name in text.split("open_clip flags accepted")[1]
    assert "--precision amp|amp_bf16|fp32" in text and "--resume [latest]" in text
    assert "pmilab always gathers the features with their gradients" in text


def test_cooldown_flags_under_another_schedule_are_warned_about():
    from pmilab.pretrain.train import warn_unused

    with pytest.warns(UserWarning, match="--lr-cooldown-end only act with --lr-scheduler"):
        warn_unused(PretrainConfig(lr_cooldown_end=1e-5))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # control: none under const-cooldown, none by default
        warn_unused(PretrainConfig(lr_scheduler="const-cooldown", epochs_cooldown=1))
        warn_unused(PretrainConfig())

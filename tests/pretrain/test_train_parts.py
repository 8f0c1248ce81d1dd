"""Pieces of the trainer: schedule, weight-decay groups, logit-scale clamp, bf16 autocast path."""

import math

import pytest
import torch

from pmilab.pretrain.model import ModelConfig, build_model
from pmilab.pretrain.train import PretrainConfig, optimizer_for


@pytest.mark.parametrize("sim", ["linear", "wpse", "kme"])
def test_decay_groups_exclude_similarity_norms_and_biases(sim):
    model = build_model(ModelConfig(similarity=sim, vocab=10, width=16, dim=4, image_size=8))
    decay, rest = optimizer_for(model, PretrainConfig()).param_groups
    assert decay["weight_decay"] > 0 and rest["weight_decay"] == 0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert not any(n.startswith("similarity.") for n in decayed)
    assert all(p.ndim >= 2 for p in decay["params"])
    assert len(decay["params"]) + len(rest["params"]) == len(list(model.parameters()))


def test_logit_scale_is_clamped_after_a_step():
    """The trainer calls similarity.clamp_() after each step; CLIP's cap is 100."""
    model = build_model(ModelConfig(similarity="linear", vocab=10, width=16, dim=4, image_size=8))
    with torch.no_grad():
        model.similarity.scale.log_scale.fill_(math.log(1000.0))
    model.similarity.clamp_()
    assert math.isclose(model.logit_scale(), 100.0, rel_tol=1e-6)


@pytest.mark.parametrize("sim", ["linear", "kme"])
def test_bf16_autocast_path_runs_and_stays_close_to_fp32(sim):
    """The CUDA bf16 code path, exercised with CPU autocast (no GPU here)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(similarity=sim, vocab=12, width=16, dim=4, image_size=8))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 8, 8, generator=g)
    ids = torch.randint(3, 12, (6, 5), generator=g)
    loss32 = model(x, ids, ids != 0)
    loss16 = model(x, ids, ids != 0, autocast=True)
    assert loss16.dtype == torch.float32  # the logsumexp stays out of bf16
    # bf16 keeps 8 mantissa bits (relative rounding 2^-8 = 0.4% per op) inside the towers;
    # a few such errors in the logits give ~1% on the loss: allow 3%, far below any real bug
    assert torch.isfinite(loss16) and abs(loss16.item() / loss32.item() - 1) < 0.03
    loss16.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_checkpoint_write_is_atomic(tmp_path):
    """A write that dies midway leaves the previous checkpoint intact and no temporary file."""
    from pmilab.atomic import write_atomic
    from pmilab.pretrain.checkpoint import CKPT, read_checkpoint, save_checkpoint

    payload = {k: {} for k in ("model", "optimizer", "model_config", "config", "rng")}
    save_checkpoint(tmp_path, {**payload, "step": 1})

    def torn(f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # stands in for a kill between write and rename

    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / CKPT, torn)
    assert read_checkpoint(tmp_path / CKPT)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [CKPT]


def _changed(value, name=""):
    special = {"csv_separator": "\t", "model": "ViT-B-16", "report_to": "tensorboard"}
    special |= {"preprocess": "clip", "aug": "rrc", "lr_scheduler": "const"}
    if name in special:
        return special[name]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 if value else 0.5
    return value + "x"


def test_resume_rule_refuses_every_listed_field_and_only_those():
    from dataclasses import asdict, fields, replace

    from pmilab.pretrain.config import RESUME_FIELDS, resume_changes

    base = PretrainConfig()
    old = asdict(base)
    refused = {n for names in RESUME_FIELDS.values() for n in names}
    for f in fields(PretrainConfig):
        new = replace(base, **{f.name: _changed(getattr(base, f.name), f.name)})
        got = resume_changes(old, new, 1, 1)
        if f.name in refused:
            assert len(got) == 1 and got[0].startswith("--" + f.name.replace("_", "-") + " "), (
                f.name
            )
        else:  # out, workers, threads, logging, checkpoints, device, precision, steps + 1, ...
            assert got == [], f.name
    assert resume_changes(old, replace(base, steps=base.steps - 1), 1, 1)
    assert "world size 1 (now 2" in resume_changes(old, base, 1, 2)[0]


def test_open_clip_and_earlier_flag_names_parse_to_the_same_config():
    from dataclasses import fields

    from pmilab.cli import build_parser

    def cfg(argv):
        args = build_parser().parse_args(["pretrain", *argv])
        given = {f.name: getattr(args, f.name) for f in fields(PretrainConfig)}
        return PretrainConfig.from_flags({k: v for k, v in given.items() if v is not None})

    ours = ["--data", "x.tsv", "--accum-freq", "2", "--weight-decay", "0.2", "--log-every", "5"]
    theirs = ["--train-data", "x.tsv", "--accum", "2", "--wd", "0.2", "--log-every-n-steps", "5"]
    assert cfg(ours) == cfg(theirs) != cfg([])
    preset = cfg(["--model", "ViT-B-16", "--dim", "256"])  # an explicit flag beats the preset
    assert (preset.width, preset.image_size, preset.dim) == (768, 224, 256)

"""Exact accumulation (must-show): k micro-batches of B == one batch of k·B, loss and every gradient."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pmilab.losses import symmetric_infonce
from pmilab.pretrain.accum import accumulate
from pmilab.pretrain.model import ModelConfig, build_model

TOL = 1e-6  # the bar; fp64 differences here are ~1e-15 (summation order only)


def batch(n: int, size: int = 16, vocab: int = 20, ctx: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, size, size, generator=g, dtype=torch.float64)
    ids = torch.randint(3, vocab, (n, ctx), generator=g)
    ids[:, 0] = 2
    ids[n // 2 :, 4:] = 0  # some padding
    return images, ids, ids != 0


def model_for(sim: str, tower: str = "cnn", text: str = "transformer", ckpt: bool = False):
    torch.manual_seed(0)
    cfg = ModelConfig(
        similarity=sim,
        tower=tower,
        text_tower=text,
        vocab=20,
        context=6,
        width=16,
        dim=8,
        points=3,
        image_size=16,
        image_heads=2,
        text_heads=2,
    )
    model = build_model(cfg).double()
    if ckpt:
        model.enable_grad_checkpointing()
    return model


def grads(model) -> dict:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def reference(sim, tower, text, images, ids, mask):
    """One batch of k·B pairs, and an independent loss: InfoNCE of the full logit matrix."""
    model = model_for(sim, tower, text)
    loss = model(images, ids, mask)
    loss.backward()
    with torch.no_grad():
        lm = model.logit_matrix(*model.encode_image(images), *model.encode_text(ids, mask))
    assert abs(loss.item() - symmetric_infonce(lm).item()) < 1e-12
    return loss.item(), grads(model)


def accumulated(sim, tower, text, images, ids, mask, sizes, ckpt=False):
    model = model_for(sim, tower, text, ckpt)
    cuts = torch.tensor([0, *sizes]).cumsum(0).tolist()
    micro = [(images[a:b], ids[a:b], mask[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]
    loss = accumulate(model, model, micro)
    return loss.item(), grads(model)


def assert_same(ref, got):
    (l0, g0), (l1, g1) = ref, got
    assert abs(l0 - l1) < TOL
    assert set(g0) == set(g1)
    assert any(n.startswith("similarity.") for n in g0)  # the head's own parameters too
    worst = max((g0[n] - g1[n]).abs().max().item() for n in g0)
    assert worst < TOL, f"max gradient difference {worst:.3g}"
    assert max(g.abs().max().item() for g in g0.values()) > 1e-4  # not trivially zero


@pytest.mark.parametrize("sim", ["linear", "wpse", "kme"])
def test_accum_4x8_equals_one_batch_of_32(sim):
    data = batch(32)
    assert_same(
        reference(sim, "cnn", "transformer", *data),
        accumulated(sim, "cnn", "transformer", *data, [8] * 4),
    )


@pytest.mark.parametrize("sim,tower,text", [("kme", "hf-vit", "clip"), ("wpse", "clip", "clip")])
def test_accum_is_exact_on_transformers_towers_with_checkpointing(sim, tower, text):
    data = batch(12)
    ref = reference(sim, tower, text, *data)
    assert_same(ref, accumulated(sim, tower, text, *data, [4, 4, 4]))
    assert_same(ref, accumulated(sim, tower, text, *data, [6, 6], ckpt=True))


@settings(max_examples=6, deadline=None)
@given(sizes=st.lists(st.integers(1, 5), min_size=1, max_size=4), seed=st.integers(0, 99))
def test_accum_is_exact_for_any_micro_batch_sizes(sizes, seed):
    """Unequal micro-batches (skipped images make them so) are exact too."""
    n = sum(sizes)
    if n < 2:
        return
    data = batch(n, seed=seed)
    assert_same(
        reference("wpse", "cnn", "transformer", *data),
        accumulated("wpse", "cnn", "transformer", *data, sizes),
    )


@pytest.mark.parametrize("sim", ["linear", "wpse", "kme"])
def test_cli_accum_freq_4_batch_8_equals_batch_32(tmp_path, sim):
    """End to end, fp64: 3 AdamW steps with --accum-freq 4 --batch-size 8 == --batch-size 32."""
    from pmilab.cli import main

    args = ["pretrain", "--data", "digits", "--image-size", "8", "--width", "16", "--dim", "4"]
    args += ["--similarity", sim, "--points", "2", "--steps", "3", "--warmup", "1"]
    args += ["--precision", "fp64", "--no-progress"]
    assert main([*args, "--batch-size", "32", "--out", str(tmp_path / "big")]) == 0
    assert (
        main([*args, "--batch-size", "8", "--accum-freq", "4", "--out", str(tmp_path / "acc")]) == 0
    )
    a = torch.load(tmp_path / "big" / "ckpt.pt", weights_only=True)
    b = torch.load(tmp_path / "acc" / "ckpt.pt", weights_only=True)
    worst = max((a["model"][k] - b["model"][k]).abs().max().item() for k in a["model"])
    assert worst < TOL, f"parameters differ by {worst:.3g} after 3 steps"
    import json

    la, lb = (
        json.loads((tmp_path / d / "summary.json").read_text())["final_loss"]
        for d in ("big", "acc")
    )
    assert abs(la - lb) < TOL

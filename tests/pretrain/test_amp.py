"""`--precision amp` as open_clip means it: fp16 autocast of the towers with dynamic loss scaling.

References: the same step in fp32 (values), exact power-of-two scaling of the gradients
(`accumulate(scale=...)` against scale 1 on a float64 model), torch's GradScaler semantics
(a step whose gradients overflow is skipped and the scale halved), and the uninterrupted run
(resume restores the loss scale).
"""

from __future__ import annotations

import torch

from pmilab.cli import main
from pmilab.pretrain.accum import accumulate
from pmilab.pretrain.config import PretrainConfig
from pmilab.pretrain.model import ModelConfig, build_model
from pmilab.runtime.precision import autocast_dtype, encoder_autocast, needs_scaler

TINY = ["--data", "digits", "--image-size", "8", "--width", "16", "--dim", "4"]
TINY += ["--batch-size", "16", "--warmup", "1", "--threads", "1", "--no-progress"]
TINY += ["--lr-scheduler", "const", "--lr", "0.003"]


def ckpt(out) -> dict:
    return torch.load(out / "ckpt.pt", weights_only=False)


def test_amp_is_fp16_with_a_scaler_and_amp_bf16_is_bf16():
    assert PretrainConfig(precision="amp").precision == "amp"
    assert PretrainConfig(precision="amp_bf16").precision == "bf16"
    assert PretrainConfig(precision="amp_bfloat16").precision == "bf16"
    assert autocast_dtype("amp") == torch.float16 and needs_scaler("amp")
    assert autocast_dtype("bf16") == torch.bfloat16 and not needs_scaler("bf16")
    assert autocast_dtype("fp32") is None and autocast_dtype("fp64") is None
    layer = torch.nn.Linear(3, 3)
    with encoder_autocast("cpu", torch.float16):
        assert layer(torch.ones(2, 3)).dtype == torch.float16
    with encoder_autocast("cpu", True):  # the old boolean form still means bf16
        assert layer(torch.ones(2, 3)).dtype == torch.bfloat16


def _batch(n: int = 6, size: int = 8):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=g, dtype=torch.float64) * 2 - 1
    ids = torch.randint(1, 20, (n, 5), generator=g)
    return images, ids, torch.ones(n, 5, dtype=torch.bool)


def test_loss_scaling_scales_every_gradient_exactly():
    """Gradients of scale * loss are scale times the gradients (2^10: exact in float64), over
    two micro-batches (exact accumulation), and the returned loss is the unscaled one."""
    grads, losses = [], []
    for scale in (1.0, 1024.0):
        torch.manual_seed(0)
        cfg = ModelConfig(similarity="kme", vocab=32, width=16, dim=4, points=2, image_size=8)
        model = build_model(cfg).double()
        images, ids, mask = _batch()
        micro = [(images[:3], ids[:3], mask[:3]), (images[3:], ids[3:], mask[3:])]
        losses.append(accumulate(model, model, micro, None, False, scale=scale))
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert torch.equal(losses[0], losses[1])
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n, g in grads[0].items():
        assert torch.equal(grads[1][n], 1024.0 * g), n


def _init_scale(monkeypatch, scale: float) -> None:
    real = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, **kw: real(device, scale, **kw))


def test_fp16_autocast_gradients_match_fp32_and_are_not_fp32():
    """One step's loss and gradients with the towers under fp16 autocast against plain fp32
    autograd on the same model and batch: the loss within 1e-3 relative, every sizeable gradient
    at cosine > 0.99 and norm within 2%, and not equal (the towers did run in fp16); loss
    scaling by 2^8 is never further from fp32 than none. 16x16 images: at 8x8 the CNN's last
    GroupNorm normalises 2 numbers per group, whose gradient no low precision resolves (bf16
    and fp16 alike: norms off 15-80 %, measured), a property of that size, not of the path."""
    torch.manual_seed(0)
    cfg = ModelConfig(similarity="kme", vocab=32, width=16, dim=4, points=2, image_size=16)
    model = build_model(cfg)
    images, ids, mask = (t.float() if t.is_floating_point() else t for t in _batch(8, 16))
    out = {}
    for name, autocast, scale in (
        ("fp32", None, 1.0),
        ("amp", torch.float16, 256.0),
        ("amp-unscaled", torch.float16, 1.0),
    ):
        model.zero_grad(set_to_none=True)
        loss = accumulate(model, model, [(images, ids, mask)], autocast, False, scale=scale)
        grads = {n: p.grad / scale for n, p in model.named_parameters() if p.grad is not None}
        out[name] = (float(loss), grads)
    (la, ga), (lb, gb) = out["fp32"], out["amp"]
    assert abs(lb - la) <= 1e-3 * abs(la)
    assert ga.keys() == gb.keys()
    differ, top = 0, max(x.norm() for x in ga.values())
    for n, g in ga.items():
        if g.norm() < 1e-3 * top:
            continue
        cos = torch.nn.functional.cosine_similarity(g.flatten(), gb[n].flatten(), dim=0)
        assert cos > 0.99, (n, float(cos))
        raw = out["amp-unscaled"][1][n]  # without scaling, small fp16 gradients underflow
        assert (
            cos >= torch.nn.functional.cosine_similarity(g.flatten(), raw.flatten(), dim=0) - 1e-4
        )
        assert abs(gb[n].norm() / g.norm() - 1) < 0.02, n
        differ += not torch.equal(g, gb[n])
    assert differ > 0


def test_amp_pretrains_and_records_its_loss_scale(tmp_path):
    """`pmilab pretrain --precision amp` on CPU: the default scale (2^16, open_clip's)
    overflows on this tiny model's first steps, which are skipped and the scale halved until it
    fits; then it trains: the loss falls, and the checkpoint holds the scale."""
    out = tmp_path / "amp"
    flags = [*TINY, "--precision", "amp", "--steps", "30", "--log-every", "1"]
    assert main(["pretrain", *flags, "--out", str(out)]) == 0
    c = ckpt(out)
    scale = c["scaler"]["scale"]
    assert 1.0 <= scale < 2.0**16 and float(scale).is_integer()
    assert (int(scale) & (int(scale) - 1)) == 0  # a power of two: only halvings
    losses = [float(r.split(",")[1]) for r in (out / "log.csv").read_text().splitlines()[1:]]
    assert len(losses) == 30 and sum(losses[-5:]) < sum(losses[:5])


def initial_weights() -> dict:
    """The seed-0 initial parameters of TINY's model (vocab from digits), as the CLI builds it."""
    from pmilab.pretrain.readers import load_data
    from pmilab.pretrain.tokenizer import train_tokenizer

    vocab = train_tokenizer(load_data("digits").captions).get_vocab_size()
    torch.manual_seed(0)
    cfg = ModelConfig(similarity="linear", vocab=vocab, width=16, dim=4, image_size=8)
    return build_model(cfg).state_dict()


def test_an_overflowing_step_is_skipped_and_the_scale_halved(tmp_path, monkeypatch):
    """At a loss scale of 2^100 the fp16 gradients overflow: the update is skipped (the weights
    stay at their initial values) and the scale halves each step; the run goes on. The default
    scale (2^16, open_clip's) overflows on this tiny model too and is halved until it fits."""
    _init_scale(monkeypatch, 2.0**100)
    out = tmp_path / "o"
    assert main(["pretrain", *TINY, "--precision", "amp", "--steps", "2", "--out", str(out)]) == 0
    c = ckpt(out)
    assert c["scaler"]["scale"] == 2.0**98
    init = initial_weights()
    assert c["model"].keys() == init.keys()
    assert all(torch.equal(c["model"][k], init[k]) for k in init)


def test_resume_restores_the_loss_scale(tmp_path):
    once, twice = tmp_path / "once", tmp_path / "twice"
    flags = [*TINY, "--precision", "amp"]
    assert main(["pretrain", *flags, "--steps", "6", "--out", str(once)]) == 0
    assert main(["pretrain", *flags, "--steps", "3", "--out", str(twice)]) == 0
    assert main(["pretrain", "--out", str(twice), "--steps", "6", "--resume", "latest"]) == 0
    a, b = ckpt(once), ckpt(twice)
    assert a["scaler"] == b["scaler"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])

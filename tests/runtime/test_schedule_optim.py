"""The one LR schedule and the one weight-decay rule (runtime.schedule, runtime.optim)."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from pmilab.runtime.optim import adamw, decay_groups
from pmilab.runtime.schedule import warmup_cosine


def test_warmup_then_cosine_closed_form():
    assert [warmup_cosine(s, 1.0, 10, 110) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    for s in (10, 35, 60, 85, 109):  # cosine from 1 at step 10 to 0 at step 110
        want = 0.5 * (1 + math.cos(math.pi * (s - 10) / 100))
        assert math.isclose(warmup_cosine(s, 1.0, 10, 110), want)
    assert warmup_cosine(110, 1.0, 10, 110) == 0.0 and warmup_cosine(500, 1.0, 10, 110) == 0.0


@given(
    lr=st.floats(1e-6, 10.0),
    warmup=st.integers(0, 50),
    extra=st.integers(1, 500),
)
def test_schedule_is_bounded_and_never_zero_before_the_end(lr, warmup, extra):
    steps = warmup + extra
    lrs = [warmup_cosine(s, lr, warmup, steps) for s in range(steps)]
    assert all(0 < v <= lr * (1 + 1e-12) for v in lrs)
    after = lrs[warmup:]  # non-increasing after warmup
    assert all(a >= b - 1e-12 * lr for a, b in zip(after, after[1:], strict=False))


def test_no_warmup_starts_at_the_peak():
    assert warmup_cosine(0, 0.3, 0, 100) == pytest.approx(0.3)


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)  # weight (4, 3) decays, bias (4,) does not
        self.norm = nn.LayerNorm(4)  # 1-D gain and bias: no decay
        self.table = nn.Parameter(torch.zeros(5, 2))  # listed as no-decay below
        self.scale = nn.Parameter(torch.zeros(()))  # scalar: no decay


def test_decay_rule_matrices_only_and_never_the_heads_list():
    m = _Toy()
    decay, rest = decay_groups(m, [m.table], 0.1)
    assert decay["weight_decay"] == 0.1 and rest["weight_decay"] == 0.0
    assert [id(p) for p in decay["params"]] == [id(m.lin.weight)]
    want_rest = {id(p) for p in (m.lin.bias, m.norm.weight, m.norm.bias, m.table, m.scale)}
    assert {id(p) for p in rest["params"]} == want_rest


def test_adamw_decays_exactly_the_decay_group():
    """One step with zero gradients: only weight decay moves parameters, p <- p (1 - lr wd)."""
    m = _Toy()
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(1.0)
    opt = adamw(m, [m.table], lr=0.5, weight_decay=0.1)
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.allclose(m.lin.weight, torch.full_like(m.lin.weight, 1 - 0.05))
    for p in (m.lin.bias, m.norm.weight, m.table, m.scale):
        assert torch.equal(p, torch.ones_like(p))


def test_fit_and_pretrain_use_the_same_rule():
    """Both trainers build their optimizer through runtime.optim.adamw (one owner)."""
    from pmilab.dists import random_latent_class
    from pmilab.pretrain.model import ModelConfig, build_model
    from pmilab.pretrain.train import PretrainConfig, optimizer_for
    from pmilab.training import FitConfig
    from pmilab.training.model import build_model as build_pair

    pm = build_model(ModelConfig(similarity="kme", vocab=10, width=16, dim=4, image_size=8))
    groups = optimizer_for(pm, PretrainConfig()).param_groups
    want = decay_groups(pm, pm.similarity.no_decay_parameters(), PretrainConfig().weight_decay)
    assert [[id(p) for p in g["params"]] for g in groups] == [
        [id(p) for p in g["params"]] for g in want
    ]
    cfg = FitConfig(similarity="kme", weight_decay=0.1, dim=2, points=2)
    pair = build_pair(random_latent_class(nx=6, ny=5, k=2, seed=0), cfg)
    head = {id(p) for p in pair.head.parameters()}
    decayed = decay_groups(pair, pair.head.no_decay_parameters(), 0.1)[0]["params"]
    assert head and not head & {id(p) for p in decayed}

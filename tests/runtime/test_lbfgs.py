"""Per-replicate L-BFGS (`runtime.lbfgs`) and `fit(optimizer="lbfgs")`.

References: the exact minimiser of a convex quadratic (a linear solve in float64), Rosenbrock's
known minimum, the exact PMI of a discrete joint (`pmi_rmse_product` = 0 at the optimum), and the
same seeds run one at a time (per-replicate independence, bit for bit on CPU).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pmilab as pl
from pmilab.errors import InputError
from pmilab.runtime.lbfgs import BatchedLBFGS


def _quadratic(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor):
    def closure():
        x.grad = None
        f = 0.5 * (x[:, None, :] @ a @ x[:, :, None]).reshape(-1) - (b * x).sum(1)
        f.sum().backward()
        return f.detach()

    return closure


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    reps=st.integers(1, 5),
    n=st.integers(1, 8),
    cond=st.floats(1.0, 1e3),
)
def test_each_replicate_reaches_its_own_quadratic_minimum(seed, reps, n, cond):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(reps, n, n, generator=g, dtype=torch.float64))
    eig = torch.logspace(0, float(np.log10(cond)), n, dtype=torch.float64)
    a = q @ torch.diag_embed(eig.expand(reps, n)) @ q.mT
    b = torch.randn(reps, n, generator=g, dtype=torch.float64)
    x = torch.zeros(reps, n, dtype=torch.float64, requires_grad=True)
    opt = BatchedLBFGS([x])
    closure = _quadratic(a, b, x)
    for _ in range(10 * n + 40):
        opt.step(closure)
    want = torch.linalg.solve(a, b)
    err = (x.detach() - want).norm(dim=1) / want.norm(dim=1).clamp_min(1e-12)
    assert float(err.max()) < 1e-6


def test_rosenbrock_from_three_starts_in_one_batch():
    x = torch.tensor([[-1.2, 1.0], [0.0, 0.0], [2.0, 2.0]], dtype=torch.float64)
    x.requires_grad_()

    def closure():
        x.grad = None
        f = 100 * (x[:, 1] - x[:, 0] ** 2) ** 2 + (1 - x[:, 0]) ** 2
        f.sum().backward()
        return f.detach()

    opt = BatchedLBFGS([x])
    for _ in range(200):
        opt.step(closure)
    assert torch.allclose(x.detach(), torch.ones(3, 2, dtype=torch.float64), atol=1e-6)


def test_a_replicate_does_not_depend_on_its_neighbours():
    """Replicate 1 alone and inside a batch of three give the same iterates, bit for bit."""
    g = torch.Generator().manual_seed(3)
    m = torch.randn(3, 5, 5, generator=g, dtype=torch.float64)
    a, b = m @ m.mT + 0.5 * torch.eye(5, dtype=torch.float64), torch.randn(3, 5, generator=g)
    b = b.double()
    xs = torch.zeros(3, 5, dtype=torch.float64, requires_grad=True)
    x1 = torch.zeros(1, 5, dtype=torch.float64, requires_grad=True)
    both = BatchedLBFGS([xs]), BatchedLBFGS([x1])
    closures = _quadratic(a, b, xs), _quadratic(a[1:2], b[1:2], x1)
    for _ in range(15):
        for opt, closure in zip(both, closures, strict=True):
            opt.step(closure)
        assert torch.equal(xs.detach()[1:2], x1.detach())


def test_a_non_finite_trial_is_rejected_and_the_others_go_on():
    """Replicate 0's loss is NaN away from the origin's neighbourhood: its search backtracks
    (and stalls); replicate 1 still reaches its minimum."""
    x = torch.tensor([[0.1], [3.0]], dtype=torch.float64, requires_grad=True)

    def closure():
        x.grad = None
        f = (x[:, 0] - torch.tensor([5.0, 1.0], dtype=torch.float64)) ** 2
        f = torch.where((torch.arange(2) == 0) & (x[:, 0].abs() > 0.5), torch.nan, f)
        f.sum().backward()
        return f.detach()

    opt = BatchedLBFGS([x])
    for _ in range(40):
        opt.step(closure)
    x = x.detach()
    assert float(x[1, 0]) == pytest.approx(1.0, abs=1e-8)
    assert abs(float(x[0, 0])) <= 0.5 and torch.isfinite(opt.loss).all()


# --------------------------------------------------------------------------- through fit

KW = dict(
    dim=2,
    points=2,
    normalize=False,
    bias=True,
    population=True,
    optimizer="lbfgs",
    dtype="float64",
    threads=1,
)


def test_fit_lbfgs_reaches_the_exact_pmi_of_a_table():
    """The tabular head's optimum is PMI + C exactly; float64 L-BFGS gets there."""
    spec = "latent:nx=12,ny=10,k=3,seed=0"
    run = pl.fit(spec, similarity="tabular", steps=400, progress=False, **KW)
    assert run.metrics["pmi_rmse_product"] < 1e-6  # nats, against PMI's sd of ~0.5
    assert run.metrics["excess_loss"] < 1e-12
    assert "converged_at_step" in run.metrics  # it stopped on its own, before 400


@pytest.mark.parametrize("similarity", ["kme", "linear"])
def test_fit_lbfgs_seeds_batched_equal_one_at_a_time(similarity):
    spec = "latent:nx=12,ny=10,k=3,seed=0"
    batched = pl.fit(spec, similarity=similarity, steps=25, seeds=[4, 1, 7], progress=False, **KW)
    for s, run in zip([4, 1, 7], batched, strict=True):
        alone = pl.fit(spec, similarity=similarity, steps=25, seed=s, progress=False, **KW)
        assert run.history == alone.history
        mine, theirs = run.model.state_dict(), alone.model.state_dict()
        for (name, p), q in zip(mine.items(), theirs.values(), strict=True):
            assert torch.equal(p, q), name


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(population=False), "population"),
        (dict(weight_decay=0.1), "weight_decay"),
        (dict(warmup=5), "warmup"),
    ],
)
def test_fit_lbfgs_refuses_what_it_cannot_minimise(change, message):
    with pytest.raises(InputError, match=message):
        pl.fit("latent:nx=12,ny=10,k=3,seed=0", similarity="linear", steps=5, **{**KW, **change})

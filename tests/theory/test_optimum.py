"""pmilab.theory.optimum against brute force (float64 optimisation, Monte Carlo, enumeration)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pmilab.dists import Gaussian, random_latent_class
from pmilab.theory import optimum as opt


def _weighted_rmse(table, pmi, px, py) -> float:
    w = torch.outer(px, py)
    r = table - pmi
    c = (w * r).sum()
    return float((w * (r - c) ** 2).sum().sqrt())


def _fit_rank(pmi, px, py, rank, seed) -> float:
    """Brute force: Adam then LBFGS on L = U Vᵀ (free constant handled by the centred rmse)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(pmi.shape[0], rank, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(pmi.shape[1], rank, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.outer(px, py)

    def loss():
        r = u @ v.T - pmi
        c = (w * r).sum()
        return (w * (r - c) ** 2).sum()

    adam = torch.optim.Adam([u, v], lr=0.05)
    for _ in range(300):
        adam.zero_grad()
        loss().backward()
        adam.step()
    lbfgs = torch.optim.LBFGS([u, v], max_iter=200, tolerance_grad=1e-14, tolerance_change=1e-16)

    def closure():
        lbfgs.zero_grad()
        f = loss()
        f.backward()
        return f

    lbfgs.step(closure)
    return float(loss().detach().sqrt())


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_rank_floor_matches_brute_force_fit(rank):
    d = random_latent_class(7, 6, 3, concentration=1.0, seed=rank)
    pmi = d.pmi_table()
    floor = opt.rank_floor(pmi, d.px, d.py, rank)
    best = min(_fit_rank(pmi, d.px, d.py, rank, s) for s in range(2))
    assert best >= floor - 1e-7  # nothing beats the floor
    assert best == pytest.approx(floor, rel=1e-4, abs=1e-7)  # and it is reached


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), rank=st.integers(0, 4))
def test_rank_floor_bracketed_by_eckart_young(seed, rank):
    d = random_latent_class(6, 5, 3, concentration=0.7, seed=seed)
    pmi = d.pmi_table().numpy()
    u, v = np.sqrt(d.px.numpy()), np.sqrt(d.py.numpy())
    s = np.linalg.svd(u[:, None] * pmi * v[None, :], compute_uv=False)
    lower = math.sqrt((s[rank + 1 :] ** 2).sum())
    floor = opt.rank_floor(pmi, d.px, d.py, rank)
    assert lower - 1e-10 <= floor
    if rank == 0:  # rank 0: only the constant, so the floor is the product std
        assert floor == pytest.approx(opt.product_std(pmi, d.px, d.py), rel=1e-9)


def test_rank_floor_zero_at_full_rank_and_rank_of_latent_exp_pmi():
    d = random_latent_class(8, 7, 3, seed=1)
    assert opt.rank_floor(d.pmi_table(), d.px, d.py, 7) == 0.0
    assert opt.numerical_rank(d.pmi_table().exp()) == 3  # T2: exp(PMI) has rank K
    assert opt.numerical_rank(d.pmi_table()) == 7  # PMI itself full rank


@pytest.mark.parametrize("rho", [[0.75], [0.9, 0.5]])
def test_gaussian_floors_by_monte_carlo(rho):
    """Fit ℓ = bilinear + linear + const by least squares on a product grid: residual -> floor."""
    dim = len(rho)
    d = Gaussian(dim, dim, rho=rho)
    g = torch.Generator().manual_seed(0)
    n = 400_000
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    y = torch.randn(n, dim, generator=g, dtype=torch.float64)  # independent: p(x)p(y)
    target = d.pmi(x, y)  # PMI at independent pairs: its law is that of PMI under p(x)p(y)
    feats = [
        torch.ones(n, 1, dtype=torch.float64),
        x,
        y,
        (x[:, :, None] * y[:, None, :]).flatten(1),
    ]
    a = torch.cat(feats, 1)
    coef = torch.linalg.lstsq(a, target[:, None]).solution
    resid = (target - (a @ coef).squeeze(1)).std().item()
    assert resid == pytest.approx(opt.gaussian_bilinear_floor(rho), rel=0.02)
    assert target.std().item() == pytest.approx(opt.gaussian_product_std(rho), rel=0.02)


def _loss_n_exact(table, n):
    """E[one-sided InfoNCE loss_N] of the PMI critic by enumerating every batch (tiny tables)."""
    p = torch.as_tensor(table, dtype=torch.float64)
    pmi = (p / torch.outer(p.sum(1), p.sum(0))).log()
    cells = [(i, j) for i in range(p.shape[0]) for j in range(p.shape[1])]
    total = 0.0
    for batch in itertools.product(range(len(cells)), repeat=n):
        prob = math.prod(float(p[cells[c]]) for c in batch)
        xs = [cells[c][0] for c in batch]
        ys = [cells[c][1] for c in batch]
        logits = pmi[xs][:, ys]
        total += prob * float(
            torch.nn.functional.cross_entropy(logits, torch.arange(n), reduction="mean")
        )
    return total


@pytest.mark.parametrize("n", [2, 3])
def test_infonce_loss_bound_by_enumeration(n):
    table = torch.tensor([[0.3, 0.05], [0.1, 0.55]], dtype=torch.float64)
    exact = _loss_n_exact(table, n)
    bound = opt.infonce_loss_bound(table, n)
    assert exact <= bound + 1e-12
    mi = float((table * (table / torch.outer(table.sum(1), table.sum(0))).log()).sum())
    assert math.log(n) - exact <= mi + 1e-12  # T1c: the estimate is a lower bound on I


def test_cap_floor_is_reached_by_clipping():
    d = random_latent_class(6, 5, 2, concentration=0.5, seed=3)
    pmi = d.pmi_table()
    mid = 0.5 * (pmi.max() + pmi.min())
    for cap in [0.1, 0.5, 1.0, 5.0]:
        clipped = (pmi - mid).clamp(-cap, cap)
        r = clipped - pmi
        delta = 0.5 * float(r.max() - r.min())
        assert delta == pytest.approx(opt.cap_floor(pmi, d.px, d.py, cap), abs=1e-12)

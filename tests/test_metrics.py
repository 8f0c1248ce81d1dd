"""docs/theory.md's measured quantities against numpy brute force, closed forms and calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pmilab import metrics as M
from pmilab.dists import Discrete, Gaussian, random_latent_class
from pmilab.losses import symmetric_infonce


def _table(seed, nx=6, ny=5):
    return random_latent_class(nx, ny, 3, seed=seed)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10**5), noise=st.floats(0.0, 2.0), c=st.floats(-5, 5))
def test_exact_pmi_errors_match_numpy(seed, noise, c):
    d = _table(seed % 50)
    pmi = d.pmi_table().numpy()
    rng = np.random.default_rng(seed)
    ell = pmi + c + noise * rng.standard_normal(pmi.shape)
    prod = np.outer(d.px.numpy(), d.py.numpy())
    joint = d.table.numpy()
    for w, fn in ((prod, M.pmi_rmse_product), (joint, M.pmi_rmse_joint)):
        r = ell - pmi
        want = math.sqrt(np.sum(w * (r - np.sum(w * r)) ** 2))
        got = fn(torch.tensor(ell), torch.tensor(pmi), torch.tensor(w))
        assert float(got) == pytest.approx(want, rel=1e-9, abs=1e-12) and got.se == 0.0
    r = ell - pmi
    assert float(M.pmi_delta(torch.tensor(ell), torch.tensor(pmi), torch.tensor(prod))) == (
        pytest.approx(0.5 * (r.max() - r.min()), abs=1e-12)
    )
    lc, pc = ell - np.sum(prod * ell), pmi - np.sum(prod * pmi)
    corr = np.sum(prod * lc * pc) / math.sqrt(np.sum(prod * lc**2) * np.sum(prod * pc**2))
    got = M.pmi_corr(torch.tensor(ell), torch.tensor(pmi), torch.tensor(prod))
    assert float(got) == pytest.approx(corr, rel=1e-9)


def test_pmi_plus_constant_is_perfect():
    d = _table(1)
    pmi = d.pmi_table()
    prod = d.px[:, None] * d.py[None, :]
    assert float(M.pmi_rmse_product(pmi + 3.0, pmi, prod)) < 1e-12
    assert float(M.pmi_rmse_joint(pmi - 1.0, pmi, d.table)) < 1e-12
    assert float(M.pmi_delta(pmi + 2.0, pmi, prod)) < 1e-12
    assert float(M.pmi_corr(2 * pmi + 1, pmi, prod)) == pytest.approx(1.0, abs=1e-12)
    assert abs(float(M.excess_loss(pmi + 7.0, d.table))) < 1e-12


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10**5), scale=st.floats(0.01, 3.0))
def test_excess_loss_is_nonnegative_and_zero_only_at_pmi(seed, scale):
    d = _table(seed % 30)
    g = torch.Generator().manual_seed(seed)
    ell = d.pmi_table() + scale * torch.randn(d.nx, d.ny, generator=g, dtype=torch.float64)
    assert float(M.excess_loss(ell, d.table)) > 0
    # row offsets: zero one-sided excess, positive symmetric excess (T1a)
    offs = d.pmi_table() + scale * torch.randn(d.nx, 1, generator=g, dtype=torch.float64)
    assert abs(float(M.excess_loss(offs, d.table, "one_sided"))) < 1e-10
    assert float(M.excess_loss(offs, d.table)) > 0


def test_row_offset_decomposition():
    """r = c(x) + e(x, y) with E_{p(y)} e = 0 by construction: within = rmse(e), offset = sd(c)."""
    d = _table(7)
    g = torch.Generator().manual_seed(1)
    c = torch.randn(d.nx, generator=g, dtype=torch.float64)
    e = torch.randn(d.nx, d.ny, generator=g, dtype=torch.float64)
    e = e - (e * d.py[None]).sum(1, keepdim=True)  # centre each row under p(y)
    pmi = d.pmi_table()
    within, offset = M.pmi_row_offset(pmi + c[:, None] + e, pmi, d.px, d.py)
    w = d.px[:, None] * d.py[None]
    assert float(within) == pytest.approx((w * e**2).sum().sqrt().item(), rel=1e-10)
    sd = ((d.px * (c - (d.px * c).sum()) ** 2).sum()).sqrt().item()
    assert float(offset) == pytest.approx(sd, rel=1e-10)
    w0, o0 = M.pmi_row_offset(pmi + 3.0, pmi, d.px, d.py)
    assert float(w0) < 1e-12 and float(o0) < 1e-12


def test_zero_cells_are_left_out_of_pmi_errors():
    """A pair that never co-occurs has PMI = −∞; the PMI errors use the finite cells only."""
    p = torch.tensor([[0.3, 0.0], [0.2, 0.5]], dtype=torch.float64)
    d = Discrete(p)
    pmi = d.pmi_table()
    ell = torch.where(torch.isfinite(pmi), pmi + 1.0, torch.full_like(pmi, -3.0))
    prod = d.px[:, None] * d.py[None, :]
    assert float(M.pmi_rmse_product(ell, pmi, prod)) < 1e-12
    assert math.isfinite(float(M.pmi_delta(ell, pmi, prod)))
    assert math.isfinite(float(M.excess_loss(ell, d.table)))


def test_mutual_information_table_matches_distribution():
    d = _table(4)
    assert M.mutual_information_table(d.table) == pytest.approx(float(d.mutual_information()))


def test_monte_carlo_rmse_at_pmi_is_zero_and_noise_is_recovered():
    g = Gaussian(2, 2, rho=[0.8, 0.3])
    x, y = g.sample(300, seed=0)
    _, y2 = g.sample(300, seed=1)
    pmi_grid, pmi_pair = g.pmi_matrix(x, y2), g.pmi(x, y)
    assert float(M.pmi_rmse_product(pmi_grid + 1.0, pmi_grid)) < 1e-10
    assert float(M.pmi_rmse_joint(pmi_pair - 2.0, pmi_pair)) < 1e-10
    noise = 0.5 * torch.randn(
        300, 300, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    est = M.pmi_rmse_product(pmi_grid + noise, pmi_grid)
    assert abs(float(est) - 0.5) < 4 * est.se + 1e-3


def test_grid_standard_error_is_calibrated():
    """Grid residuals r_ij = a_i + b_j + e_ij: the mean's variance is var(a)/n + var(b)/m +
    var(e)/(nm). Over 300 replications the spread of the rmse estimates must match the mean
    reported se within 25% (the sd of a 300-sample sd is ~4%, plus first-order approximations)."""
    n = 40
    rng = np.random.default_rng(0)
    ests, ses = [], []
    for _ in range(300):
        r = (
            rng.standard_normal((n, 1)) * 1.0
            + rng.standard_normal((1, n)) * 0.5
            + rng.standard_normal((n, n)) * 0.3
        )
        e = M.pmi_rmse_product(torch.tensor(r), torch.zeros(n, n, dtype=torch.float64))
        ests.append(float(e))
        ses.append(e.se)
    assert np.std(ests) == pytest.approx(np.mean(ses), rel=0.25)
    # paired draws: iid se of the mean
    ests, ses = [], []
    for _ in range(300):
        r = rng.standard_normal(200) * 2.0
        e = M.pmi_rmse_joint(torch.tensor(r), torch.zeros(200, dtype=torch.float64))
        ests.append(float(e))
        ses.append(e.se)
    assert np.std(ests) == pytest.approx(np.mean(ses), rel=0.25)


def test_mi_infonce_is_log_n_minus_one_sided_loss_and_matches_table_version():
    d = _table(2)
    table = d.pmi_table()
    x, y = d.sample(4 * 50, seed=5)
    x, y = x.view(4, 50), y.view(4, 50)
    mats = torch.stack([table[xb][:, yb] for xb, yb in zip(x, y, strict=True)])
    dense = M.mi_infonce(mats)
    fast = M.mi_infonce_table(table, x, y)
    assert float(fast) == pytest.approx(float(dense), rel=1e-12)
    assert fast.se == pytest.approx(dense.se, rel=1e-9)
    assert float(dense) <= math.log(50)
    # one batch with all-equal logits: loss = log N exactly, so the estimate is 0
    assert float(M.mi_infonce(torch.zeros(7, 7))) == pytest.approx(0.0, abs=1e-12)
    # the symmetric loss is not what mi_infonce uses (it is one-sided, T1c)
    L = mats[0]
    assert float(M.mi_infonce(L)) != pytest.approx(math.log(50) - symmetric_infonce(L).item())


def test_mi_infonce_at_pmi_approaches_mi_for_large_batches():
    """At ℓ = PMI the InfoNCE estimate converges to I(X;Y) from below as N grows (T1c);
    for N = 2000 the gap is O(1/N) plus sampling error (4 se)."""
    d = random_latent_class(10, 10, 3, concentration=0.3, seed=0)
    x, y = d.sample(5 * 2000, seed=9)
    est = M.mi_infonce_table(d.pmi_table(), x.view(5, 2000), y.view(5, 2000))
    mi = float(d.mutual_information())
    assert abs(float(est) - mi) < 4 * est.se + 0.01


def test_metric_shape_errors():
    with pytest.raises(ValueError, match="grid"):
        M.pmi_rmse_product(torch.zeros(5), torch.zeros(5))
    with pytest.raises(ValueError, match="paired"):
        M.pmi_rmse_joint(torch.zeros(3, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="differ in shape"):
        M.pmi_corr(torch.zeros(3, 3), torch.zeros(3, 4))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([0.0, 0.1, 0.5, 0.9]))
def test_rmse_above_matches_numpy_brute_force(seed, q):
    rng = np.random.default_rng(seed)
    pmi = rng.normal(size=(30, 40))
    logits = pmi + 0.7 + rng.normal(size=pmi.shape) * np.exp(-pmi)  # errors grow as PMI falls
    r = logits - pmi
    c = r.mean()  # the constant of pmi_rmse_product, over the whole grid
    keep = pmi > np.quantile(pmi, q)
    want = math.sqrt(((r[keep] - c) ** 2).mean())
    got = float(M.pmi_rmse_product_above(torch.tensor(logits), torch.tensor(pmi), q))
    assert got == pytest.approx(want, rel=1e-12)


def test_rmse_above_is_zero_at_pmi_plus_constant_and_rejects_bad_input():
    pmi = torch.arange(100.0, dtype=torch.float64).reshape(10, 10)
    assert float(M.pmi_rmse_product_above(pmi + 3.0, pmi)) == pytest.approx(0.0, abs=1e-12)
    alt = torch.ones(10, 10, dtype=torch.float64)
    alt[::2] = -1.0  # |r - C| = 1 in every cell, so in every subset
    assert float(M.pmi_rmse_product_above(pmi + alt, pmi, 0.3)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="quantile"):
        M.pmi_rmse_product_above(pmi, pmi, 1.0)
    with pytest.raises(ValueError, match="grid"):
        M.pmi_rmse_product_above(torch.zeros(5), torch.zeros(5))

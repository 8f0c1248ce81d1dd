"""Losses against docs/theory.md's formulas written out term by term (float64), and T1a / T1c."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pmilab.dists import Discrete, random_latent_class
from pmilab.losses import (
    infonce_mi_estimate,
    one_sided_infonce,
    population_loss,
    symmetric_infonce,
    table_infonce,
)


def _lse(v):
    m = max(v)
    return m + math.log(math.fsum(math.exp(a - m) for a in v))


def _brute_sym(L):
    n = len(L)
    rows = math.fsum(-L[i][i] + _lse(L[i]) for i in range(n)) / (2 * n)
    cols = math.fsum(-L[j][j] + _lse([L[i][j] for i in range(n)]) for j in range(n)) / (2 * n)
    return rows + cols


def _brute_population(ell, p):
    """L∞ = −E_p ℓ + ½ E_{p(x)} log E_{p(y)} e^ℓ + ½ E_{p(y)} log E_{p(x)} e^ℓ, by loops."""
    px, py = p.sum(1), p.sum(0)
    nx, ny = p.shape
    pos = math.fsum(p[i, j] * ell[i, j] for i in range(nx) for j in range(ny))
    row = math.fsum(
        px[i] * math.log(math.fsum(py[j] * math.exp(ell[i, j]) for j in range(ny)))
        for i in range(nx)
    )
    col = math.fsum(
        py[j] * math.log(math.fsum(px[i] * math.exp(ell[i, j]) for i in range(nx)))
        for j in range(ny)
    )
    return -pos + 0.5 * row + 0.5 * col


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 7), scale=st.floats(0.1, 30.0), seed=st.integers(0, 10**6))
def test_infonce_equals_formula(n, scale, seed):
    L = (
        torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        * scale
    )
    rows = L.tolist()
    assert symmetric_infonce(L).item() == pytest.approx(_brute_sym(rows), rel=1e-12, abs=1e-12)
    one = math.fsum(-rows[i][i] + _lse(rows[i]) for i in range(n)) / n
    assert one_sided_infonce(L).item() == pytest.approx(one, rel=1e-12, abs=1e-12)
    # T1c: the estimate log N − loss never exceeds log N
    assert infonce_mi_estimate(L).item() <= math.log(n) + 1e-12


@settings(max_examples=20, deadline=None)
@given(nx=st.integers(1, 5), ny=st.integers(1, 5), seed=st.integers(0, 10**6))
def test_population_loss_equals_formula_and_is_bounded_by_minus_mi(nx, ny, seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(nx, ny, generator=g, dtype=torch.float64) + 0.05
    p = p / p.sum()
    ell = torch.randn(nx, ny, generator=g, dtype=torch.float64) * 2
    got = population_loss(ell, p).item()
    assert got == pytest.approx(_brute_population(ell.numpy(), p.numpy()), rel=1e-10, abs=1e-12)
    d = Discrete(p)
    mi = float(d.mutual_information())
    assert got >= -mi - 1e-12  # T1a lower bound
    pmi = d.pmi_table()
    c = float(torch.randn((), generator=g)) * 5
    assert population_loss(pmi + c, p).item() == pytest.approx(-mi, abs=1e-10)  # equality at PMI+C


def test_one_sided_population_is_minimised_by_row_offsets_but_symmetric_is_not():
    """T1a: PMI + c(x) attains −I for the one-sided loss and not for the symmetric one."""
    d = random_latent_class(6, 5, 2, seed=3)
    mi, pmi = float(d.mutual_information()), d.pmi_table()
    c = torch.linspace(-2, 2, 6, dtype=torch.float64)[:, None]
    assert population_loss(pmi + c, d.table, "one_sided").item() == pytest.approx(-mi, abs=1e-10)
    assert population_loss(pmi + c, d.table, "symmetric").item() > -mi + 1e-2
    with pytest.raises(ValueError, match="objective"):
        population_loss(pmi, d.table, "two_sided")


def test_population_loss_is_the_large_batch_limit():
    """L∞ = lim_N (loss_N − log N). On a batch of N = 200000 pairs the O(1/N) gap and the
    sampling error (sd of a mean of N bounded terms, ~1e-3 here) are far below the 0.01
    tolerance."""
    d = random_latent_class(8, 7, 3, seed=1)
    ell = torch.randn(8, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x, y = d.sample(200_000, seed=4)
    batch = table_infonce(ell, x, y).item() - math.log(200_000)
    assert batch == pytest.approx(population_loss(ell, d.table).item(), abs=0.01)


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 40),
    objective=st.sampled_from(["symmetric", "one_sided"]),
    seed=st.integers(0, 10**6),
)
def test_table_infonce_equals_the_dense_batch_loss(n, objective, seed):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(4, 6, generator=g, dtype=torch.float64) * 3
    x = torch.randint(0, 4, (n,), generator=g)
    y = torch.randint(0, 6, (n,), generator=g)
    dense = table[x][:, y]
    want = symmetric_infonce(dense) if objective == "symmetric" else one_sided_infonce(dense)
    assert table_infonce(table, x, y, objective).item() == pytest.approx(want.item(), rel=1e-12)
    # and the gradients agree
    t1 = table.clone().requires_grad_()
    t2 = table.clone().requires_grad_()
    table_infonce(t1, x, y, objective).backward()
    f = symmetric_infonce if objective == "symmetric" else one_sided_infonce
    f(t2[x][:, y]).backward()
    np.testing.assert_allclose(t1.grad.numpy(), t2.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_losses_reject_non_square():
    with pytest.raises(ValueError, match="square"):
        symmetric_infonce(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="same"):
        population_loss(torch.zeros(3, 4), torch.ones(4, 3) / 12)


def test_a_stack_of_batches_gives_each_batch_its_loss():
    """symmetric_infonce on (K, N, N) equals the (N, N) loss of each batch, against a float64
    logsumexp reference written out by hand."""
    g = torch.Generator().manual_seed(3)
    stack = torch.randn(2, 5, 7, 7, generator=g, dtype=torch.float64) * 3
    got = symmetric_infonce(stack)
    assert got.shape == (2, 5)
    diag = stack.diagonal(dim1=-2, dim2=-1)
    ref = 0.5 * ((stack.logsumexp(-1) - diag).mean(-1) + (stack.logsumexp(-2) - diag).mean(-1))
    torch.testing.assert_close(got, ref, rtol=1e-13, atol=1e-13)
    for i in range(2):
        for k in range(5):
            torch.testing.assert_close(got[i, k], symmetric_infonce(stack[i, k]))

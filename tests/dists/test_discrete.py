"""Discrete joints against float64 brute force (docs/theory.md T1, T6)."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

import pmilab as pl
from pmilab.errors import InputError


def brute_pmi(table: np.ndarray) -> np.ndarray:
    nx, ny = table.shape
    px, py = table.sum(1), table.sum(0)
    out = np.empty_like(table)
    for i in range(nx):
        for j in range(ny):
            out[i, j] = math.log(table[i, j]) - math.log(px[i]) - math.log(py[j])
    return out


def random_table(nx=6, ny=5, seed=0):
    t = np.random.default_rng(seed).random((nx, ny)) + 0.01
    return t / t.sum()


def test_pmi_table_and_mi_match_brute_force():
    t = random_table()
    d = pl.dists.Discrete(t)
    ref = brute_pmi(t)
    np.testing.assert_allclose(d.pmi_table().numpy(), ref, rtol=0, atol=1e-12)
    assert float(d.mutual_information()) == pytest.approx(float((t * ref).sum()), abs=1e-12)
    x, y = torch.tensor([0, 3, 5]), torch.tensor([4, 0, 2])
    np.testing.assert_allclose(d.pmi(x, y).numpy(), ref[[0, 3, 5], [4, 0, 2]], atol=1e-12)
    np.testing.assert_allclose(
        d.pmi_matrix(x, y).numpy(), ref[np.ix_([0, 3, 5], [4, 0, 2])], atol=1e-12
    )


def test_sampling_is_reproducible_and_matches_table():
    t = random_table(4, 3, seed=1)
    d = pl.dists.Discrete(t)
    x1, y1 = d.sample(50_000, seed=7)
    x2, y2 = d.sample(50_000, seed=7)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.dtype == torch.int64
    x3, _ = d.sample(50_000, seed=8)
    assert not torch.equal(x1, x3)
    counts = np.bincount((x1 * 3 + y1).numpy(), minlength=12)
    # Fixed seed: the chi-square p-value is a deterministic number; 1e-3 rejects a wrong sampler
    # (a transposed or unnormalised table gives p ~ 0) while a right one passes with prob 0.999.
    assert chisquare(counts, t.flatten() * counts.sum()).pvalue > 1e-3


def test_zero_cells_give_minus_inf_pmi_and_are_never_sampled():
    t = np.array([[0.5, 0.0], [0.25, 0.25]])
    d = pl.dists.Discrete(t)
    assert d.pmi_table()[0, 1] == -math.inf
    x, y = d.sample(10_000, seed=0)
    assert not ((x == 0) & (y == 1)).any()
    assert math.isfinite(float(d.mutual_information()))


@pytest.mark.parametrize(
    "table, kwargs, message",
    [
        ([[0.5, -0.1], [0.3, 0.3]], {}, "negative entries"),
        ([[0.5, float("nan")], [0.25, 0.25]], {}, "NaN or inf"),
        ([[0.5, float("inf")], [0.25, 0.25]], {}, "NaN or inf"),
        ([[1.0, 1.0], [1.0, 1.0]], {}, "normalize=True"),
        ([[0.5, 0.0], [0.5, 0.0]], {}, "all-zero columns [1]"),
        ([[0.0, 0.0], [0.5, 0.5]], {}, "all-zero rows [0]"),
        ([0.5, 0.5], {}, "must be 2-D"),
        (np.ones((2, 2, 2)) / 8, {}, "must be 2-D"),
        ([[0.0, 0.0], [0.0, 0.0]], {"normalize": True}, "all zeros"),
        ([["a", "b"]], {}, "array of numbers"),
    ],
)
def test_invalid_tables_raise_clear_errors(table, kwargs, message):
    with pytest.raises(InputError) as e:
        pl.dists.Discrete(table, **kwargs)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_normalize_and_drop_empty():
    d = pl.dists.Discrete([[2.0, 1.0], [1.0, 0.0]], normalize=True)
    assert torch.allclose(d.table, torch.tensor([[0.5, 0.25], [0.25, 0.0]], dtype=torch.float64))
    d = pl.dists.Discrete([[0.5, 0.0, 0.2], [0.0, 0.0, 0.0], [0.1, 0.0, 0.2]], drop_empty=True)
    assert d.table.shape == (2, 2)


def test_bad_indices_raise():
    d = pl.dists.Discrete(random_table())
    with pytest.raises(InputError, match=r"\[0, 5\]"):
        d.pmi(torch.tensor([6]), torch.tensor([0]))
    with pytest.raises(InputError, match="integer state indices"):
        d.pmi(torch.tensor([0.5]), torch.tensor([0]))
    with pytest.raises(InputError, match="positive integer"):
        d.sample(0)

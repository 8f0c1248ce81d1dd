"""Latent-class joints: brute-force tables and the rank of exp(PMI) (docs/theory.md T2, T6)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

import pmilab as pl
from pmilab.errors import InputError


def test_table_and_pmi_match_brute_force_sum_over_latent():
    d = pl.dists.random_latent_class(7, 5, 3, seed=4)
    prior, pxz, pyz = d.prior.numpy(), d.px_given_z.numpy(), d.py_given_z.numpy()
    ref = np.zeros((7, 5))
    for z in range(3):
        for i in range(7):
            for j in range(5):
                ref[i, j] += prior[z] * pxz[z, i] * pyz[z, j]
    np.testing.assert_allclose(d.table.numpy(), ref, rtol=0, atol=1e-15)
    pmi_ref = np.log(ref) - np.log(ref.sum(1))[:, None] - np.log(ref.sum(0))[None, :]
    # pmi_table is computed from posteriors (a different formula): agreement <= 1e-9
    np.testing.assert_allclose(d.pmi_table().numpy(), pmi_ref, rtol=0, atol=1e-9)
    post = d.posterior_x().numpy()
    np.testing.assert_allclose(
        post, (prior[None] * pxz.T) / (prior[None] * pxz.T).sum(1, keepdims=True), atol=1e-15
    )


@settings(max_examples=25, deadline=None)
@given(
    nx=st.integers(6, 14),
    ny=st.integers(6, 14),
    k=st.integers(1, 4),
    conc=st.floats(0.2, 1.0),
    seed=st.integers(0, 10_000),
)
def test_exp_pmi_has_rank_at_most_k_while_pmi_is_full_rank(nx, ny, k, conc, seed):
    d = pl.dists.random_latent_class(nx, ny, k, concentration=conc, seed=seed)
    pmi = d.pmi_table()
    assert torch.linalg.matrix_rank(pmi.exp(), rtol=1e-9) <= k
    if k >= 2:
        # log of a rank-k positive matrix is generically full rank, with singular values that
        # decay geometrically (Taylor terms of log(1+u)); in float64 at least k+2 of them stand
        # clear of roundoff: more than a d=k (+1 bias) linear head can represent (T2).
        assert torch.linalg.matrix_rank(pmi, rtol=1e-10) >= min(nx, ny, k + 2)


def test_sample_with_latent_is_reproducible_and_has_the_right_law():
    d = pl.dists.random_latent_class(4, 3, 2, concentration=1.0, seed=1)
    x, y, z = d.sample_with_latent(40_000, seed=3)
    x2, y2, z2 = d.sample_with_latent(40_000, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2) and torch.equal(z, z2)
    counts = np.bincount((x * 3 + y).numpy(), minlength=12)
    assert chisquare(counts, d.table.flatten().numpy() * counts.sum()).pvalue > 1e-3
    counts_z = np.bincount(z.numpy(), minlength=2)
    assert chisquare(counts_z, d.prior.numpy() * len(z)).pvalue > 1e-3


@pytest.mark.parametrize(
    "args, message",
    [
        (([0.5, 0.5], [[1.0, 0.0]], [[1.0], [1.0]]), "one row per latent class"),
        (([0.5, 0.6], [[1.0], [1.0]], [[1.0], [1.0]]), "prior must sum to 1"),
        (([0.5, 0.5], [[0.7, 0.7], [0.5, 0.5]], [[1.0], [1.0]]), "px_given_z must sum to 1"),
        (([1.0, 0.0], [[1.0], [1.0]], [[1.0], [1.0]]), "prior > 0"),
        (([[0.5, 0.5]], [[1.0], [1.0]], [[1.0], [1.0]]), "prior (K,)"),
    ],
)
def test_invalid_latent_models(args, message):
    with pytest.raises(InputError) as e:
        pl.dists.LatentClass(*args)
    assert message in str(e.value)


def test_random_latent_class_validates():
    with pytest.raises(InputError, match="concentration"):
        pl.dists.random_latent_class(4, 4, 2, concentration=0)
    with pytest.raises(InputError, match="k must be a positive integer"):
        pl.dists.random_latent_class(4, 4, 0)


@pytest.mark.parametrize("k", [3, 4, 6])
def test_pmi_is_full_rank_at_the_default_concentration(k):
    """Generic full rank of PMI (T2), shown where dependence is not vanishingly weak: at the
    default concentration every draw is full rank at float64 resolution (rtol 1e-12), while
    exp(PMI) keeps rank <= K."""
    for seed in range(10):
        d = pl.dists.random_latent_class(10, 9, k, seed=seed)
        assert torch.linalg.matrix_rank(d.pmi_table(), rtol=1e-12) == 9
        assert torch.linalg.matrix_rank(d.pmi_table().exp(), rtol=1e-9) <= k

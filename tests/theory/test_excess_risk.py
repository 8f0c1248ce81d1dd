"""pmilab.theory.excess_risk against brute force, and the T3 bound as a property test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from pmilab.dists import random_latent_class
from pmilab.theory import excess_risk as er


def _brute_risk(scores, post, px):
    """Σ_x p(x) Σ_c p(c|x) (−log softmax) with explicit loops (float64 numpy)."""
    s, q, w = (np.asarray(a, dtype=np.float64) for a in (scores, post, px))
    total = 0.0
    for x in range(s.shape[0]):
        lse = np.log(np.exp(s[x] - s[x].max()).sum()) + s[x].max()
        for c in range(s.shape[1]):
            total += w[x] * q[x, c] * (lse - s[x, c])
    return total


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(2, 4))
def test_risk_entropy_and_bias_fit_against_scipy(seed, k):
    d = random_latent_class(6, 5, k, concentration=0.8, seed=seed)
    post, px = d.posterior_x(), d.px
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(6, k)) * 2
    assert er.risk(scores, post, px) == pytest.approx(_brute_risk(scores, post, px), rel=1e-12)
    # Bayes risk: scores = log p(c|x) gives exactly H(C|X)
    assert er.risk(post.log(), post, px) == pytest.approx(
        er.conditional_entropy(post, px), rel=1e-10
    )
    f, b = er.fit_bias(scores, post, px)
    ref = minimize(
        lambda b: _brute_risk(scores + b, post, px),
        np.zeros(k),
        method="BFGS",
        options={"gtol": 1e-10},
    )
    assert f == pytest.approx(ref.fun, abs=1e-9)
    assert f <= ref.fun + 1e-12


def test_epsilon_zero_when_prompts_identify_the_class():
    """Deterministic y|c with disjoint supports: h^PMI_c(x) = log p(c|x)/p(c) + const -> ε = 0."""
    k, nx = 3, 5
    rng = np.random.default_rng(0)
    prior = np.array([0.2, 0.3, 0.5])
    pxz = rng.dirichlet(np.ones(nx), size=k)
    pyz = np.eye(k)  # y = c
    from pmilab.dists import LatentClass

    d = LatentClass(prior, pxz, pyz)
    eps = er.epsilon(d.pmi_table(), d.py_given_z, d.posterior_x(), d.px)
    assert abs(eps) < 1e-10
    assert (
        abs(er.epsilon(d.pmi_table(), d.py_given_z, d.posterior_x(), d.px, ensemble=True)) < 1e-10
    )


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), amp=st.floats(0.0, 2.0), c=st.floats(-3, 3))
def test_t3_bound_holds_for_perturbed_pmi(seed, amp, c):
    """T3: any table within Δ of PMI + C has constructed (and ensemble) excess risk <= ε + 2Δ."""
    d = random_latent_class(8, 7, 3, concentration=0.6, seed=seed)
    pmi = d.pmi_table()
    g = torch.Generator().manual_seed(seed)
    ell = pmi + c + amp * (2 * torch.rand(pmi.shape, generator=g, dtype=torch.float64) - 1)
    r = ell - pmi
    delta = 0.5 * float(r.max() - r.min())
    post, px, q = d.posterior_x(), d.px, d.py_given_z
    for ens in (False, True):
        eps = er.epsilon(pmi, q, post, px, ensemble=ens)
        assert eps >= -1e-10  # Bayes risk is the minimum
        excess = er.constructed_excess_risk(ell, q, post, px, ensemble=ens)
        assert excess <= er.risk_bound(eps, delta) + 1e-10


def test_ensemble_scores_by_loops():
    rng = np.random.default_rng(1)
    ell, q = rng.normal(size=(4, 5)), rng.dirichlet(np.ones(5), size=3)
    got = er.ensemble_scores(ell, q)
    ref = np.array([[np.log((q[c] * np.exp(ell[x])).sum()) for c in range(3)] for x in range(4)])
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    np.testing.assert_allclose(er.prompt_scores(ell, q), ell @ q.T, rtol=1e-12)

"""T3's probe (`experiments.tasks.probe`) against independent references: the population-optimal
multinomial logistic regression fitted by scipy on the exact risk, the Bayes posterior, the slack
formula by hand, the features' dimensions; and T3's checks fail where they must."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import log_softmax
from sklearn.preprocessing import StandardScaler

from pmilab import metrics as M
from pmilab.experiments.claims.t3 import probe_check, two_sided_check
from pmilab.experiments.tasks.catalog import make_dist
from pmilab.experiments.tasks.probe import (
    probe_excess_risk,
    probe_features,
    random_linear_head,
    random_linear_table,
    t3_quantities,
)
from pmilab.theory import excess_risk as er

SPEC = "latent:nx=24,ny=20,k=4,seed=0"


@pytest.fixture(scope="module")
def dist():
    return make_dist(SPEC)


def _population_probe_excess(features: np.ndarray, d) -> float:
    """The exact excess risk of the best multinomial logistic regression on `features`
    (population risk minimised by BFGS, no sampling, no ridge): the reference the fitted probe
    must approach from above."""
    feats = np.column_stack([features, np.ones(len(features))])
    post, px = d.posterior_x().numpy(), d.px.numpy()
    k, p = post.shape[1], feats.shape[1]

    def risk(w: np.ndarray) -> float:
        scores = feats @ w.reshape(p, k)
        return float(-(px[:, None] * post * log_softmax(scores, axis=1)).sum())

    best = minimize(risk, np.zeros(p * k), method="BFGS", options={"gtol": 1e-10})
    return best.fun - er.conditional_entropy(post, px)


def test_bayes_posterior_features_give_zero_excess_within_the_slack(dist):
    """Features that contain the Bayes log posterior: the probe class holds the Bayes
    classifier (W = I), so the fitted probe's excess risk is >= 0 and within its slack."""
    feats = dist.posterior_x().log().numpy()  # (nx, K)
    excess, slack = probe_excess_risk(feats, dist, 200_000, seed=1, w_ref=np.eye(dist.k))
    assert -1e-10 <= excess <= slack
    assert excess < 2e-4


def test_random_features_match_the_population_optimum_and_are_far_from_bayes(dist):
    """Two random features of 24 states cannot carry the posterior: the fitted probe sits at
    the population optimum of that feature class (computed independently by scipy), within
    the slack, and far above both 0 and ε."""
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((dist.nx, 2))
    ref = _population_probe_excess(feats, dist)
    excess, slack = probe_excess_risk(feats, dist, 200_000, seed=2)
    assert ref - 1e-8 <= excess <= ref + slack
    eps = er.epsilon(dist.pmi_table(), dist.py_given_z, dist.posterior_x(), dist.px)
    assert ref > eps + 0.05  # what T3a's control relies on: a visible gap above ε


def test_slack_is_p_over_n_plus_the_standardised_ridge_by_hand(dist):
    rng = np.random.default_rng(3)
    feats = rng.standard_normal((dist.nx, 3)) * np.array([1.0, 2.0, 5.0])
    w_ref = rng.standard_normal((dist.k, 3))
    n = 10_000
    _, slack = probe_excess_risk(feats, dist, n, seed=4, w_ref=w_ref)
    scale = StandardScaler().fit(feats).scale_  # the probe's standardisation
    ridge = float(((w_ref * scale) ** 2).sum())
    assert slack == pytest.approx((3 + 1) * dist.k / n + ridge / (2 * n), rel=1e-12)
    _, bare = probe_excess_risk(feats, dist, n, seed=4)
    assert bare == pytest.approx((3 + 1) * dist.k / n, rel=1e-12)


def test_probe_features_are_the_heads_own_embedding():
    from pmilab.training import fit

    d = make_dist(SPEC)
    common = dict(progress=False, device="cpu", threads=1, steps=3, population=True, seed=0)
    lin = fit(d, similarity="linear", dim=2, normalize=False, bias=True, **common)
    f = probe_features(lin)
    assert f.shape == (d.nx, 2) and f.dtype == np.float64
    with torch.no_grad():
        np.testing.assert_allclose(f, lin.model.enc_x(torch.arange(d.nx)).double().numpy())
    cos = fit(d, similarity="linear", dim=3, normalize=True, **common)
    np.testing.assert_allclose(np.linalg.norm(probe_features(cos), axis=1), 1.0, rtol=1e-12)
    tab = fit(d, similarity="tabular", **common)
    assert probe_features(tab).shape == (d.nx, d.ny)  # a profile: not judged by T3a
    # a trained head's quantities: Δ is the run's own pmi_delta, the bound and tightness follow
    q = t3_quantities(d, lin.logit_table(), f, None, 5000, seed=5)
    assert q["pmi_delta"] == pytest.approx(lin.metrics["pmi_delta"], rel=1e-12)
    assert q["probe_dim"] == 2
    assert q["risk_bound"] == pytest.approx(q["epsilon"] + 2 * q["pmi_delta"], rel=1e-12)
    assert q["probe_tightness"] == pytest.approx(q["probe_excess"] / q["risk_bound"], rel=1e-12)


def test_random_linear_head_is_unrelated_to_pmi_and_violates_eps_alone(dist):
    table, f, g = random_linear_table(dist.nx, dist.ny, 2, 0.5, seed=7)
    np.testing.assert_allclose(table, 0.5 * f @ g.T, rtol=1e-12)
    again, _, _ = random_linear_table(dist.nx, dist.ny, 2, 0.5, seed=7)
    assert (again == table).all()
    p = {"dist": SPEC, "dim": 2, "logit_scale": 0.5, "seed": 7, "probe_seed": 8}
    out = random_linear_head({**p, "probe_n": 100_000})
    pmi = dist.pmi_table()
    delta = float(M.pmi_delta(torch.from_numpy(table), pmi, dist.px[:, None] * dist.py[None, :]))
    assert out["pmi_delta"] == pytest.approx(delta, rel=1e-12) and delta > 1.0
    assert out["probe_dim"] == 2
    # the probe on its own 2-dim embedding: at the population optimum of that class ...
    ref = _population_probe_excess(f, dist)
    assert ref - 1e-8 <= out["probe_excess"] <= ref + out["probe_slack"]
    # ... above ε (the bound without 2Δ FAILs), under ε + 2Δ (the full bound holds)
    assert out["probe_excess"] > out["epsilon"] + out["probe_slack"] + 0.05
    assert out["probe_excess"] <= out["risk_bound"]


def _rows(**cols) -> pd.DataFrame:
    return pd.DataFrame(cols)


def test_t3_checks_fail_on_a_wrong_delta_and_on_the_bound_without_its_2delta_term(dist):
    """T3b's check passes on true Δ's of perturbed tables and fails on a deliberately wrong
    (too small) Δ; T3a's check fails when the bound loses its 2Δ term."""
    pmi = dist.pmi_table()
    post, px, q = dist.posterior_x(), dist.px, dist.py_given_z
    eps = er.epsilon(pmi, q, post, px)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for amp in (0.5, 1.0, 2.0):
        ell = pmi + amp * (2 * torch.rand(pmi.shape, generator=gen, dtype=torch.float64) - 1)
        r = ell - pmi
        rows.append(
            {
                "constructed_excess": er.constructed_excess_risk(ell, q, post, px),
                "epsilon": eps,
                "pmi_delta": 0.5 * float(r.max() - r.min()),
            }
        )
    df = pd.DataFrame(rows)
    assert df.constructed_excess.sub(eps).abs().max() > 1e-3  # the tables do move the risk
    assert two_sided_check(df)[1]
    assert not two_sided_check(df.assign(pmi_delta=df.pmi_delta * 1e-4))[1]
    probe = _rows(probe_excess=[0.30, 0.25], probe_slack=[1e-3, 1e-3])
    eps_s, delta = pd.Series([0.2, 0.2]), pd.Series([1.0, 2.0])
    margin, ok = probe_check(probe, eps_s + 2 * delta)
    assert ok and (margin < 0).all()
    margin, ok = probe_check(probe, eps_s)
    assert not ok and margin.max() == pytest.approx(0.099)

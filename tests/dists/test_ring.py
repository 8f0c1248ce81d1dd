"""RingLatent (docs/theory.md T10): its PMI against brute-force integration over the latent
angle, its MI against Monte Carlo, its sampler against the Rice law of |X|, bad specs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from pmilab.dists import RingLatent, parse_spec
from pmilab.errors import InputError


def brute_log_density(r: float, s: float, *points: np.ndarray) -> float:
    """log of (1/2 pi) int prod_k N(p_k; r u(t), s^2 I_2) dt, by adaptive quadrature over t
    (float64), with the integrand's largest exponent taken out for stability."""
    pts = [np.asarray(p, dtype=np.float64) for p in points]

    def expo(t: float) -> float:
        u = r * np.array([math.cos(t), math.sin(t)])
        return sum(-((p - u) ** 2).sum() / (2 * s**2) for p in pts)

    grid = np.linspace(0, 2 * math.pi, 721)
    top = max(expo(t) for t in grid)
    val, _ = integrate.quad(
        lambda t: math.exp(expo(t) - top), 0, 2 * math.pi, limit=400, epsabs=0, epsrel=1e-12
    )
    norm = len(pts) * math.log(2 * math.pi * s**2)
    return math.log(val / (2 * math.pi)) + top - norm


def brute_pmi(r: float, s: float, x: np.ndarray, y: np.ndarray) -> float:
    return brute_log_density(r, s, x, y) - brute_log_density(r, s, x) - brute_log_density(r, s, y)


coord = st.floats(-6.0, 6.0, allow_nan=False)


@settings(max_examples=25, deadline=None)
@given(
    r=st.floats(0.2, 4.0),
    s=st.floats(0.3, 2.0),
    x=st.tuples(coord, coord),
    y=st.tuples(coord, coord),
)
def test_pmi_matches_brute_force_integration_over_the_angle(r, s, x, y):
    d = RingLatent(r, s)
    xt = torch.tensor([x], dtype=torch.float64)
    yt = torch.tensor([y], dtype=torch.float64)
    ref = brute_pmi(r, s, np.array(x), np.array(y))
    got = float(d.pmi(xt, yt)[0])
    assert got == pytest.approx(ref, abs=1e-8, rel=1e-8)
    assert float(d.pmi_matrix(xt, yt)[0, 0]) == pytest.approx(got, abs=1e-12)


def test_marginal_matches_brute_force_and_pmi_matrix_matches_pmi():
    d = RingLatent(1.5, 1.0)
    x, y = d.sample(7, seed=3)
    for v in x[:3]:
        ref = brute_log_density(1.5, 1.0, v.numpy())
        assert float(d.log_marginal(v[None])[0]) == pytest.approx(ref, abs=1e-9)
    m = d.pmi_matrix(x, y[:5])
    for i in range(7):
        row = d.pmi(x[i].repeat(5, 1), y[:5])
        torch.testing.assert_close(m[i], row, rtol=0, atol=1e-12)


def test_large_arguments_stay_finite():
    """The log domain (log i0e + z): I0(a |x|) overflows float64 above a |x| ~ 713."""
    d = RingLatent(10.0, 0.1)  # a = 1000
    x, y = d.sample(50, seed=0)
    v = d.pmi(x, y)
    assert torch.isfinite(v).all()
    assert float(v.mean()) > 1.0


@pytest.mark.parametrize("r", [1.5, 2.0])
def test_mi_quadrature_agrees_with_monte_carlo(r):
    """E_p[PMI] = I(X;Y): the Monte Carlo mean of the exact PMI on fresh draws, within 4 SE of
    the quadrature value (which uses no sampling), and the quadrature converged in its nodes."""
    d = RingLatent(r, 1.0)
    mi = float(d.mutual_information())
    for nodes in (32, 48):
        assert d.mutual_information_quadrature(nodes) == pytest.approx(mi, abs=1e-6)
    x, y = d.sample(400_000, seed=11)
    v = d.pmi(x, y)
    se = float(v.std()) / math.sqrt(len(v))
    assert abs(float(v.mean()) - mi) < 4 * se
    assert se < 0.002  # the check has power: 4 SE is < 1% of I


def test_product_std_quadrature_agrees_with_monte_carlo():
    d = RingLatent(1.5, 1.0)
    sd = d.product_std()
    x, _ = d.sample(1500, seed=21)
    _, y = d.sample(1500, seed=22)
    g = d.pmi_matrix(x, y)
    assert float(g.std()) == pytest.approx(sd, rel=0.03)  # MC over 1500 x 1500 pairs


def test_sampler_marginals():
    """|X| and |Y| follow the Rice law (nu = r, sigma = s); the angle is uniform; X and Y
    share the latent: Cov(X, Y) = r^2/2 I and Cov(X) = (r^2/2 + s^2) I."""
    r, s = 1.5, 0.8
    d = RingLatent(r, s)
    n = 200_000
    x, y, theta = d.sample_with_latent(n, seed=5)
    rice = stats.rice(b=r / s, scale=s)
    for v in (x, y):
        assert stats.kstest(v.norm(dim=1).numpy(), rice.cdf).pvalue > 1e-3
        ang = torch.atan2(v[:, 1], v[:, 0])
        se = math.sqrt(0.5 / n)
        assert abs(float(ang.cos().mean())) < 4 * se and abs(float(ang.sin().mean())) < 4 * se
    assert stats.kstest(theta.numpy() / (2 * math.pi), "uniform").pvalue > 1e-3
    cxy = (x.T @ y / n).numpy()
    cxx = (x.T @ x / n).numpy()
    np.testing.assert_allclose(cxy, r**2 / 2 * np.eye(2), atol=0.02)
    np.testing.assert_allclose(cxx, (r**2 / 2 + s**2) * np.eye(2), atol=0.02)
    # a wrong radius or noise (by 10%) fails the same Rice check
    assert stats.kstest(x.norm(dim=1).numpy(), stats.rice(b=1.1 * r / s, scale=s).cdf).pvalue < 1e-3


def test_spec_and_sampling():
    d = parse_spec("ring:r=1.5,s=0.5")
    assert isinstance(d, RingLatent) and (d.r, d.s, d.a) == (1.5, 0.5, 6.0)
    assert not d.discrete and d.dim_x == d.dim_y == 2
    a, b = d.sample(10, seed=4), d.sample(10, seed=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert parse_spec("ring").r == 2.0


@pytest.mark.parametrize(
    "spec, message",
    [
        ("ring:r=-1", "ring needs r > 0"),
        ("ring:s=0", "ring needs s > 0"),
        ("ring:r=nan", "finite number r"),
        ("ring:s=inf", "finite number s"),
        ("ring:r=abc", "must be float"),
        ("ring:q=1", "unknown parameter"),
    ],
)
def test_bad_spec_is_one_line(spec, message):
    with pytest.raises(InputError, match=message) as e:
        parse_spec(spec)
    assert "\n" not in str(e.value)


def test_bad_inputs_are_one_line():
    d = RingLatent()
    with pytest.raises(InputError, match="expected x"):
        d.pmi(torch.zeros(3, 3), torch.zeros(3, 2))
    with pytest.raises(InputError, match="NaN or inf"):
        d.pmi_matrix(torch.full((2, 2), math.nan), torch.zeros(3, 2))

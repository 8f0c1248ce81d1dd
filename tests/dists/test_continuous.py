"""Continuous joints against scipy densities and closed forms (docs/theory.md T6)."""

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal, multivariate_t

import pmilab as pl
from pmilab.errors import InputError


def scipy_gaussian_pmi(cov: np.ndarray, dx: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    joint = multivariate_normal(np.zeros(len(cov)), cov).logpdf(np.hstack([x, y]))
    px = multivariate_normal(np.zeros(dx), cov[:dx, :dx]).logpdf(x)
    py = multivariate_normal(np.zeros(len(cov) - dx), cov[dx:, dx:]).logpdf(y)
    return np.atleast_1d(joint - px - py)


@pytest.mark.parametrize(
    "dist",
    [
        pl.dists.Gaussian(1, 1, rho=[0.75]),
        pl.dists.Gaussian(3, 2, rho=[0.9, -0.3]),
        pl.dists.Gaussian.dense(5, 5, 0.5),
    ],
    ids=["bivariate", "canonical-3-2", "dense-5-5"],
)
def test_gaussian_pmi_matches_scipy(dist):
    x, y = dist.sample(50, seed=1)
    cov = dist.cov.numpy()
    ref = scipy_gaussian_pmi(cov, dist.dim_x, x.numpy(), y.numpy())
    np.testing.assert_allclose(dist.pmi(x, y).numpy(), ref, rtol=0, atol=1e-9)
    m = dist.pmi_matrix(x[:7], y[:9]).numpy()
    for i in range(7):
        ref_row = scipy_gaussian_pmi(
            cov, dist.dim_x, np.repeat(x[i : i + 1].numpy(), 9, 0), y[:9].numpy()
        )
        np.testing.assert_allclose(m[i], ref_row, rtol=0, atol=1e-9)


def test_gaussian_mi_reference_values():
    assert float(pl.dists.Gaussian(1, 1, rho=[0.75]).mutual_information()) == pytest.approx(
        0.4133, abs=5e-5
    )
    assert float(pl.dists.Gaussian.dense(5, 5, 0.5).mutual_information()) == pytest.approx(
        0.5928, abs=5e-5
    )
    rho = [0.9, 0.5, 0.1]
    d = pl.dists.Gaussian(4, 3, rho=rho)
    assert float(d.mutual_information()) == pytest.approx(
        -0.5 * sum(math.log(1 - r * r) for r in rho), abs=1e-12
    )


@pytest.mark.parametrize(
    "dist",
    [
        pl.dists.Gaussian(1, 1, rho=[0.75]),
        pl.dists.Gaussian.dense(5, 5, 0.5),
        pl.dists.StudentT(2, 3, df=4.0),
        pl.dists.random_latent_mixture(k=3, dim_x=2, dim_y=2, seed=0),
    ],
    ids=["bivariate", "dense", "studentt", "mixture"],
)
def test_monte_carlo_mi_agrees_within_4_se(dist):
    x, y = dist.sample(100_000, seed=11)
    pmi = dist.pmi(x, y)
    se = float(pmi.std() / math.sqrt(len(pmi)))
    mi = dist.mutual_information()
    total_se = math.hypot(se, mi.se)  # the mixture's MI is itself an MC estimate (other seed)
    assert abs(float(pmi.mean()) - float(mi)) <= 4 * total_se


def test_gaussian_pmi_structure_in_canonical_coordinates():
    """PMI = x^T diag(rho/(1-rho^2)) y - rho^2 |x|^2/(2(1-rho^2)) - same in y + I (T6)."""
    rho = torch.tensor([0.8, 0.3], dtype=torch.float64)
    d = pl.dists.Gaussian(2, 2, rho=rho)
    x, y = d.sample(200, seed=2)
    a = rho / (1 - rho**2)
    q = rho**2 / (2 * (1 - rho**2))
    ref = (x * y * a).sum(1) - (x**2 * q).sum(1) - (y**2 * q).sum(1) + float(d.mutual_information())
    torch.testing.assert_close(d.pmi(x, y), ref, rtol=0, atol=1e-12)
    pmi = d.pmi(*d.sample(200_000, seed=3))
    # Var_p[PMI] = sum rho^2 = 0.73; the SE of a sample variance is ~ sqrt(2/n)*Var*kurtosis factor
    assert float(pmi.var()) == pytest.approx(d.pmi_variance(), abs=0.02)


def test_studentt_pmi_matches_scipy_and_is_uncorrelated():
    d = pl.dists.StudentT(2, 3, df=5.0)
    x, y = d.sample(40, seed=0)
    xy = np.hstack([x.numpy(), y.numpy()])
    ref = (
        multivariate_t(np.zeros(5), np.eye(5), df=5.0).logpdf(xy)
        - multivariate_t(np.zeros(2), np.eye(2), df=5.0).logpdf(x.numpy())
        - multivariate_t(np.zeros(3), np.eye(3), df=5.0).logpdf(y.numpy())
    )
    np.testing.assert_allclose(d.pmi(x, y).numpy(), ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.diag(d.pmi_matrix(x, y).numpy()), ref, rtol=0, atol=1e-9)
    xs, ys = d.sample(100_000, seed=1)
    corr = np.corrcoef(np.hstack([xs.numpy(), ys.numpy()]).T)[:2, 2:]
    assert np.abs(corr).max() < 0.02  # uncorrelated (SE of a correlation ~ 1/sqrt(n) = 0.003)
    assert float(d.mutual_information()) > 0.05  # ... yet dependent


def test_mixture_pmi_matches_scipy_brute_force():
    d = pl.dists.random_latent_mixture(k=3, dim_x=2, dim_y=3, sep=2.0, std=0.7, seed=5)
    x, y = d.sample(30, seed=0)
    pri, mx, my = d.prior.numpy(), d.means_x.numpy(), d.means_y.numpy()
    lx = np.stack(
        [multivariate_normal(mx[z], 0.49 * np.eye(2)).logpdf(x.numpy()) for z in range(3)], 1
    )
    ly = np.stack(
        [multivariate_normal(my[z], 0.49 * np.eye(3)).logpdf(y.numpy()) for z in range(3)], 1
    )
    lp = np.log(pri)[None]
    joint = logsumexp(lp[:, None, :] + lx[:, None, :] + ly[None, :, :], -1)  # (n, m)
    ref = joint - logsumexp(lp + lx, -1)[:, None] - logsumexp(lp + ly, -1)[None, :]
    np.testing.assert_allclose(d.pmi_matrix(x, y).numpy(), ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(d.pmi(x, y).numpy(), np.diag(ref), rtol=0, atol=1e-9)


def test_continuous_sampling_is_reproducible():
    for d in pl.dists.builtin().values():
        a, b = d.sample(100, seed=4), d.sample(100, seed=4)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: pl.dists.Gaussian(1, 1, rho=[1.0]), "|rho| < 1"),
        (lambda: pl.dists.Gaussian(1, 1, rho=[-1.2]), "|rho| < 1"),
        (lambda: pl.dists.Gaussian(2, 2, rho=[0.1, 0.2, 0.3]), "at most min(dim_x, dim_y)"),
        (lambda: pl.dists.Gaussian(2, 2, rho=[float("nan")]), "NaN or inf"),
        (lambda: pl.dists.Gaussian(1, 1, cov=np.eye(3)), "cov must be (2, 2)"),
        (lambda: pl.dists.Gaussian(1, 1, cov=[[1, 2], [2, 1]]), "positive definite"),
        (lambda: pl.dists.Gaussian(1, 1), "exactly one of rho"),
        (lambda: pl.dists.Gaussian(0, 1, rho=[]), "dim_x must be a positive integer"),
        (lambda: pl.dists.Gaussian.dense(2, 2, 1.0), "dense correlation"),
        (lambda: pl.dists.StudentT(2, 2, df=0), "degrees of freedom"),
        (lambda: pl.dists.LatentMixture([1.0], [[0.0]], [[0.0]], std_x=-1), "std_x"),
        (lambda: pl.dists.LatentMixture([0.5, 0.5], [[0.0]], [[0.0]]), "means_x (K, dx)"),
    ],
)
def test_invalid_continuous_parameters(make, message):
    with pytest.raises(InputError) as e:
        make()
    assert message in str(e.value)


def test_wrong_input_shapes_raise():
    d = pl.dists.Gaussian(2, 3, rho=[0.5])
    with pytest.raises(InputError, match=r"expected x \(n, 2\)"):
        d.pmi(torch.zeros(4, 3), torch.zeros(4, 3))
    with pytest.raises(InputError, match="paired inputs"):
        d.pmi(torch.zeros(4, 2), torch.zeros(5, 3))

"""Property tests of docs/theory.md T6 with hypothesis-generated joints and bijections."""

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import pmilab as pl

positive_tables = st.tuples(st.integers(1, 8), st.integers(1, 8)).flatmap(
    lambda s: arrays(np.float64, s, elements=st.floats(1e-3, 1.0))
)


@settings(max_examples=60, deadline=None)
@given(positive_tables)
def test_exact_identities_on_discrete_joints(raw):
    d = pl.dists.Discrete(raw / raw.sum())
    pmi, p = d.pmi_table(), d.table
    prod = d.px[:, None] * d.py[None, :]
    assert abs(float((prod * pmi.exp()).sum()) - 1) < 1e-12
    assert abs(float((p * pmi).sum()) - float(d.mutual_information())) < 1e-12
    assert abs(float((p * (-pmi).exp()).sum()) - 1) < 1e-12
    assert float(d.mutual_information()) >= -1e-12  # I >= 0


@settings(max_examples=30, deadline=None)
@given(positive_tables, st.integers(0, 1000))
def test_discrete_pmi_invariant_under_relabelling(raw, seed):
    base = pl.dists.Discrete(raw / raw.sum())
    fx = pl.dists.Permutation.random(base.nx, seed)
    fy = pl.dists.Permutation.random(base.ny, seed + 1)
    t = pl.dists.Transformed(base, fx, fy)
    x, y = base.sample(200, seed=seed)
    torch.testing.assert_close(t.pmi(fx.forward(x), fy.forward(y)), base.pmi(x, y), rtol=0, atol=0)
    assert (
        abs(float(t.mutual_information()) - float(pl.dists.Discrete(t.table).mutual_information()))
        < 1e-12
    )


def bijections(dim: int):
    elementwise = st.sampled_from([pl.dists.Identity(), pl.dists.Asinh(), pl.dists.HalfCube()])
    affine = st.integers(0, 10_000).map(lambda s: pl.dists.Affine.random(dim, seed=s))
    options = [elementwise, affine]
    if dim >= 2:
        options.append(st.floats(0.05, 2.0).map(pl.dists.Spiral))
    return st.one_of(*options)


BASES = [
    pl.dists.Gaussian(2, 2, rho=[0.8, 0.3]),
    pl.dists.Gaussian(1, 3, rho=[0.6]),
    pl.dists.random_latent_mixture(k=3, dim_x=2, dim_y=2, seed=1),
    pl.dists.StudentT(2, 2, df=3.0),
]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(BASES).flatmap(
        lambda b: st.tuples(st.just(b), bijections(b.dim_x), bijections(b.dim_y))
    ),
    st.integers(0, 999),
)
def test_pmi_invariant_under_bijections(args, seed):
    base, fx, fy = args
    t = pl.dists.Transformed(base, fx, fy)
    x, y = base.sample(64, seed=seed)
    tx, ty = fx.forward(x), fy.forward(y)
    torch.testing.assert_close(fx.inverse(tx), x, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(t.pmi(tx, ty), base.pmi(x, y), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(
        t.pmi_matrix(tx[:5], ty[:6]), base.pmi_matrix(x[:5], y[:6]), rtol=1e-8, atol=1e-8
    )
    # Samples of the transformed law are the transformed samples of the base law.
    sx, sy = t.sample(64, seed=seed)
    torch.testing.assert_close(sx, tx, rtol=0, atol=0)


def mc(v: torch.Tensor) -> tuple[float, float]:
    return float(v.mean()), float(v.std() / math.sqrt(v.numel()))


@settings(max_examples=6, deadline=None)
@given(
    st.sampled_from(
        BASES[:3] + [pl.dists.Transformed(BASES[0], pl.dists.Spiral(0.5), pl.dists.Asinh())]
    ),
    st.integers(0, 99),
)
def test_monte_carlo_identities_on_continuous_joints(dist, seed):
    """E_{p(x)p(y)}[exp PMI] = 1, E_p[PMI] = I, E_p[exp(-PMI)] = 1 within 5 standard errors."""
    x, y = dist.sample(40_000, seed=seed)
    xs, ys = dist.sample(
        40_000, seed=seed + 1000
    )  # independent draws: pairs (x_i, ys_i) ~ p(x)p(y)
    m, se = mc(dist.pmi(x, ys).exp())
    assert abs(m - 1) <= 5 * se
    m, se = mc(dist.pmi(x, y))
    # the mixture's mutual_information() is itself Monte Carlo: compare with its quadrature
    quad = getattr(dist, "mutual_information_quadrature", None)
    mi = quad() if quad else float(dist.mutual_information())
    assert abs(m - mi) <= 5 * se
    m, se = mc((-dist.pmi(x, y)).exp())
    assert abs(m - 1) <= 5 * se

"""T4 data model: exact mismatch fractions, both variants, and the population cross-covariance."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pmilab.errors import InputError
from pmilab.theory.spiked import SpikedModel

f64 = torch.float64

# intra-op threads: tests/theory/conftest.py pins one


def test_bases_are_orthonormal_and_seeded():
    m = SpikedModel(12, 9, 4, basis_seed=3)
    torch.testing.assert_close(m.U1.T @ m.U1, torch.eye(4, dtype=f64))
    torch.testing.assert_close(m.U2.T @ m.U2, torch.eye(4, dtype=f64))
    assert torch.equal(m.U1, SpikedModel(12, 9, 4, basis_seed=3).U1)
    assert not torch.equal(m.U1, SpikedModel(12, 9, 4, basis_seed=4).U1)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 60),
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 1000),
    variant=st.sampled_from(["permute", "redraw"]),
)
def test_mismatch_fraction_and_latents_are_exact(n, p, seed, variant):
    """With σ = 0 the latents are read back exactly: matched rows share z, mismatched do not."""
    m = SpikedModel(7, 6, 3, noise_sd=0.0)
    d = m.sample_pairs(n, p, seed=seed, variant=variant)
    k = int(round(p * n))
    assert int((~d.matched).sum()) == k
    z, zt = d.X @ m.U1, d.Y @ m.U2  # (n, r) latents
    assert torch.allclose(z[d.matched], zt[d.matched], atol=1e-12)
    bad = ~d.matched
    assert not torch.isclose(z[bad], zt[bad], atol=1e-9).all(dim=1).any()
    if (
        variant == "permute" and k >= 2
    ):  # (k = 1 falls back to a redraw) the mismatched x̃ are the same latents, reattached
        a = torch.sort(z[bad].sum(1)).values
        b = torch.sort(zt[bad].sum(1)).values
        torch.testing.assert_close(a, b)


def test_same_seed_same_numbers():
    m = SpikedModel()
    a, b = m.sample_pairs(50, 0.3, seed=5), m.sample_pairs(50, 0.3, seed=5)
    assert torch.equal(a.X, b.X) and torch.equal(a.Y, b.Y)


@pytest.mark.parametrize("variant", ["permute", "redraw"])
def test_population_cross_covariance_is_shrunk_signal(variant):
    """E[x x̃ᵀ] = (1 − p) U1 U2ᵀ; check within 5 Monte Carlo standard errors."""
    m = SpikedModel(6, 5, 2, noise_sd=0.3)
    n, p = 40_000, 0.6
    d = m.sample_pairs(n, p, seed=1, variant=variant)
    est = d.X.T @ d.Y / n
    # Var(x_a x̃_b) = Var x_a Var x̃_b + Cov² ≤ 2(1 + σ²)² ≈ 2.4 for jointly Gaussian entries
    se = (2.4 / n) ** 0.5
    assert float((est - (1 - p) * m.U1 @ m.U2.T).abs().max()) < 5 * se


def test_unpaired_partner_is_the_hidden_pairing():
    m = SpikedModel(8, 7, 3, noise_sd=0.0)
    u = m.sample_unpaired(40, seed=2)
    torch.testing.assert_close(u.X @ m.U1, u.Y[u.partner] @ m.U2)
    assert sorted(u.partner.tolist()) == list(range(40))


@pytest.mark.parametrize("kwargs", [dict(r=0), dict(r=8, d1=5), dict(noise_sd=-1.0)])
def test_bad_model_raises(kwargs):
    with pytest.raises(InputError):
        SpikedModel(**kwargs)


@pytest.mark.parametrize("args", [(1, 0.0), (10, 1.5), (10, -0.1)])
def test_bad_sample_raises(args):
    with pytest.raises(InputError):
        SpikedModel().sample_pairs(*args)
    with pytest.raises(InputError):
        SpikedModel().sample_pairs(10, 0.5, variant="shuffle")

"""Encoders: shapes, the quadratic feature map, and point-set weight conventions."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pmilab.encoders import (
    MLPEncoder,
    PointSetEncoder,
    TableEncoder,
    point_set_table,
    quadratic_features,
)
from pmilab.errors import InputError


@settings(max_examples=20, deadline=None)
@given(b=st.integers(1, 5), k=st.integers(1, 4), seed=st.integers(0, 1000))
def test_quadratic_features_are_all_degree_two_monomials(b, k, seed):
    x = torch.randn(b, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    f = quadratic_features(x)
    want = [x[:, i] for i in range(k)] + [x[:, i] * x[:, j] for i in range(k) for j in range(i, k)]
    torch.testing.assert_close(f, torch.stack(want, dim=1))


def test_linear_quadratic_encoder_represents_squared_norm_exactly():
    """With hidden=() the encoder is linear in [x, x⊗x], so ‖x‖² is one weight vector away
    (the T6 note: what a linear head needs for Gaussian PMI)."""
    enc = MLPEncoder(3, 1, hidden=(), features="quadratic").double()
    with torch.no_grad():
        w = torch.zeros(1, 3 + 6, dtype=torch.float64)
        w[0, [3, 6, 8]] = 1.0  # x0², x1², x2² among (x0x0, x0x1, x0x2, x1x1, x1x2, x2x2)
        enc.net[0].weight.copy_(w)
        enc.net[0].bias.zero_()
    x = torch.randn(7, 3, dtype=torch.float64)
    torch.testing.assert_close(enc(x)[:, 0], (x**2).sum(1))


def test_shapes_and_weight_modes():
    x = torch.tensor([0, 2, 1])
    assert TableEncoder(3, 5)(x).shape == (3, 5)
    assert MLPEncoder(2, 4, hidden=(8, 8))(torch.randn(6, 2)).shape == (6, 4)
    for mode in ("signed", "log_softmax"):
        enc = point_set_table(3, points=4, dim=2, weights=mode)
        pts, w = enc(x)
        assert pts.shape == (3, 4, 2) and w.shape == (3, 4)
        if mode == "log_softmax":
            torch.testing.assert_close(torch.logsumexp(w, -1), torch.zeros(3))
            torch.testing.assert_close(w, torch.full_like(w, -torch.log(torch.tensor(4.0))))
        else:
            assert w.abs().min() > 0  # zero signed weights would be a saddle of WPSE
    mlp = PointSetEncoder(
        MLPEncoder(2, 16, hidden=(8,)), 16, points=3, dim=5, weights="log_softmax"
    )
    pts, w = mlp(torch.randn(4, 2))
    assert pts.shape == (4, 3, 5) and torch.allclose(
        torch.logsumexp(w, -1), torch.zeros(4), atol=1e-6
    )


def test_encoder_errors():
    with pytest.raises(InputError, match="points"):
        point_set_table(3, points=0, dim=2)
    with pytest.raises(InputError, match="weights"):
        point_set_table(3, points=2, dim=2, weights="softplus")
    with pytest.raises(InputError, match="features"):
        MLPEncoder(2, 2, features="cubic")
    with pytest.raises(ValueError, match=r"expected inputs \(B, 2\)"):
        MLPEncoder(2, 2)(torch.randn(3, 5))

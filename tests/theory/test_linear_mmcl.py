"""T4: gradient identity, linear-loss identity, Eckart–Young optimum, sinΘ (float64 references)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pmilab.theory.linear_mmcl import (
    balanced_factors,
    centred_cross_covariance,
    clip_gradients,
    clip_loss,
    contrastive_cross_covariance,
    contrastive_weights,
    eckart_young_optimum,
    linear_loss,
    regulariser,
    row_space,
    similarity,
    sin_theta,
    truncated_svd,
)

f64 = torch.float64

# intra-op threads: tests/theory/conftest.py pins one


def _problem(seed: int, n: int, d1: int, d2: int, r: int, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d1, generator=g, dtype=f64)
    Y = torch.randn(n, d2, generator=g, dtype=f64)
    G1 = scale * torch.randn(r, d1, generator=g, dtype=f64)
    G2 = scale * torch.randn(r, d2, generator=g, dtype=f64)
    return X, Y, G1, G2


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


dims = dict(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 30),
    d1=st.integers(1, 9),
    d2=st.integers(1, 9),
    r=st.integers(1, 5),
    tau=st.floats(0.1, 10.0),
    nu=st.floats(1.0, 4.0),
    rho=st.floats(0.0, 3.0),
    scale=st.floats(0.05, 1.5),
)


@settings(max_examples=60, deadline=None)
@given(**dims)
def test_gradient_identity_matches_autograd(seed, n, d1, d2, r, tau, nu, rho, scale):
    X, Y, G1, G2 = _problem(seed, n, d1, d2, r, scale)
    G1.requires_grad_()
    G2.requires_grad_()
    a1, a2 = torch.autograd.grad(clip_loss(G1, G2, X, Y, tau, nu, rho), (G1, G2))
    c1, c2 = clip_gradients(G1.detach(), G2.detach(), X, Y, tau, nu, rho)
    assert _rel(c1, a1) <= 1e-8 and _rel(c2, a2) <= 1e-8


def test_papers_minus_one_diagonal_disagrees_with_autograd():
    """The test above can fail: the paper's M_ii = ν − 1 is off by O(1) relative error. The
    `printed_diagonal` variant (T4f's control) is exactly that formula, built here by hand."""
    X, Y, G1, G2 = _problem(3, 12, 5, 4, 2, 0.5)
    tau, nu, rho = 1.0, 1.0, 0.5
    s = similarity(G1, G2, X, Y)
    M = -(torch.softmax(s / tau, 1) + torch.softmax(s / tau, 0)) / 2
    M.diagonal().copy_(torch.full((12,), nu - 1.0, dtype=f64))
    S_bad = X.T @ M @ Y / 12
    bad = -G2 @ S_bad.T + rho * G2 @ G2.T @ G1
    bad2 = -G1 @ S_bad + rho * G1 @ G1.T @ G2
    p1, p2 = clip_gradients(G1, G2, X, Y, tau, nu, rho, printed_diagonal=True)
    torch.testing.assert_close(p1, bad, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(p2, bad2, rtol=1e-12, atol=1e-14)
    # only the diagonal differs from the right M, by ν − 1 − (ν − (P^row_ii + P^col_ii)/2)
    p_diag = torch.diagonal(torch.softmax(s / tau, 1) + torch.softmax(s / tau, 0)) / 2
    diff = contrastive_weights(s, tau, nu, printed_diagonal=True) - contrastive_weights(s, tau, nu)
    torch.testing.assert_close(diff, torch.diag(p_diag - 1.0), rtol=1e-12, atol=1e-14)
    G1.requires_grad_()
    (a1,) = torch.autograd.grad(clip_loss(G1, G2, X, Y, tau, nu, rho), (G1,))
    assert _rel(bad, a1) > 1e-2


def test_cross_covariance_at_zero_is_centred_product():
    """At G = 0 every softmax is uniform: S = (1/n) Xᵀ(νI − 11ᵀ/n)Y exactly."""
    X, Y, G1, G2 = _problem(1, 9, 4, 3, 2)
    nu = 1.7
    S = contrastive_cross_covariance(0 * G1, 0 * G2, X, Y, tau=0.7, nu=nu)
    H = nu * torch.eye(9, dtype=f64) - torch.full((9, 9), 1 / 9, dtype=f64)
    torch.testing.assert_close(S, X.T @ H @ Y / 9, rtol=1e-12, atol=1e-14)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 15),
    r=st.integers(1, 4),
    rho=st.floats(0.01, 5.0),
    nu=st.floats(1.0, 3.0),
)
def test_regulariser_and_linear_loss_identities(seed, n, r, rho, nu):
    X, Y, G1, G2 = _problem(seed, n, 5, 4, r)
    assert float(regulariser(G1, G2, rho)) == pytest.approx(
        0.5 * rho * float((G1.T @ G2).pow(2).sum()), rel=1e-12
    )
    # brute-force double loop for the linear loss and for S̄
    s = similarity(G1, G2, X, Y)
    brute = sum(float(s[i, j] - s[i, i]) for i in range(n) for j in range(n) if i != j)
    brute /= n * (n - 1)
    assert float(linear_loss(G1, G2, X, Y)) == pytest.approx(brute, rel=1e-10, abs=1e-12)
    Sbar = sum(torch.outer(X[i], Y[i]) for i in range(n)) / n - sum(
        torch.outer(X[i], Y[j]) for i in range(n) for j in range(n) if i != j
    ) / (n * (n - 1))
    torch.testing.assert_close(centred_cross_covariance(X, Y), Sbar, rtol=1e-10, atol=1e-12)
    lhs = float(linear_loss(G1, G2, X, Y))
    assert lhs == pytest.approx(-float(torch.trace(G1 @ Sbar @ G2.T)), rel=1e-9, abs=1e-11)
    # with the positive scaled by ν: brute force against −tr(G1 S̄_ν G2ᵀ)
    brute_nu = sum(float(s[i, j] - nu * s[i, i]) for i in range(n) for j in range(n) if i != j)
    brute_nu /= n * (n - 1)
    S_nu = centred_cross_covariance(X, Y, nu)
    assert float(linear_loss(G1, G2, X, Y, nu)) == pytest.approx(brute_nu, rel=1e-10, abs=1e-12)
    assert brute_nu == pytest.approx(-float(torch.trace(G1 @ S_nu @ G2.T)), rel=1e-9, abs=1e-11)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000), n=st.integers(3, 40), r=st.integers(1, 4), rho=st.floats(0.1, 5.0)
)
def test_eckart_young_value_and_no_random_encoder_beats_it(seed, n, r, rho):
    X, Y, _, _ = _problem(seed, n, 6, 5, r)
    Sbar = centred_cross_covariance(X, Y)
    W, value = eckart_young_optimum(Sbar, r, rho)
    c = torch.linalg.svdvals(Sbar)[:r]
    assert value == pytest.approx(-float((c**2).sum()) / (2 * rho), rel=1e-12)
    G1, G2 = balanced_factors(W, r)
    torch.testing.assert_close(G1.T @ G2, W, rtol=1e-9, atol=1e-12)
    objective = float(linear_loss(G1, G2, X, Y) + regulariser(G1, G2, rho))
    assert objective == pytest.approx(value, rel=1e-9, abs=1e-12)
    g = torch.Generator().manual_seed(seed + 1)
    # 100 random encoders at scales from 0 to twice the optimum's; also perturbations of the optimum
    scale = torch.rand(100, 1, 1, generator=g, dtype=f64) * 2 * float(c[0] / rho) ** 0.5
    H1 = scale * torch.randn(100, r, 6, generator=g, dtype=f64)
    H2 = scale * torch.randn(100, r, 5, generator=g, dtype=f64)
    H1 = torch.cat([H1, G1 + 0.01 * torch.randn(20, r, 6, generator=g, dtype=f64)])
    H2 = torch.cat([H2, G2 + 0.01 * torch.randn(20, r, 5, generator=g, dtype=f64)])
    Wr = H1.transpose(1, 2) @ H2  # (120, 6, 5) = G1ᵀG2 of each draw
    # linear loss + R = −⟨S̄, W⟩ + (ρ/2)‖W‖² (the identity tested above)
    objectives = -(Wr * Sbar).sum((1, 2)) + 0.5 * rho * Wr.pow(2).sum((1, 2))
    assert float(objectives.min()) >= value - 1e-12


def test_gd_on_linear_loss_reaches_eckart_young():
    """Independent route: autograd GD on linear loss + R hits −(1/(2ρ))Σc² and the same row space
    for two values of ρ (the learned row space does not depend on ρ, T4)."""
    X, Y, _, _ = _problem(7, 40, 5, 4, 2)
    Sbar = centred_cross_covariance(X, Y)
    U, _, _ = truncated_svd(Sbar, 2)
    for rho in (0.5, 2.0):
        g = torch.Generator().manual_seed(0)
        G1 = (0.1 * torch.randn(2, 5, generator=g, dtype=f64)).requires_grad_()
        G2 = (0.1 * torch.randn(2, 4, generator=g, dtype=f64)).requires_grad_()
        for _ in range(1500):
            loss = linear_loss(G1, G2, X, Y) + regulariser(G1, G2, rho)
            g1, g2 = torch.autograd.grad(loss, (G1, G2))
            with torch.no_grad():
                G1 -= 0.5 * rho * g1
                G2 -= 0.5 * rho * g2
        _, value = eckart_young_optimum(Sbar, 2, rho)
        assert float(loss.detach()) == pytest.approx(value, rel=1e-6)
        assert sin_theta(row_space(G1.detach()), U) < 1e-5


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), d=st.integers(2, 12), data=st.data())
def test_sin_theta_matches_principal_angles(seed, d, data):
    r = data.draw(st.integers(1, d - 1))
    g = torch.Generator().manual_seed(seed)
    A, _ = torch.linalg.qr(torch.randn(d, r, generator=g, dtype=f64))
    B, _ = torch.linalg.qr(torch.randn(d, r, generator=g, dtype=f64))
    angles = scipy.linalg.subspace_angles(A.numpy(), B.numpy())
    assert sin_theta(A, B) == pytest.approx(float(np.sqrt((np.sin(angles) ** 2).sum())), abs=1e-9)
    # basis invariance: any invertible mix of the columns spans the same subspace
    mix = torch.randn(r, r, generator=g, dtype=f64) + 3 * torch.eye(r, dtype=f64)
    assert sin_theta(row_space((A @ mix).T), A) < 1e-6


def test_sin_theta_extremes():
    eye = torch.eye(6, dtype=f64)
    assert sin_theta(eye[:, :2], eye[:, :2]) == 0.0
    assert sin_theta(eye[:, :2], eye[:, 2:4]) == pytest.approx(2**0.5)

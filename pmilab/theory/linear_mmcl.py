"""Linear multimodal contrastive learning as an SVD (docs/theory.md T4; Nakada et al. 2023).

Conventions (all float64 torch tensors):
    X  (n, d1)  first modality, one sample per row (the paper's x_i)
    Y  (n, d2)  second modality (the paper's x̃_i); row i of X and row i of Y form pair i
    G1 (r, d1), G2 (r, d2) linear encoders;  s_ij = x_iᵀ G1ᵀ G2 x̃_j,  s = X G1ᵀ G2 Yᵀ  (n, n)

The CLIP loss in the paper's scaling (T4):
    L = 1/(2n) Σ_i [−ν s_ii + τ log Σ_j e^{s_ij/τ}] + 1/(2n) Σ_j [−ν s_jj + τ log Σ_i e^{s_ij/τ}]
        + (ρ/2)‖G1ᵀG2‖_F²
and its gradient is an SVD step on the contrastive cross-covariance S = (1/n) Xᵀ M Y with
M_ij = −(P^row_ij + P^col_ij)/2 (i ≠ j) and M_ii = ν − (P^row_ii + P^col_ii)/2. (The paper's
Prop. 8.1 prints "−1" for the diagonal softmax term; the form here is the one autograd agrees with.)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "similarity",
    "regulariser",
    "clip_loss",
    "contrastive_weights",
    "contrastive_cross_covariance",
    "clip_gradients",
    "linear_loss",
    "centred_cross_covariance",
    "truncated_svd",
    "eckart_young_optimum",
    "balanced_factors",
    "row_space",
    "sin_theta",
]


def similarity(G1: Tensor, G2: Tensor, X: Tensor, Y: Tensor) -> Tensor:
    """s_ij = x_iᵀ G1ᵀ G2 x̃_j, shape (n, m) for X (n, d1) and Y (m, d2)."""
    return (X @ G1.T) @ (Y @ G2.T).T


def regulariser(G1: Tensor, G2: Tensor, rho: float) -> Tensor:
    """R = (ρ/2)‖G1ᵀG2‖_F² (T4), computed through the r×r Gram matrices (no d1×d2 product)."""
    # ‖G1ᵀG2‖_F² = tr(G2ᵀ G1 G1ᵀ G2) = ⟨G1G1ᵀ, G2G2ᵀ⟩
    return 0.5 * rho * ((G1 @ G1.T) * (G2 @ G2.T)).sum()


def clip_loss(
    G1: Tensor,
    G2: Tensor,
    X: Tensor,
    Y: Tensor,
    tau: float = 1.0,
    nu: float = 1.0,
    rho: float = 0.0,
) -> Tensor:
    """The CLIP loss of T4 (τ times the symmetric cross-entropy, positive scaled by ν) plus R."""
    s = similarity(G1, G2, X, Y)  # (n, n)
    n = s.shape[0]
    diag = torch.diagonal(s)
    row = (-nu * diag + tau * torch.logsumexp(s / tau, dim=1)).sum()
    col = (-nu * diag + tau * torch.logsumexp(s / tau, dim=0)).sum()
    return (row + col) / (2 * n) + regulariser(G1, G2, rho)


def contrastive_weights(
    s: Tensor, tau: float = 1.0, nu: float = 1.0, printed_diagonal: bool = False
) -> Tensor:
    """M (n, n) of T4: M = ν I − (P^row + P^col)/2, P the row / column softmaxes of s/τ.

    printed_diagonal=True gives the paper's Prop. 8.1 as printed, M_ii = ν − 1 in place of
    ν − (P^row_ii + P^col_ii)/2: a wrong formula, kept as T4f's negative control (a gradient
    check that cannot tell it from the right one has no power).
    """
    p_row = torch.softmax(s / tau, dim=1)
    p_col = torch.softmax(s / tau, dim=0)
    m = -(p_row + p_col) / 2
    if printed_diagonal:
        m.diagonal().fill_(-1.0)
    m.diagonal().add_(nu)
    return m


def contrastive_cross_covariance(
    G1: Tensor,
    G2: Tensor,
    X: Tensor,
    Y: Tensor,
    tau: float = 1.0,
    nu: float = 1.0,
    printed_diagonal: bool = False,
) -> Tensor:
    """S = (1/n) Xᵀ M Y, shape (d1, d2), at the current encoders (T4); `printed_diagonal` as
    in `contrastive_weights`."""
    m = contrastive_weights(similarity(G1, G2, X, Y), tau, nu, printed_diagonal)
    return X.T @ (m @ Y) / X.shape[0]


def clip_gradients(
    G1: Tensor,
    G2: Tensor,
    X: Tensor,
    Y: Tensor,
    tau: float = 1.0,
    nu: float = 1.0,
    rho: float = 0.0,
    printed_diagonal: bool = False,
) -> tuple[Tensor, Tensor]:
    """Closed-form gradient of `clip_loss` (T4): ∇G1 = −G2Sᵀ + ρG2G2ᵀG1, ∇G2 = −G1S + ρG1G1ᵀG2.

    printed_diagonal=True uses the paper's printed M_ii = ν − 1 (wrong; T4f's control)."""
    S = contrastive_cross_covariance(G1, G2, X, Y, tau, nu, printed_diagonal)  # (d1, d2)
    g1 = -G2 @ S.T + rho * (G2 @ G2.T) @ G1  # (r, d1)
    g2 = -G1 @ S + rho * (G1 @ G1.T) @ G2  # (r, d2)
    return g1, g2


def linear_loss(G1: Tensor, G2: Tensor, X: Tensor, Y: Tensor, nu: float = 1.0) -> Tensor:
    """(1/(n(n−1))) Σ_{i≠j} (s_ij − ν s_ii), from the n×n similarity matrix (T4; ν=1 there)."""
    s = similarity(G1, G2, X, Y)
    n = s.shape[0]
    off = s.sum() - torch.diagonal(s).sum()  # Σ_{i≠j} s_ij
    return (off - nu * (n - 1) * torch.diagonal(s).sum()) / (n * (n - 1))


def centred_cross_covariance(X: Tensor, Y: Tensor, nu: float = 1.0) -> Tensor:
    """S̄ (d1, d2) with linear_loss = −tr(G1 S̄ G2ᵀ):
    S̄ = (ν/n) Σ_i x_i x̃_iᵀ − Σ_{i≠j} x_i x̃_jᵀ / (n(n−1))."""
    n = X.shape[0]
    paired = X.T @ Y  # Σ_i x_i x̃_iᵀ
    all_pairs = torch.outer(X.sum(0), Y.sum(0))  # Σ_{i,j} x_i x̃_jᵀ
    return nu * paired / n - (all_pairs - paired) / (n * (n - 1))


def truncated_svd(S: Tensor, r: int) -> tuple[Tensor, Tensor, Tensor]:
    """Top-r singular triplets of S (d1, d2): U (d1, r), c (r,) descending, V (d2, r)."""
    U, c, Vh = torch.linalg.svd(S, full_matrices=False)
    return U[:, :r], c[:r], Vh[:r].T


def eckart_young_optimum(S: Tensor, r: int, rho: float) -> tuple[Tensor, float]:
    """Minimiser W* = SVD_r(S)/ρ of −⟨S, W⟩ + (ρ/2)‖W‖_F² over rank-≤r W, and its value.

    With S = S̄ this is the regularised linear loss, W = G1ᵀG2 (T4); the minimum is
    −(1/(2ρ)) Σ_{j≤r} c_j², i.e. the objective tr(G1S̄G2ᵀ) − R peaks at +(1/(2ρ)) Σ c_j².
    """
    U, c, V = truncated_svd(S, r)
    W = (U * c) @ V.T / rho  # (d1, d2)
    return W, float(-(c**2).sum() / (2 * rho))


def balanced_factors(W: Tensor, r: int) -> tuple[Tensor, Tensor]:
    """G1 (r, d1), G2 (r, d2) with G1ᵀG2 = W for a rank-≤r W, split as √c on each side."""
    U, c, V = truncated_svd(W, r)
    root = c.clamp_min(0).sqrt()
    return root[:, None] * U.T, root[:, None] * V.T


def row_space(G: Tensor, r: int | None = None) -> Tensor:
    """Orthonormal basis (d, r) of the row space of an encoder G (r, d): the learned features."""
    r = G.shape[0] if r is None else r
    _, _, Vh = torch.linalg.svd(G, full_matrices=False)
    return Vh[:r].T


def sin_theta(U_hat: Tensor, U: Tensor) -> float:
    """‖sin Θ(Û, U)‖_F = sqrt(r − ‖ÛᵀU‖_F²) for orthonormal bases Û, U of shape (d, r) (T4).

    Computed as ‖Û − U(UᵀÛ)‖_F (equal for orthonormal bases), which stays accurate down to
    ~1e-15 where the subtraction r − ‖ÛᵀU‖² would bottom out at ~1e-8.
    """
    return float((U_hat - U @ (U.T @ U_hat)).norm())

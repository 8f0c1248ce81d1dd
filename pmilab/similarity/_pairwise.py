"""Pairwise point-set reductions shared by the KME and WPSE heads (THEORY.md T2).

Contract (owned here, used by `similarity.kme` and `similarity.wpse`):

    kme_logits(px, wx, py, wy, sigma)            -> (B, C)
        logsumexp_{a,b}( wx[i,a] + wy[j,b] - ||px[i,a] - py[j,b]||^2 / (2 sigma^2) )
    wpse_logits(px, wx, py, wy, sigma, alpha_linear, alpha_kernel, kernel="gaussian")  -> (B, C)
        1/(M N) sum_{a,b} wx[i,a] wy[j,b] [ alpha_linear <px_a, py_b> + alpha_kernel k(px_a, py_b) ]
        k = exp(-||u-v||^2/(2 sigma^2))  ("gaussian")  or  1/sqrt(1 + ||u-v||^2/sigma^2)  ("imq")

Shapes: px (B, M, d), wx (B, M), py (C, N, d), wy (C, N). sigma, alpha_* are python floats or
0-dim tensors (they may require grad). The `*_naive` versions materialise (B, C, M, N) and are
the float64 references the tests and benchmarks compare against.

This first version is the naive reference; the memory-bounded chunked version replaces the
public functions without changing their signatures.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sq_dists(px: Tensor, py: Tensor) -> Tensor:
    """(B, C, M, N) squared distances ||px[i,a] - py[j,b]||^2, materialised."""
    diff = px[:, None, :, None, :] - py[None, :, None, :, :]  # (B, C, M, N, d)
    return diff.pow(2).sum(-1)


def kme_logits_naive(px: Tensor, wx: Tensor, py: Tensor, wy: Tensor, sigma) -> Tensor:
    s2 = torch.as_tensor(sigma, dtype=px.dtype, device=px.device) ** 2
    z = wx[:, None, :, None] + wy[None, :, None, :] - sq_dists(px, py) / (2 * s2)
    return torch.logsumexp(z.flatten(2), dim=-1)


def kernel_values(d2: Tensor, sigma, kernel: str) -> Tensor:
    s2 = torch.as_tensor(sigma, dtype=d2.dtype, device=d2.device) ** 2
    if kernel == "gaussian":
        return torch.exp(-d2 / (2 * s2))
    if kernel == "imq":
        return torch.rsqrt(1 + d2 / s2)
    raise ValueError(f"unknown kernel {kernel!r}; use 'gaussian' or 'imq'")


def wpse_logits_naive(
    px: Tensor,
    wx: Tensor,
    py: Tensor,
    wy: Tensor,
    sigma,
    alpha_linear=0.0,
    alpha_kernel=1.0,
    kernel: str = "gaussian",
) -> Tensor:
    m, n = px.shape[1], py.shape[1]
    k = kernel_values(sq_dists(px, py), sigma, kernel)  # (B, C, M, N)
    lin = torch.einsum("bmd,cnd->bcmn", px, py)
    mix = alpha_linear * lin + alpha_kernel * k
    return torch.einsum("bm,cn,bcmn->bc", wx, wy, mix) / (m * n)


# Public names: the heads call these. Replaced by the chunked implementation (same signatures).
kme_logits = kme_logits_naive
wpse_logits = wpse_logits_naive

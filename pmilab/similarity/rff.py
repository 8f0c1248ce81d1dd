"""Random Fourier features for the Gaussian kernel (Rahimi & Recht), used by WPSE's RFF mode.

    k(u, v) = exp(−‖u − v‖²/(2σ²)) ≈ φ(u)·φ(v),  φ(u) = sqrt(2/D) cos(W u / σ + b),
    W (D, d) ~ N(0, I),  b (D,) ~ U[0, 2π).

W is drawn for σ = 1 and divided by σ at use, so σ stays differentiable. Each product
2cos(·)cos(·) lies in [−2, 2], so the estimate of one kernel value has standard deviation at
most 1/sqrt(D) (used as the tolerance scale in the tests).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def draw_rff(
    num_features: int, dim: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """(W (D, d), b (D,)) in float64 on CPU, reproducible from `generator`."""
    w = torch.randn(num_features, dim, generator=generator, dtype=torch.float64)
    b = torch.rand(num_features, generator=generator, dtype=torch.float64) * (2 * math.pi)
    return w, b


def rff_map(points: Tensor, w: Tensor, b: Tensor, sigma: Tensor | float) -> Tensor:
    """φ(points): (..., d) -> (..., D) with φ(u)·φ(v) ≈ exp(−‖u − v‖²/(2σ²))."""
    w = w.to(points)
    b = b.to(points)
    proj = points @ w.T / sigma + b  # (..., D)
    return math.sqrt(2.0 / w.shape[0]) * torch.cos(proj)

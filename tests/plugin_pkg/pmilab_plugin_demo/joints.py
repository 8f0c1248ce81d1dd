"""A continuous joint with exact PMI: a noisy linear channel, y = slope·x + noise·ε.

x ~ N(0, I_d) and ε ~ N(0, I_d) independent, so each coordinate pair is a bivariate Gaussian
with correlation ρ = slope / sqrt(slope² + noise²), and

    PMI(x, y) = Σ_i log N(y_i; slope·x_i, noise²) − log N(y_i; 0, slope² + noise²),
    I(X; Y)   = (d/2) log((slope² + noise²) / noise²).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _log_normal(v: Tensor, var: float) -> Tensor:
    return -0.5 * (v * v / var + math.log(2 * math.pi * var))


class NoisyChannel:
    """y = slope·x + noise·ε in `dim` dimensions (float64 throughout)."""

    discrete = False

    def __init__(self, dim: int = 2, slope: float = 1.5, noise: float = 0.5) -> None:
        self.dim_x = self.dim_y = int(dim)
        self.slope, self.noise = float(slope), float(noise)

    def __repr__(self) -> str:
        return f"NoisyChannel(dim={self.dim_x}, slope={self.slope}, noise={self.noise})"

    def sample(self, n: int, seed: int | None = 0) -> tuple[Tensor, Tensor]:
        g = torch.Generator()
        g.manual_seed(0 if seed is None else int(seed))
        x = torch.randn(n, self.dim_x, generator=g, dtype=torch.float64)
        eps = torch.randn(n, self.dim_y, generator=g, dtype=torch.float64)
        return x, self.slope * x + self.noise * eps

    def pmi_matrix(self, x, y) -> Tensor:
        x = torch.as_tensor(x, dtype=torch.float64)[:, None, :]  # (n, 1, d)
        y = torch.as_tensor(y, dtype=torch.float64)[None, :, :]  # (1, m, d)
        cond = _log_normal(y - self.slope * x, self.noise**2)
        marg = _log_normal(y, self.slope**2 + self.noise**2)
        return (cond - marg).sum(-1)  # (n, m)

    def pmi(self, x, y) -> Tensor:
        x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
        cond = _log_normal(y - self.slope * x, self.noise**2)
        return (cond - _log_normal(y, self.slope**2 + self.noise**2)).sum(-1)  # (n,)

    def mutual_information(self) -> float:
        return 0.5 * self.dim_x * math.log((self.slope**2 + self.noise**2) / self.noise**2)


def noisy_channel() -> NoisyChannel:
    """The joint `--dist pmilab_plugin_demo.joints:noisy_channel` names (default parameters)."""
    return NoisyChannel()

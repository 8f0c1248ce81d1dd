"""Gradient-descent training of the linear encoders G1, G2 on the CLIP loss of T4.

Each step uses the closed-form gradient of `linear_mmcl.clip_gradients`, i.e. it is one step of
the power-iteration-like map G1 ← G1 + η(G2Sᵀ − ρG2G2ᵀG1) on the current contrastive
cross-covariance S (docs/theory.md T4). Plain full-batch GD in float64, deterministic given the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pmilab.errors import InputError
from pmilab.theory.linear_mmcl import clip_gradients, clip_loss

__all__ = ["ClipGDConfig", "ClipFit", "fit_clip_gd"]


@dataclass(frozen=True)
class ClipGDConfig:
    """GD hyper-parameters. `init_scale` is the entry sd of the Gaussian init of G1 and G2.

    Defaults: τ=1, ν=1, ρ=1, lr=0.5, at most 3000 steps, stopping when the gradient norm
    relative to ‖G‖ drops below `tol`, init entries N(0, 0.01²). lr=0.5 is stable while the top
    singular value of S stays below ~2 (curvature ≈ 2c₁), which holds for unit-variance latents.
    """

    tau: float = 1.0
    nu: float = 1.0
    rho: float = 1.0
    lr: float = 0.5
    steps: int = 3000
    tol: float = 1e-7
    init_scale: float = 0.01

    def __post_init__(self) -> None:
        if self.tau <= 0 or self.rho <= 0 or self.lr <= 0:
            raise InputError("tau, rho and lr must be > 0.")
        if self.nu < 1:
            raise InputError(f"nu={self.nu} must be >= 1 (T4 scales the positive term by ν ≥ 1).")
        if self.steps < 1:
            raise InputError(f"steps={self.steps} must be >= 1.")


@dataclass(frozen=True)
class ClipFit:
    """Result of `fit_clip_gd`: encoders, steps taken, final relative gradient norm, loss."""

    G1: Tensor  # (r, d1)
    G2: Tensor  # (r, d2)
    steps: int
    grad_norm: float
    loss: float


def fit_clip_gd(
    X: Tensor,
    Y: Tensor,
    r: int,
    cfg: ClipGDConfig = ClipGDConfig(),
    seed: int = 0,
    init: tuple[Tensor, Tensor] | None = None,
) -> ClipFit:
    """Full-batch GD on `clip_loss` from a small random init (or from `init`), T4.

    Stops after `cfg.steps` steps or once ‖(∇G1, ∇G2)‖_F / ‖(G1, G2)‖_F < cfg.tol.
    """
    if X.shape[0] != Y.shape[0]:
        raise InputError(f"X has {X.shape[0]} rows and Y {Y.shape[0]}: pairs need equal counts.")
    if init is None:
        gen = torch.Generator().manual_seed(seed)
        G1 = cfg.init_scale * torch.randn(r, X.shape[1], generator=gen, dtype=torch.float64)
        G2 = cfg.init_scale * torch.randn(r, Y.shape[1], generator=gen, dtype=torch.float64)
    else:
        G1, G2 = init[0].clone(), init[1].clone()
    rel = float("inf")
    step = 0
    while step < cfg.steps:
        step += 1
        g1, g2 = clip_gradients(G1, G2, X, Y, cfg.tau, cfg.nu, cfg.rho)
        G1 = G1 - cfg.lr * g1
        G2 = G2 - cfg.lr * g2
        gnorm = float(torch.sqrt(g1.pow(2).sum() + g2.pow(2).sum()))
        rel = gnorm / max(float(torch.sqrt(G1.pow(2).sum() + G2.pow(2).sum())), 1e-300)
        if rel < cfg.tol:
            break
    loss = float(clip_loss(G1, G2, X, Y, cfg.tau, cfg.nu, cfg.rho))
    return ClipFit(G1, G2, step, rel, loss)

"""The WPSE head: weighted point sets compared with a kernel (docs/theory.md T2).

    ℓ(x, y) = t · (1/(M·N)) Σ_{a,b} wx_a wy_b [ α₁⟨u_a, v_b⟩ + α₂ k(u_a, v_b) ]

with signed weights wx (B, M), wy (C, N), k Gaussian exp(−‖u−v‖²/(2σ²)) or inverse multiquadric
1/sqrt(1 + ‖u−v‖²/σ²), and a learnable logit scale t as in CLIP (clamped to `logit_cap`).
As M grows it approximates any continuous PMI uniformly (universality, T2); with one point,
weight 1, α₁ = 1 and α₂ = 0 it is CLIP without normalisation.

Two modes, as in the public WPSE code:
- exact (default): the kernel sum over all point pairs (`_pairwise.wpse_logits`);
- random Fourier features (`rff_features=D`, Gaussian kernel only): k(u, v) ≈ φ(u)·φ(v), so
  ℓ = t/(MN) [α₁⟨Σ wx_a u_a, Σ wy_b v_b⟩ + α₂⟨Σ wx_a φ(u_a), Σ wy_b φ(v_b)⟩], linear in B·C.
  The features are redrawn at every training step (`redraw`, called by the trainer) and fixed
  in evaluation (a buffer drawn once from `rff_seed`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pmilab.errors import InputError
from pmilab.similarity import _pairwise, _pairwise_small, base
from pmilab.similarity.base import (
    DEFAULT_LOGIT_CAP,
    DEFAULT_TEMPERATURE,
    LogitScale,
    SimilarityHead,
    check_point_sets,
    check_positive,
)
from pmilab.similarity.rff import draw_rff, rff_map

KERNELS = ("gaussian", "imq")


class WPSE(SimilarityHead):
    """Weighted point set embedding similarity; see the module docstring.

    sigma:         kernel bandwidth σ > 0 (fixed unless learn_sigma).
    alpha_linear:  weight α₁ of the linear kernel ⟨u, v⟩.
    alpha_kernel:  weight α₂ of the universal kernel.
    kernel:        "gaussian" or "imq".
    temperature, logit_cap, learn_scale: the logit scale t, as in `Linear`.
    rff_features:  None for the exact kernel, or D random Fourier features (needs `dim`).
    dim:           point dimension d (only needed in RFF mode).
    """

    def __init__(
        self,
        sigma: float = 0.5,
        alpha_linear: float = 0.0,
        alpha_kernel: float = 1.0,
        kernel: str = "gaussian",
        temperature: float = DEFAULT_TEMPERATURE,
        logit_cap: float | None = DEFAULT_LOGIT_CAP,
        learn_scale: bool = True,
        learn_sigma: bool = False,
        rff_features: int | None = None,
        dim: int | None = None,
        rff_seed: int = 0,
    ) -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise InputError(f"unknown WPSE kernel {kernel!r}; use one of {', '.join(KERNELS)}")
        self.kernel = kernel
        self.alpha_linear = float(alpha_linear)
        self.alpha_kernel = float(alpha_kernel)
        init = torch.tensor(math.log(check_positive(sigma, "sigma")))
        if learn_sigma:
            self.log_sigma = nn.Parameter(init)
        else:
            self.register_buffer("log_sigma", init)
        self.scale = LogitScale(temperature, logit_cap, learn_scale)
        self.rff_features = None if rff_features is None else int(rff_features)
        self._train_rff: tuple[Tensor, Tensor] | None = None
        if self.rff_features is not None:
            self._init_rff(dim, rff_seed)

    def _init_rff(self, dim: int | None, seed: int) -> None:
        if self.rff_features < 1:
            raise InputError(f"rff_features must be >= 1, got {self.rff_features}")
        if self.kernel != "gaussian":
            raise InputError("random Fourier features are implemented for the gaussian kernel only")
        if dim is None or int(dim) < 1:
            raise InputError("WPSE with rff_features needs the point dimension: pass dim=d")
        self.dim = int(dim)
        g = torch.Generator().manual_seed(int(seed))
        w, b = draw_rff(self.rff_features, self.dim, g)
        self.register_buffer("rff_w", w.float())
        self.register_buffer("rff_b", b.float())

    @property
    def sigma(self) -> Tensor:
        return self.log_sigma.exp()

    def redraw(self, generator: torch.Generator | None = None) -> None:
        """Fresh features for the next training step (RFF mode only; eval keeps the buffer)."""
        if self.rff_features is not None:
            w, b = draw_rff(self.rff_features, self.dim, generator)
            self._train_rff = (w.to(self.rff_w), b.to(self.rff_b))

    def _rff(self) -> tuple[Tensor, Tensor]:
        if self.training and self._train_rff is not None:
            return self._train_rff
        return self.rff_w, self.rff_b

    def _rff_embed(self, p: Tensor, w: Tensor) -> Tensor:
        """(B, M, d), (B, M) -> (B, d + D): the weighted point-set sums of both kernels, / M."""
        rw, rb = self._rff()
        m = p.shape[1]
        lin = torch.einsum("bm,bmd->bd", w, p) * math.sqrt(abs(self.alpha_linear))
        phi = rff_map(p, rw, rb, self.sigma)  # (B, M, D)
        ker = torch.einsum("bm,bmD->bD", w, phi) * math.sqrt(abs(self.alpha_kernel))
        return torch.cat([lin, ker], dim=-1) / m

    def _rff_signs(self, e: Tensor) -> Tensor:
        d = e.shape[-1] - self.rff_features
        sign = torch.ones(e.shape[-1], dtype=e.dtype, device=e.device)
        sign[:d] = math.copysign(1.0, self.alpha_linear)
        sign[d:] = math.copysign(1.0, self.alpha_kernel)
        return e * sign

    def logit_matrix(self, px: Tensor, wx: Tensor, py: Tensor, wy: Tensor) -> Tensor:
        check_point_sets(px, wx, py, wy, paired=False)
        if self.rff_features is not None:
            ex, ey = self._rff_embed(px, wx), self._rff_embed(py, wy)  # (B, d+D), (C, d+D)
            return self.scale() * (self._rff_signs(ex) @ ey.T)
        small = base.use_reference(px, py)
        if small and self.kernel == "gaussian":  # the fused path of the replicate trainer
            s = _pairwise_small.wpse_logits_small(
                px, wx, py, wy, self.sigma, self.alpha_linear, self.alpha_kernel
            )
        else:
            fn = _pairwise.wpse_logits_naive if small else _pairwise.wpse_logits
            s = fn(px, wx, py, wy, self.sigma, self.alpha_linear, self.alpha_kernel, self.kernel)
        return self.scale() * s  # (B, C)

    def paired_logits(self, px: Tensor, wx: Tensor, py: Tensor, wy: Tensor) -> Tensor:
        check_point_sets(px, wx, py, wy, paired=True)
        if self.rff_features is not None:
            ex, ey = self._rff_embed(px, wx), self._rff_embed(py, wy)
            return self.scale() * (self._rff_signs(ex) * ey).sum(-1)
        m, n = px.shape[1], py.shape[1]
        d2 = _pairwise.pair_sq_dists(px[:, :, None, :], py[:, None, :, :])  # (B, M, N)
        k = _pairwise.kernel_values(d2, self.sigma, self.kernel)
        lin = torch.einsum("bmd,bnd->bmn", px, py)
        mix = self.alpha_linear * lin + self.alpha_kernel * k
        s = torch.einsum("bm,bn,bmn->b", wx, wy, mix) / (m * n)
        return self.scale() * s  # (B,)

    def batch_refusal(self) -> str | None:
        if self.rff_features is None:
            return None
        return "WPSE with rff_features redraws its random features per seed at every step"

    def clamp_(self) -> None:
        self.scale.clamp_()

    def no_decay_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    @classmethod
    def head_inputs(cls, dim: int, points: int):
        """M points of size d with signed weights (`pmilab.interfaces.HeadInputs`)."""
        from pmilab.interfaces import HeadInputs  # here: this file stays importable on its own

        return HeadInputs.point_set(points, dim, "signed")

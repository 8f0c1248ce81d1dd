"""Build the (encoder_x, encoder_y, head) triple that `fit` trains, from a distribution.

Discrete inputs get free tables (`TableEncoder`, `point_set_table`); continuous inputs get
MLPs (`MLPEncoder`, possibly as the backbone of a `PointSetEncoder`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pmilab.encoders import MLPEncoder, PointSetEncoder, TableEncoder, point_set_table
from pmilab.errors import InputError
from pmilab.runtime.precision import encoder_autocast
from pmilab.similarity import KME, WPSE, Linear, Tabular
from pmilab.training.config import FitConfig


def _as_tuple(out) -> tuple[Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


class PairModel(nn.Module):
    """ℓ(x, y) = head(enc_x(x), enc_y(y)); `logit_matrix` (B, C) and `paired_logits` (B,).

    With `amp=True` the encoders run under bf16 autocast (docs/architecture.md: on CUDA) and their
    outputs are cast back to the head's dtype, so the similarity and its logsumexp stay fp32.
    """

    def __init__(
        self, enc_x: nn.Module, enc_y: nn.Module, head: nn.Module, amp: bool = False
    ) -> None:
        super().__init__()
        self.enc_x, self.enc_y, self.head = enc_x, enc_y, head
        self.amp = amp

    def _encode(self, enc: nn.Module, v: Tensor) -> tuple[Tensor, ...]:
        if not self.amp:
            return _as_tuple(enc(v))
        dtype = next(self.head.parameters(), torch.empty(0)).dtype
        with encoder_autocast(v.device.type, True):
            out = _as_tuple(enc(v))
        return tuple(o.to(dtype) if o.is_floating_point() else o for o in out)

    def logit_matrix(self, x: Tensor, y: Tensor) -> Tensor:
        return self.head.logit_matrix(*self._encode(self.enc_x, x), *self._encode(self.enc_y, y))

    def paired_logits(self, x: Tensor, y: Tensor) -> Tensor:
        return self.head.paired_logits(*self._encode(self.enc_x, x), *self._encode(self.enc_y, y))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.logit_matrix(x, y)


def build_head(cfg: FitConfig, nx: int | None = None, ny: int | None = None) -> nn.Module:
    if cfg.similarity == "tabular":
        return Tabular(nx, ny)
    if cfg.similarity == "linear":
        return Linear(cfg.normalize, cfg.bias, cfg.temperature, cfg.logit_cap, cfg.learn_scale)
    if cfg.similarity == "kme":
        return KME(sigma=cfg.sigma)
    return WPSE(
        sigma=cfg.sigma,
        alpha_linear=cfg.alpha_linear,
        alpha_kernel=cfg.alpha_kernel,
        kernel=cfg.kernel,
        temperature=cfg.temperature,
        logit_cap=cfg.logit_cap,
        learn_scale=cfg.learn_scale,
        rff_features=cfg.rff_features,
        dim=cfg.dim,
        rff_seed=cfg.seed,
    )


def _discrete_encoder(n: int, cfg: FitConfig) -> nn.Module:
    if cfg.similarity == "tabular":
        return nn.Identity()
    if cfg.similarity == "linear":
        return TableEncoder(n, cfg.dim)
    weights = "log_softmax" if cfg.similarity == "kme" else "signed"
    return point_set_table(n, cfg.points, cfg.dim, weights)


def _continuous_encoder(in_dim: int, cfg: FitConfig) -> nn.Module:
    if cfg.similarity == "linear":
        return MLPEncoder(in_dim, cfg.dim, cfg.hidden, cfg.features)
    out = cfg.points * (cfg.dim + 1)
    backbone = MLPEncoder(in_dim, out, cfg.hidden, cfg.features)
    weights = "log_softmax" if cfg.similarity == "kme" else "signed"
    return PointSetEncoder(backbone, out, cfg.points, cfg.dim, weights, project=False)


def build_model(dist, cfg: FitConfig) -> PairModel:
    """Encoders and head for `dist`, initialised from the global RNG (seed it first)."""
    if dist.discrete:
        head = build_head(cfg, dist.nx, dist.ny)
        return PairModel(_discrete_encoder(dist.nx, cfg), _discrete_encoder(dist.ny, cfg), head)
    if cfg.similarity == "tabular":
        raise InputError(
            "similarity 'tabular' needs a discrete joint table; use linear, wpse or kme"
        )
    return PairModel(
        _continuous_encoder(dist.dim_x, cfg), _continuous_encoder(dist.dim_y, cfg), build_head(cfg)
    )

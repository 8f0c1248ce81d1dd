"""Build the (encoder_x, encoder_y, head) triple that `fit` trains, from a distribution.

The head comes from its spec (`pmilab.registry`: a built-in name, an import path, an entry point
or an object) and declares what it needs (`HeadInputs`). Discrete inputs get free tables of
that (`encoders.table_encoder`); continuous inputs get MLPs (`encoders.mlp_encoder`).
"""

from __future__ import annotations

from dataclasses import fields

import torch
from torch import Tensor, nn

from pmilab import registry
from pmilab.encoders import mlp_encoder, table_encoder
from pmilab.errors import InputError
from pmilab.interfaces import HeadInputs
from pmilab.runtime.precision import encoder_autocast
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


def head_settings(cfg: FitConfig, dist) -> dict:
    """What a head may take from a fit (`pmilab.registry`'s contract, matched by name): every
    FitConfig field, `nx` and `ny` of a discrete joint, and `rff_seed`, the run's seed (a
    head's own random features, e.g. WPSE's)."""
    out = {
        f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in ("similarity", "extra")
    }
    out["rff_seed"] = cfg.seed
    if dist.discrete:
        out.update(nx=dist.nx, ny=dist.ny)
    return out


def head_inputs(cfg: FitConfig, dist) -> HeadInputs:
    """What the configured head needs from each encoder (`pmilab.interfaces.HeadInputs`)."""
    return registry.head_inputs(cfg.similarity, head_settings(cfg, dist))


def build_model(dist, cfg: FitConfig) -> PairModel:
    """Encoders and head for `dist`, initialised from the global RNG (seed it first): the
    encoders give what the head declares (`encoders.table_encoder`, `encoders.mlp_encoder`)."""
    registry.check_joint(dist)
    settings = head_settings(cfg, dist)
    inputs = registry.head_inputs(cfg.similarity, settings)
    if dist.discrete:
        head = registry.build_head(cfg.similarity, settings)
        return PairModel(table_encoder(dist.nx, inputs), table_encoder(dist.ny, inputs), head)
    if inputs.kind == "indices":
        raise InputError(
            f"similarity {registry.head_spec(cfg.similarity)!r} takes raw state indices, so it "
            "needs a discrete joint table; use linear, wpse or kme"
        )
    enc_x = mlp_encoder(dist.dim_x, inputs, cfg.hidden, cfg.features)
    enc_y = mlp_encoder(dist.dim_y, inputs, cfg.hidden, cfg.features)
    return PairModel(enc_x, enc_y, registry.build_head(cfg.similarity, settings))

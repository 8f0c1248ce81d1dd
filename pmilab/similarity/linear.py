"""The CLIP head: ℓ = t·⟨f(x), h(y)⟩ (+ b), docs/theory.md T2 (rank ≤ d, or d+1 with a bias) and T5.

With `normalize=True` (CLIP) the features are L2-normalised, so |ℓ - b| <= t and the logit
scale cap bounds the reachable PMI range (T5). With `normalize=False` the head is a plain
bilinear form; t is then redundant with the encoder's scale but harmless.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pmilab.interfaces import HeadInputs
from pmilab.similarity.base import (
    DEFAULT_LOGIT_CAP,
    DEFAULT_TEMPERATURE,
    LogitScale,
    SimilarityHead,
    check_vectors,
)


class Linear(SimilarityHead):
    """ℓ(x, y) = t·⟨f(x), h(y)⟩ + b on features zx (B, d), zy (C, d).

    normalize:   L2-normalise f and h first (cosine similarity, as CLIP).
    bias:        add a learnable scalar b (initialised at 0).
    temperature: the logit scale starts at t = 1/temperature (CLIP: 0.07).
    logit_cap:   t is clamped to <= logit_cap after each optimizer step (`clamp_`); None: no cap.
                 Default 100 as in CLIP; lower it to study a capped PMI range (T5).
    learn_scale: False keeps t fixed at 1/temperature.
    """

    def __init__(
        self,
        normalize: bool = True,
        bias: bool = False,
        temperature: float = DEFAULT_TEMPERATURE,
        logit_cap: float | None = DEFAULT_LOGIT_CAP,
        learn_scale: bool = True,
    ) -> None:
        super().__init__()
        self.normalize = bool(normalize)
        self.scale = LogitScale(temperature, logit_cap, learn_scale)
        self.bias = nn.Parameter(torch.zeros(())) if bias else None

    def _features(self, zx: Tensor, zy: Tensor) -> tuple[Tensor, Tensor]:
        if self.normalize:
            return F.normalize(zx, dim=-1), F.normalize(zy, dim=-1)
        return zx, zy

    def _finish(self, s: Tensor) -> Tensor:
        s = self.scale() * s
        return s + self.bias if self.bias is not None else s

    def logit_matrix(self, zx: Tensor, zy: Tensor) -> Tensor:
        check_vectors(zx, zy, paired=False)
        fx, fy = self._features(zx, zy)
        return self._finish(fx @ fy.T)  # (B, C)

    def paired_logits(self, zx: Tensor, zy: Tensor) -> Tensor:
        check_vectors(zx, zy, paired=True)
        fx, fy = self._features(zx, zy)
        return self._finish((fx * fy).sum(-1))  # (B,)

    def clamp_(self) -> None:
        self.scale.clamp_()

    def no_decay_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    @classmethod
    def head_inputs(cls, dim: int, points: int) -> HeadInputs:
        """One vector of size d per input (normalised here when `normalize`, not by the encoder)."""
        return HeadInputs.vector(dim)

"""Encoders: inputs -> what a similarity head consumes (docs/architecture.md data flow).

- `TableEncoder`: an embedding table for discrete states, (B,) int64 -> (B, d).
- `MLPEncoder`: an MLP for continuous inputs, (B, in_dim) -> (B, d). With
  `features="quadratic"` it appends every degree-2 monomial x_i x_j (i <= j) to the input, so
  even a purely linear map (`hidden=()`) carries ‖x‖²-type terms. That is what the Gaussian
  case of T2/T6 needs: PMI = x̂ᵀ D ŷ + q(x) + q'(y) + c with quadratic q, q', so
  `MLPEncoder(dx, d, hidden=(), features="quadratic")` with a `Linear(normalize=False,
  bias=True)` head represents Gaussian PMI exactly once d >= rank(D) + 2 (one coordinate
  carries q(x) against a constant on the other side, one the reverse). A ReLU/GELU MLP on raw
  inputs can only approximate the quadratic terms.
- `PointSetEncoder`: a backbone feature -> M points (B, M, d) and M weights (B, M), signed
  for WPSE (`weights="signed"`) or log-softmax log-weights for KME (`weights="log_softmax"`).
  `point_set_table(n, ...)` builds one whose backbone is a free table (each state owns its
  points and weights).

`table_encoder` and `mlp_encoder` build the encoder a head declares it needs
(`pmilab.interfaces.HeadInputs`: raw indices, a vector of size D, or M points of size d with
their weights' preparation and, if asked, unit-norm outputs); `prepare_weights` is the one rule
for a point set's weights, shared with pretraining and the T7 pixel task. Nothing here knows a
head by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pmilab.errors import InputError
from pmilab.interfaces import WEIGHT_MODES, HeadInputs


def _check_size(value: int, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class TableEncoder(nn.Module):
    """(B,) int64 states in [0, n) -> (B, dim) rows of a free table, initialised N(0, 1/dim)."""

    def __init__(self, n: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Embedding(_check_size(n, "number of states"), _check_size(dim, "dim"))
        nn.init.normal_(self.table.weight, std=1.0 / math.sqrt(dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.table(x)


def quadratic_features(x: Tensor) -> Tensor:
    """(B, k) -> (B, k + k(k+1)/2): x followed by x_i x_j for i <= j."""
    i, j = torch.triu_indices(x.shape[1], x.shape[1], device=x.device)
    return torch.cat([x, x[:, i] * x[:, j]], dim=1)


class MLPEncoder(nn.Module):
    """(B, in_dim) -> (B, out_dim): [quadratic features] -> (Linear -> GELU) × hidden -> Linear."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (128, 128),
        features: str = "raw",
    ) -> None:
        super().__init__()
        if features not in ("raw", "quadratic"):
            raise InputError(f"features must be 'raw' or 'quadratic', got {features!r}")
        self.in_dim = _check_size(in_dim, "input dimension")
        self.features = features
        width = self.in_dim + (
            self.in_dim * (self.in_dim + 1) // 2 if features == "quadratic" else 0
        )
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(width, _check_size(h, "hidden width")), nn.GELU()]
            width = h
        layers.append(nn.Linear(width, _check_size(out_dim, "output dimension")))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"expected inputs (B, {self.in_dim}), got {tuple(x.shape)}")
        if self.features == "quadratic":
            x = quadratic_features(x)
        return self.net(x)


class PointSetEncoder(nn.Module):
    """backbone(x) (B, F) -> points (B, M, d) and weights (B, M).

    project=True puts a Linear(F, M·(d+1)) after the backbone; project=False takes the backbone
    output as the M·(d+1) numbers directly (a free table). Weights: "signed" are used raw
    (WPSE), "log_softmax" are normalised log-weights, logsumexp_a w_a = 0 (KME). normalize=True
    puts every point on the unit sphere.
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        points: int,
        dim: int,
        weights: str = "signed",
        project: bool = True,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if weights not in WEIGHT_MODES:
            raise InputError(f"weights must be one of {WEIGHT_MODES}, got {weights!r}")
        self.points, self.dim = _check_size(points, "points"), _check_size(dim, "dim")
        self.weights, self.normalize = weights, bool(normalize)
        self.backbone = backbone
        out = self.points * (self.dim + 1)
        self.proj = nn.Linear(feature_dim, out) if project else None
        if not project and feature_dim != out:
            raise ValueError(
                f"project=False needs feature_dim == M*(d+1) = {out}, got {feature_dim}"
            )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.backbone(x)
        if self.proj is not None:
            h = self.proj(h)
        h = h.view(h.shape[0], self.points, self.dim + 1)
        pts, w = h[..., : self.dim], h[..., self.dim]  # (B, M, d), (B, M)
        if self.normalize:
            pts = F.normalize(pts, dim=-1)
        return pts, prepare_weights(w, self.weights)


def prepare_weights(w: Tensor, mode: str, signed_offset: float = 0.0) -> Tensor:
    """Raw weights (B, M) as the head declared them: "log_softmax" -> normalised log-weights;
    "signed" -> as given, plus `signed_offset` (1 where the raw outputs start at zero, so the
    first logits are not all zero: pretraining)."""
    if mode == "log_softmax":
        return F.log_softmax(w, dim=-1)
    return signed_offset + w if signed_offset else w


class L2Normalize(nn.Module):
    """(B, D) -> (B, D) on the unit sphere: the output of an encoder whose head asks for it."""

    def forward(self, z: Tensor) -> Tensor:
        return F.normalize(z, dim=-1)


def table_encoder(n: int, inputs: HeadInputs) -> nn.Module:
    """A free table over n discrete states giving what the head declares: the indices
    themselves, a vector row (`TableEncoder`) or a point set (`point_set_table`)."""
    if inputs.kind == "indices":
        return nn.Identity()
    if inputs.kind == "vector":
        enc = TableEncoder(n, inputs.dim)
        return nn.Sequential(enc, L2Normalize()) if inputs.normalize else enc
    return point_set_table(n, inputs.points, inputs.dim, inputs.weights, inputs.normalize)


def mlp_encoder(
    in_dim: int, inputs: HeadInputs, hidden: Sequence[int], features: str = "raw"
) -> nn.Module:
    """An MLP over (B, in_dim) inputs giving what the head declares: a vector (B, D), or
    M·(d+1) outputs read as a point set (`PointSetEncoder`, project=False)."""
    if inputs.kind == "indices":
        raise InputError("a head that takes raw state indices needs a discrete joint table")
    if inputs.kind == "vector":
        enc = MLPEncoder(in_dim, inputs.dim, hidden, features)
        return nn.Sequential(enc, L2Normalize()) if inputs.normalize else enc
    out = inputs.width
    backbone = MLPEncoder(in_dim, out, hidden, features)
    return PointSetEncoder(
        backbone, out, inputs.points, inputs.dim, inputs.weights, False, inputs.normalize
    )


def point_set_table(
    n: int, points: int, dim: int, weights: str = "signed", normalize: bool = False
) -> PointSetEncoder:
    """A free point set per discrete state: points N(0, 1/d); signed weights N(0, 1) (zero
    weights would be a saddle of WPSE), log-weights 0 (uniform) for KME."""
    m, d = _check_size(points, "points"), _check_size(dim, "dim")
    table = nn.Embedding(_check_size(n, "number of states"), m * (d + 1))
    with torch.no_grad():
        w = table.weight.view(-1, m, d + 1)
        w[..., :d].normal_(std=1.0 / math.sqrt(d))
        if weights == "signed":
            w[..., d].normal_()
        else:
            w[..., d].zero_()
    return PointSetEncoder(table, m * (d + 1), m, d, weights, project=False, normalize=normalize)

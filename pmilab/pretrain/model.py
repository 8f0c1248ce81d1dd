"""The image-text model: two towers, two output heads and one similarity head (T2, T7).

`ModelConfig` fixes the architecture; `build_model(cfg)` rebuilds it from a checkpoint.
`encode_image` / `encode_text` return tuples: `(z,)` (B, d) for linear, `(points, weights)`
((B, M, d), (B, M)) for WPSE and KME. Points are L2-normalised for the point-set heads (the
kernel bandwidth is then on a fixed scale); KME weights go through a log-softmax, so each
input is a probability-weighted point set (a kernel mean embedding); WPSE weights stay signed,
as 1 + the head's output (near-zero raw weights would start WPSE with near-zero logits, and in
a first smoke run it trailed far behind: zero-shot 0.44 against 0.97 for linear and KME).
`forward(images, ids, mask)` returns the (local-slab) contrastive loss, so DDP sees every
parameter, the similarity's logit scale and bandwidth included, inside its forward.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pmilab.errors import InputError
from pmilab.pretrain.towers import PointHead, PointSetHead, TextTower, image_tower
from pmilab.runtime.distributed import local_infonce
from pmilab.runtime.precision import encoder_autocast
from pmilab.similarity import KME, WPSE, Linear

SIMILARITIES = ("linear", "wpse", "kme")


@dataclass
class ModelConfig:
    similarity: str = "linear"
    tower: str = "cnn"  # image tower: cnn | vit
    vocab: int = 64
    context: int = 16
    width: int = 64
    dim: int = 32  # point / embedding dimension
    points: int = 4  # M, for wpse / kme
    image_size: int = 32
    sigma: float = 0.5  # kernel bandwidth of wpse / kme (kme learns it)

    def __post_init__(self) -> None:
        if self.similarity not in SIMILARITIES:
            raise InputError(
                f"--similarity must be one of {', '.join(SIMILARITIES)}, got {self.similarity!r}"
            )
        if self.tower not in ("cnn", "vit"):
            raise InputError(f"--tower must be 'cnn' or 'vit', got {self.tower!r}")


def similarity_head(cfg: ModelConfig) -> nn.Module:
    if cfg.similarity == "linear":
        return Linear(normalize=True)
    if cfg.similarity == "wpse":
        return WPSE(sigma=cfg.sigma, alpha_linear=1.0, alpha_kernel=1.0)
    return KME(sigma=cfg.sigma)


class ImageTextModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.image = image_tower(cfg.tower, cfg.width, cfg.image_size)
        self.text = TextTower(cfg.vocab, cfg.context, cfg.width)
        if cfg.similarity == "linear":
            self.image_head = PointHead(cfg.width, cfg.dim)
            self.text_head = PointHead(cfg.width, cfg.dim)
        else:
            self.image_head = PointSetHead(cfg.width, cfg.dim, cfg.points)
            self.text_head = PointSetHead(cfg.width, cfg.dim, cfg.points)
        self.similarity = similarity_head(cfg)

    def _finish(self, out: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Cast to fp32 (the logsumexp stays out of bf16) and normalise point sets."""
        dtype = torch.float64 if out[0].dtype == torch.float64 else torch.float32
        out = tuple(t.to(dtype) for t in out)
        if self.cfg.similarity == "linear":
            return out
        points, weights = out
        points = F.normalize(points, dim=-1)
        if self.cfg.similarity == "kme":
            weights = torch.log_softmax(weights, dim=-1)
        else:  # signed WPSE weights around 1, so the initial score is a mean kernel similarity
            weights = 1.0 + weights
        return points, weights

    def encode_image(self, images: Tensor) -> tuple[Tensor, ...]:
        return self._finish(self.image_head(*self.image(images)))

    def encode_text(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
        return self._finish(self.text_head(*self.text(ids, mask)))

    def logit_matrix(self, *parts: Tensor) -> Tensor:
        """(B, C) logits of image outputs against text outputs (parts: image's then text's)."""
        return self.similarity.logit_matrix(*parts)

    def forward(self, images: Tensor, ids: Tensor, mask: Tensor, autocast: bool = False) -> Tensor:
        """Contrastive loss of the local batch (the local slab under DDP; distributed.py)."""
        with encoder_autocast(images.device.type, autocast):
            img_out = self.image_head(*self.image(images))
            txt_out = self.text_head(*self.text(ids, mask))
        img, txt = self._finish(img_out), self._finish(txt_out)
        return local_infonce(self.logit_matrix, img, txt)

    def logit_scale(self) -> float:
        """The similarity's temperature parameter for the log: t (linear, wpse) or 1/sigma^2."""
        sim = self.similarity
        if hasattr(sim, "scale"):
            return float(sim.scale().detach())
        return float(sim.sigma.detach() ** -2)


def build_model(cfg: ModelConfig | dict) -> ImageTextModel:
    if isinstance(cfg, dict):
        cfg = ModelConfig(**cfg)
    return ImageTextModel(cfg)


def model_config_dict(cfg: ModelConfig) -> dict:
    return asdict(cfg)

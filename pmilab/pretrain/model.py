"""The image-text model: two towers, two output heads and one similarity head (T2, T7).

Towers: the small built-in ones (towers.py: cnn, vit, transformer) or transformers ones
(hf_towers.py: hf-vit, clip vision, clip text); the heads sit on top of any of them.

`ModelConfig` (config.py: the `ModelFields` that PretrainConfig shares, the vocabulary and the
built towers' transformers configs) fixes the architecture; `build_model(cfg)` rebuilds it from a
checkpoint, whose `similarity` is the head's spec (`pmilab.registry`: a built-in name,
`package.module:Name` or an entry point). The output heads give what the similarity head
declares (`HeadInputs`): `encode_image` / `encode_text` return `(z,)` (B, D) for a vector head
(linear), or
`(points, weights)` ((B, M, d), (B, M)) for a point-set head (WPSE, KME). Points are
L2-normalised for every point-set head (the kernel bandwidth is then on a fixed scale);
"log_softmax" weights (KME) go through a log-softmax, so each input is a probability-weighted
point set (a kernel mean embedding); "signed" weights (WPSE) are 1 + the output head's output
(its weight outputs start at zero, and near-zero raw weights would start WPSE with near-zero
logits: in a first smoke run it trailed far behind, zero-shot 0.44 against 0.97 for linear and
KME). The similarity head is built from `ModelConfig`'s fields and `HEAD_SETTINGS`.
`forward(images, ids, mask)` returns the (local-slab) contrastive loss, so DDP sees every
parameter, the similarity's logit scale and bandwidth included, inside its forward.
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pmilab import registry
from pmilab.encoders import prepare_weights
from pmilab.errors import InputError
from pmilab.pretrain import hf_towers, weights_openclip
from pmilab.pretrain.config import ModelConfig  # defined with the fields it shares (config.py)
from pmilab.pretrain.towers import (
    PointHead,
    PointSetHead,
    TextTower,
    image_tower,
)
from pmilab.runtime.distributed import local_infonce
from pmilab.runtime.precision import encoder_autocast

__all__ = ["ImageTextModel", "ModelConfig", "build_model", "from_openclip", "head_inputs"]

# What pretraining offers a head beyond ModelConfig's fields (`pmilab.registry`'s contract):
# a WPSE head mixes its linear and Gaussian kernels equally here (fit's default is kernel only).
HEAD_SETTINGS = {"alpha_linear": 1.0, "alpha_kernel": 1.0}
# ModelConfig fields that describe no head: never offered to one.
NOT_HEAD_SETTINGS = ("similarity", "image_hf", "text_hf")


def head_settings(cfg) -> dict:
    """What the similarity head may take from pretraining: ModelConfig's fields (dim, points,
    sigma, ...) and HEAD_SETTINGS, matched by name (`pmilab.registry`). `cfg` is a ModelConfig,
    or a PretrainConfig (those of its fields a ModelConfig has)."""
    names = [f.name for f in fields(ModelConfig) if f.name not in NOT_HEAD_SETTINGS]
    return {**HEAD_SETTINGS, **{k: getattr(cfg, k) for k in names if hasattr(cfg, k)}}


def similarity_head(cfg: ModelConfig) -> nn.Module:
    return registry.build_head(cfg.similarity, head_settings(cfg))


def head_inputs(cfg):
    """What the similarity head needs from the output heads (`pmilab.interfaces.HeadInputs`);
    pretraining encodes images and text, so a head on raw state indices is refused. `cfg`: a
    ModelConfig, or the PretrainConfig `train` checks before reading any data."""
    try:
        inputs = registry.head_inputs(cfg.similarity, head_settings(cfg))
    except InputError as e:
        raise InputError(f"--similarity: {e}") from None
    if inputs.kind == "indices":
        raise InputError(
            f"--similarity {cfg.similarity!r} takes raw state indices (a discrete joint table); "
            "pretraining needs a head on vectors or point sets, such as linear, wpse or kme"
        )
    return inputs


class ImageTextModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # an open_clip / OpenAI file: its towers' configs now, its weights once all is built
        weights = weights_openclip.prepare(cfg) if cfg.pretrained_weights else None
        if cfg.pretrained_image and cfg.tower not in hf_towers.IMAGE_KINDS:
            cfg.tower = hf_towers.pretrained_kind(cfg.pretrained_image, text=False)
        if cfg.pretrained_text:
            cfg.text_tower = "clip"
        if cfg.tower in hf_towers.IMAGE_KINDS:
            self.image = hf_towers.build_image(cfg)
            if cfg.image_size and cfg.image_size != self.image.image_size:
                raise InputError(
                    f"--image-size {cfg.image_size}: the pretrained image tower in "
                    f"{cfg.pretrained_image} takes {self.image.image_size} px images (its "
                    f"config.json); drop --image-size or pass --image-size {self.image.image_size}"
                )
            cfg.tower, cfg.image_hf = self.image.kind, self.image.hf_config()
            cfg.width, cfg.image_size = self.image.width, self.image.image_size
        else:
            self.image = image_tower(
                cfg.tower,
                cfg.width,
                cfg.image_size,
                cfg.image_layers,
                cfg.image_heads,
                cfg.patch_size,
            )
        if cfg.text_tower == "clip":
            self.text = hf_towers.build_text(cfg)
            cfg.text_hf, cfg.text_width = self.text.hf_config(), self.text.width
        else:
            self.text = TextTower(
                cfg.vocab, cfg.context, cfg.text_width, cfg.text_layers, cfg.text_heads
            )
        wi, wt = self.image.width, self.text.width
        self.inputs = inputs = head_inputs(cfg)
        if inputs.kind == "vector":
            self.image_head = PointHead(wi, inputs.dim)
            self.text_head = PointHead(wt, inputs.dim)
        else:
            self.image_head = PointSetHead(wi, inputs.dim, inputs.points, heads_for(wi))
            self.text_head = PointSetHead(wt, inputs.dim, inputs.points, heads_for(wt))
        self.similarity = similarity_head(cfg)
        if weights is not None:
            weights_openclip.load_openclip(self, weights, cfg.pretrained_weights)

    def enable_grad_checkpointing(self) -> None:
        """Activation checkpointing in the transformers towers (InputError if there is none)."""
        towers = [t.model for t in (self.image, self.text) if hasattr(t, "hf_config")]
        if not towers:
            raise InputError(
                "--grad-checkpointing needs a transformers tower: --tower hf-vit or clip, "
                "--text-tower clip, or --model ViT-B-16"
            )
        for t in towers:
            hf_towers.enable_checkpointing(t)

    def _finish(self, out: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Cast to fp32 (the logsumexp stays out of bf16), normalise point sets (and vectors
        whose head asks for it) and prepare the weights as the head declares them."""
        dtype = torch.float64 if out[0].dtype == torch.float64 else torch.float32
        out = tuple(t.to(dtype) for t in out)
        if self.inputs.kind == "vector":
            return (F.normalize(out[0], dim=-1),) if self.inputs.normalize else out
        points, weights = out
        points = F.normalize(points, dim=-1)
        # signed weights around 1, so the initial score is a mean kernel similarity
        return points, prepare_weights(weights, self.inputs.weights, signed_offset=1.0)

    def encode_image(self, images: Tensor) -> tuple[Tensor, ...]:
        return self._finish(self.image_head(*self.image(images)))

    def encode_text(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
        return self._finish(self.text_head(*self.text(ids, mask)))

    def encode_pair(self, images: Tensor, ids: Tensor, mask: Tensor, autocast: bool = False):
        """(image outputs, text outputs): towers under `autocast`, heads' outputs in fp32/fp64."""
        with encoder_autocast(images.device.type, autocast):
            img_out = self.image_head(*self.image(images))
            txt_out = self.text_head(*self.text(ids, mask))
        return self._finish(img_out), self._finish(txt_out)

    def logit_matrix(self, *parts: Tensor) -> Tensor:
        """(B, C) logits of image outputs against text outputs (parts: image's then text's)."""
        return self.similarity.logit_matrix(*parts)

    def forward(
        self,
        images: Tensor,
        ids: Tensor,
        mask: Tensor,
        autocast: bool = False,
        cached: list | None = None,
        slot: int = 0,
    ) -> Tensor:
        """Contrastive loss of the local batch (the local slab under DDP; distributed.py).

        With `cached` (a list of (image outputs, text outputs) of k micro-batches, no grad), this
        micro-batch's fresh outputs replace entry `slot` and the loss is that of all k
        micro-batches together (exact accumulation, accum.py).
        """
        img, txt = self.encode_pair(images, ids, mask, autocast)
        if cached is not None:
            img = splice([c[0] for c in cached], slot, img)
            txt = splice([c[1] for c in cached], slot, txt)
        return local_infonce(self.logit_matrix, img, txt)

    def logit_scale(self) -> float:
        """The similarity's temperature parameter for the log: t (a head with a logit `scale`:
        linear, wpse), 1/sigma^2 (a head with a bandwidth `sigma`: kme), else NaN."""
        sim = self.similarity
        if hasattr(sim, "scale"):
            return float(sim.scale().detach())
        if hasattr(sim, "sigma"):
            return float(torch.as_tensor(sim.sigma).detach() ** -2)
        return math.nan


def splice(parts: list[tuple[Tensor, ...]], slot: int, fresh: tuple[Tensor, ...]):
    """Concatenate k micro-batches' outputs along the batch, `fresh` in place of entry `slot`."""
    seq = parts[:slot] + [fresh] + parts[slot + 1 :]
    return tuple(torch.cat(ts) for ts in zip(*seq, strict=True))


def heads_for(width: int) -> int:
    """Attention heads of a point-set head: 4 (the small towers), 8 for wide towers."""
    for h in (8, 4, 2, 1) if width >= 256 else (4, 2, 1):
        if width % h == 0:
            return h
    return 1


def build_model(cfg: ModelConfig | dict) -> ImageTextModel:
    if isinstance(cfg, dict):
        cfg = ModelConfig(**cfg)
    return ImageTextModel(cfg)


def from_openclip(
    path: str, similarity: str = "linear", quick_gelu: bool = False, vocab: int = 0, **fields
) -> ImageTextModel:
    """A model on CLIP towers holding an open_clip / OpenAI state dict file (`.pt`, OpenAI's
    TorchScript `.pt`, or `.safetensors`; weights_openclip.py), in eval mode: the towers, and for
    a vector head (linear) `visual.proj`, `text_projection` and `logit_scale`.

    quick_gelu: the towers use QuickGELU (OpenAI's archive always does; open_clip's own model
    configs use GELU). vocab: the tokenizer's size (0: the file's). `fields`: other ModelConfig
    fields (points, sigma, ... of a point-set head). `pmilab pretrain --pretrained FILE` does
    the same at the start of a run."""
    shapes = weights_openclip.shapes(weights_openclip.read_state_dict(path, lazy=True)[0], path)
    cfg = ModelConfig(
        **{**shapes, "vocab": vocab or shapes["vocab"], "similarity": similarity, **fields},
        pretrained_weights=str(path),
        force_quick_gelu=quick_gelu,
    )
    return build_model(cfg).eval()


def model_config_dict(cfg: ModelConfig) -> dict:
    return asdict(cfg)

"""`transformers` towers: ViT, CLIP vision and CLIP text, built from a config offline.

- `--tower hf-vit` (ViTModel), `--tower clip` (CLIPVisionModel), `--text-tower clip`
  (CLIPTextModel, causal): built from a config made from the width / layers / heads flags, with
  no network access; or loaded from a local `save_pretrained` / `from_pretrained` folder
  (`--pretrained-image DIR`, `--pretrained-text DIR`), whose own config then fixes the tower.
- Every tower returns (tokens (B, T, w), key mask (B, T), pooled (B, w)), as the small towers of
  towers.py, so the point and point-set heads sit on top of any of them.
- Pooling: ViT at [CLS] (after its final norm); CLIP vision at [CLS] after `post_layernorm`
  (its `pooler_output`); CLIP text at the last real token (causal attention: the only token that
  has seen the whole caption).
- The tower's config is stored in the checkpoint (`ModelConfig.image_hf` / `text_hf`), so a
  checkpoint rebuilds without the pretrained folder. Dropout is 0 in the configs built here:
  exact gradient accumulation recomputes each micro-batch and needs the same features twice.
- The flags are checked before a tower is built, by `towers.check_towers` (via ModelConfig).
  A pretrained image tower fixes the image size (`pretrained_image_size` reads it from the
  folder's config.json before any data is read); another `--image-size` is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from pmilab.errors import InputError

IMAGE_KINDS = ("hf-vit", "clip")
TEXT_KINDS = ("clip",)


def _classes():
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPVisionConfig,
        CLIPVisionModel,
        ViTConfig,
        ViTModel,
    )

    return {
        "hf-vit": (ViTConfig, ViTModel),
        "clip": (CLIPVisionConfig, CLIPVisionModel),
        "clip-text": (CLIPTextConfig, CLIPTextModel),
    }


def image_config(kind: str, width: int, layers: int, heads: int, patch: int, image_size: int):
    cfg_cls, _ = _classes()[kind]
    common = dict(
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * width,
        image_size=image_size,
        patch_size=patch,
    )
    if kind == "hf-vit":
        return cfg_cls(**common, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return cfg_cls(**common, attention_dropout=0.0)


def text_config(vocab: int, context: int, width: int, layers: int, heads: int):
    cfg_cls, _ = _classes()["clip-text"]
    return cfg_cls(
        vocab_size=vocab,
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=context,
        attention_dropout=0.0,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=2,  # our [CLS]; the tower pools by the mask, never by this id
    )


def pretrained_kind(directory: str, text: bool) -> str:
    """The tower kind of a local from_pretrained folder, from its config.json's model_type."""
    path = Path(directory) / "config.json"
    flag = "--pretrained-text" if text else "--pretrained-image"
    if not path.is_file():
        raise InputError(f"{flag} {directory}: no config.json there (a `save_pretrained` folder)")
    try:
        model_type = json.loads(path.read_text()).get("model_type", "")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise InputError(f"{flag} {directory}: config.json is not a transformers config") from None
    kinds = {"clip": "clip-text" if text else "clip", "clip_text_model": "clip-text"}
    if not text:
        kinds |= {"vit": "hf-vit", "clip_vision_model": "clip"}
    if model_type not in kinds:
        want = "clip, clip_text_model" if text else "vit, clip_vision_model, clip"
        raise InputError(f"{flag} {directory}: model_type {model_type!r} is not one of {want}")
    return kinds[model_type]


def pretrained_image_size(directory: str) -> int:
    """The image size a local image-tower folder takes (its config.json; transformers' default,
    224, when the file leaves it out), read without building the tower."""
    pretrained_kind(directory, text=False)  # a clear error for a folder that is not one
    config = json.loads((Path(directory) / "config.json").read_text())
    if config.get("model_type") == "clip":
        config = config.get("vision_config") or {}
    return int(config.get("image_size", 224))


def _load(kind: str, directory: str, text: bool) -> nn.Module:
    _, model_cls = _classes()[kind]
    kwargs = {"add_pooling_layer": False} if kind == "hf-vit" else {}
    try:
        return model_cls.from_pretrained(directory, local_files_only=True, **kwargs)
    except (OSError, ValueError) as e:
        flag = "--pretrained-text" if text else "--pretrained-image"
        raise InputError(f"{flag} {directory}: cannot load it ({str(e).splitlines()[0]})") from None


def _from_config(kind: str, config: dict) -> nn.Module:
    cfg_cls, model_cls = _classes()[kind]
    cfg = cfg_cls.from_dict(config)
    return model_cls(cfg, add_pooling_layer=False) if kind == "hf-vit" else model_cls(cfg)


def enable_checkpointing(model: nn.Module) -> None:
    """Activation (gradient) checkpointing of a transformers model, non-reentrant (DDP-safe)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # pragma: no cover - transformers 4.x
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


class HFImageTower(nn.Module):
    """ViTModel or CLIPVisionModel -> (tokens, mask, pooled)."""

    def __init__(self, kind: str, model: nn.Module) -> None:
        super().__init__()
        self.kind, self.model = kind, model
        self.width = model.config.hidden_size
        self.image_size = model.config.image_size

    def hf_config(self) -> dict:
        return self.model.config.to_dict()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.model(pixel_values=x)
        tokens = out.last_hidden_state  # (B, 1 + patches, w)
        pooled = out.pooler_output if self.kind == "clip" else tokens[:, 0]
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=x.device)
        return tokens, mask, pooled


class HFTextTower(nn.Module):
    """CLIPTextModel (causal) -> (tokens, mask, pooled at the last real token)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.width = model.config.hidden_size
        self.vocab = model.config.vocab_size
        self.context = model.config.max_position_embeddings

    def hf_config(self) -> dict:
        return self.model.config.to_dict()

    def forward(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        tokens = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        last = mask.long().sum(1).clamp(min=1) - 1  # (B,)
        pooled = tokens[torch.arange(len(ids), device=ids.device), last]
        return tokens, mask, pooled


def build_image(cfg) -> HFImageTower:
    """From `cfg.image_hf` (a checkpoint), `cfg.pretrained_image` or the width/layers flags."""
    if cfg.image_hf:
        return HFImageTower(cfg.tower, _from_config(cfg.tower, cfg.image_hf))
    if cfg.pretrained_image:
        kind = pretrained_kind(cfg.pretrained_image, text=False)
        return HFImageTower(kind, _load(kind, cfg.pretrained_image, text=False))
    conf = image_config(
        cfg.tower, cfg.width, cfg.image_layers, cfg.image_heads, cfg.patch_size, cfg.image_size
    )
    return HFImageTower(cfg.tower, _from_config(cfg.tower, conf.to_dict()))


def build_text(cfg) -> HFTextTower:
    if cfg.text_hf:
        return HFTextTower(_from_config("clip-text", cfg.text_hf))
    if cfg.pretrained_text:
        kind = pretrained_kind(cfg.pretrained_text, text=True)
        tower = HFTextTower(_load(kind, cfg.pretrained_text, text=True))
        if tower.vocab < cfg.vocab or tower.context < cfg.context:
            raise InputError(
                f"--pretrained-text {cfg.pretrained_text}: its vocabulary ({tower.vocab}) and "
                f"context ({tower.context}) must hold the tokenizer's {cfg.vocab} ids and "
                f"--context {cfg.context}; pass its tokenizer.json with --tokenizer"
            )
        return tower
    conf = text_config(cfg.vocab, cfg.context, cfg.text_width, cfg.text_layers, cfg.text_heads)
    return HFTextTower(_from_config("clip-text", conf.to_dict()))

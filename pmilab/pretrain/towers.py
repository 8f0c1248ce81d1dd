"""Image towers (a small CNN, a small ViT), a Transformer text tower, and the output heads.

Every tower maps its input to a token sequence (B, T, w) plus a key mask (B, T) and a pooled
feature (B, w). A head turns that into what the similarity needs (docs/theory.md T2):
- `PointHead`: one point (B, d) from the pooled feature (linear / CLIP);
- `PointSetHead`: M points (B, M, d) and M weights (B, M) by attention pooling of the tokens with
  M learned queries (WPSE: signed weights; KME: log-weights).
No batch norm anywhere: a sample's output never depends on the rest of its batch, which is
what lets the DDP run equal the single-process run on the concatenated batch.

`check_towers` is the one owner of what a tower's flags must satisfy (for these towers and the
transformers ones of hf_towers.py): a configuration torch or transformers cannot build would
otherwise end in an AssertionError deep inside them, or train on silently cropped images.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pmilab.errors import InputError

PATCHED = ("vit", "hf-vit", "clip")  # image towers cut into patches by a transformer


class ConvTower(nn.Module):
    """Four 3x3 conv blocks (GroupNorm, GELU), strides 2, 2, 2, 1. (B,3,S,S) -> (S/8)^2 tokens.

    Downsampling from the first block keeps a CPU step cheap (measured 0.04 s against 0.25 s
    for stride 1 first, batch 64, one thread); the shapes are still told apart (smoke run).
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        chans = [3, width // 2, width, width, width]
        blocks = []
        for i in range(4):
            blocks += [
                nn.Conv2d(chans[i], chans[i + 1], 3, stride=1 if i == 3 else 2, padding=1),
                nn.GroupNorm(8, chans[i + 1]),
                nn.GELU(),
            ]
        self.body = nn.Sequential(*blocks)
        self.width = width

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        f = self.body(x)  # (B, w, S/8, S/8)
        tokens = f.flatten(2).transpose(1, 2)  # (B, T, w)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=x.device)
        return tokens, mask, tokens.mean(1)


class ViTTower(nn.Module):
    """Patch embedding + [CLS] + pre-norm Transformer encoder. (B,3,S,S) -> tokens."""

    def __init__(
        self, width: int = 64, depth: int = 2, heads: int = 4, patch: int = 4, image_size: int = 32
    ) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, width, patch, stride=patch)
        n = (image_size // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.randn(1, n + 1, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width,
            heads,
            2 * width,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.width = width

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p = self.patch(x).flatten(2).transpose(1, 2)  # (B, n, w)
        t = torch.cat([self.cls.expand(len(p), -1, -1), p], 1) + self.pos
        t = self.norm(self.encoder(t))  # (B, n+1, w)
        mask = torch.ones(t.shape[:2], dtype=torch.bool, device=x.device)
        return t, mask, t[:, 0]


class TextTower(nn.Module):
    """Token + position embeddings, pre-norm Transformer; pooled at [CLS] (position 0)."""

    def __init__(
        self, vocab: int, context: int, width: int = 64, depth: int = 2, heads: int = 4
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.randn(1, context, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width,
            heads,
            2 * width,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.width = width

    def forward(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        t = self.embed(ids) + self.pos[:, : ids.shape[1]]  # (B, T, w)
        t = self.norm(self.encoder(t, src_key_padding_mask=~mask))
        return t, mask, t[:, 0]


class PointHead(nn.Module):
    """One point per input: (B, w) pooled feature -> (B, d)."""

    def __init__(self, width: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(width, dim)

    def forward(self, tokens: Tensor, mask: Tensor, pooled: Tensor) -> tuple[Tensor, ...]:
        return (self.proj(pooled),)


class PointSetHead(nn.Module):
    """M points and M weights per input, by M-query attention pooling over the tokens.

    Output: points (B, M, d) and weights (B, M) (raw: the similarity decides whether they are
    signed weights, WPSE, or log-weights, KME).
    """

    def __init__(self, width: int, dim: int, points: int, heads: int = 4) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(1, points, width) * 0.02)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.to_point = nn.Linear(width, dim)
        self.to_weight = nn.Linear(width, 1)
        # zero init: every point starts with the same weight (uniform mixture for KME, 1 for
        # WPSE), so the first steps cannot be dominated by random per-input weight magnitudes
        nn.init.zeros_(self.to_weight.weight)
        nn.init.zeros_(self.to_weight.bias)

    def forward(self, tokens: Tensor, mask: Tensor, pooled: Tensor) -> tuple[Tensor, ...]:
        q = self.queries.expand(len(tokens), -1, -1)  # (B, M, w)
        h, _ = self.attn(q, tokens, tokens, key_padding_mask=~mask, need_weights=False)
        h = self.norm(h + q)  # (B, M, w)
        return self.to_point(h), self.to_weight(h).squeeze(-1)


def image_tower(
    kind: str, width: int, image_size: int, layers: int = 2, heads: int = 4, patch: int = 4
) -> nn.Module:
    if kind == "cnn":
        return ConvTower(width)
    if kind == "vit":
        return ViTTower(width, layers, heads, patch, image_size)
    raise ValueError(f"unknown image tower {kind!r}; use 'cnn' or 'vit'")


def check_towers(cfg) -> None:
    """One-line InputError naming the flags of every tower that cannot be built from `cfg`.

    `cfg` is a ModelConfig (model.py) or a PretrainConfig (train.py checks it before reading
    any data; its `text_width` 0 means `width`). A tower read from a checkpoint's or a
    pretrained folder's transformers config is not checked: that config was built once already.
    """
    problems = []
    if not (getattr(cfg, "image_hf", None) or cfg.pretrained_image):
        problems += image_problems(cfg)
    if not (getattr(cfg, "text_hf", None) or cfg.pretrained_text):
        width = cfg.text_width or cfg.width
        problems += attention_problems(
            "text", width, "--text-width (or --width)", cfg.text_layers, cfg.text_heads
        )
    if problems:
        raise InputError(f"the towers cannot be built: {'; '.join(problems)}")


def image_problems(cfg) -> list[str]:
    """What is wrong with the image tower's flags (cnn: GroupNorm groups; ViTs: heads, patches)."""
    if cfg.tower == "cnn":
        if cfg.width % 16:  # GroupNorm(8, width / 2) in the first block
            return [f"--tower cnn needs a --width divisible by 16, got {cfg.width}"]
        return []
    if cfg.tower not in PATCHED:
        return []
    problems = attention_problems("image", cfg.width, "--width", cfg.image_layers, cfg.image_heads)
    if cfg.patch_size > cfg.image_size or cfg.image_size % cfg.patch_size:
        problems.append(
            f"--patch-size {cfg.patch_size} does not divide --image-size {cfg.image_size} "
            "(the patches must tile the image)"
        )
    return problems


def attention_problems(
    which: str, width: int, width_flag: str, layers: int, heads: int
) -> list[str]:
    """A transformer needs layers >= 1, heads >= 1 and a width that splits evenly into heads."""
    prefix, problems = f"--{which}-", []
    if layers < 1:
        problems.append(f"{prefix}layers must be >= 1, got {layers}")
    if heads < 1:
        problems.append(f"{prefix}heads must be >= 1, got {heads}")
    elif width % heads:
        problems.append(
            f"the {which} tower's {width_flag} {width} is not divisible by {prefix}heads {heads}"
        )
    return problems

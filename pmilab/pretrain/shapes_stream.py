"""Shapes data rendered in memory: a fresh-sample stream and a fixed training set (T7).

- `ShapesStream.batch(step)` draws new latents, nuisance and caption wording at every step. It
  is a pure function of (seed, step), so a run resumed at step s sees exactly the batches an
  uninterrupted run sees from s on, and no two steps share an image.
- `FixedShapes` pre-draws n samples once (images held in memory) and serves them in epochs:
  `batch(step)` is again a pure function of (seed, step), through a permutation per epoch.
- `heldout_images` / `heldout_captions` draw independent image and caption marginals for the
  product-measure grid that scores a head (docs/theory.md, "Measured quantities").

Every image is `shapes.render` of its latent z, jitter and pixel noise: the noise-free renders of
every (z, jitter) are drawn once by PIL (`TemplateBank`), and a sample adds its Gaussian pixel
noise, rounds and clips exactly as `render` does. Captions come from `CaptionBank`: every
wording of every caption latent y (template x synonyms, each equally likely, as `caption`
draws them), tokenized once by the lab's word-level tokenizer. Each wording names y's shape,
colour and size, so the text determines y, and PMI(image, caption) = PMI(z, y) exactly.

Random streams never overlap: training, held-out images, held-out captions and the fixed set
each seed numpy's generator with their own first key ([kind, seed, ...]).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from pmilab.pretrain.shapes import SYNONYMS, TEMPLATES, render
from pmilab.pretrain.tokenizer import encode, train_tokenizer

NOISE_SD = 6.0  # grey levels, as the on-disk cache (shapes_cache.NOISE_SD)
MAX_JITTER = 1  # +-1 pixel, as shapes.nuisance
CONTEXT = 12  # tokens: [CLS] + the longest wording ("there is a large plus sign in ...")
# the first key of each random stream (see the module docstring)
TRAIN, HELDOUT_IMAGES, HELDOUT_CAPTIONS, FIXED_DRAW, FIXED_ORDER = range(5)


@dataclass
class ShapesBatch:
    """A batch of pairs: images (B, S, S, 3) uint8, token ids (B, T) and mask, latents z, y."""

    images: np.ndarray
    ids: Tensor
    mask: Tensor
    z: np.ndarray
    y: np.ndarray

    def pixels(self) -> Tensor:
        return to_tensor(self.images)


def to_tensor(images: np.ndarray) -> Tensor:
    """uint8 (B, S, S, 3) -> float32 (B, 3, S, S), centred and scaled to about unit range."""
    x = np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2), dtype=np.float32)
    return torch.from_numpy((x - np.float32(127.5)) / np.float32(64.0))


class TemplateBank:
    """Noise-free renders of every image latent at every jitter, and noisy samples from them."""

    def __init__(self, joint, image_size: int = 16, max_jitter: int = MAX_JITTER) -> None:
        self.joint, self.size = joint, image_size
        steps = range(-max_jitter, max_jitter + 1)
        self.jitters = list(itertools.product(steps, steps))
        self.bank = np.stack(
            [
                np.stack([render(joint, z, j, 0.0, size=image_size) for j in self.jitters])
                for z in range(joint.nz)
            ]
        )  # (nz, J, S, S, 3) uint8

    def images(
        self, z: np.ndarray, jitter: np.ndarray, rng: np.random.Generator, noise_sd: float
    ) -> np.ndarray:
        """(n, S, S, 3) uint8: `render(joint, z_i, jitters[jitter_i], noise_sd, rng)` for each i
        in turn (the same pixels, drawing the same noise from rng).

        In place on one float64 buffer: `rng.standard_normal` draws the same normals as
        `rng.normal(0, sd)`, which returns 0 + sd·g; sd·g + base rounds to the same pixel. The
        temporaries of `clip(rint(base + noise))` cost as much as the draw itself (T7's step,
        results/engine/t7_step.md); tests/pretrain/test_stream_render.py holds the pixels
        bit-identical to that expression."""
        base = self.bank[np.asarray(z), np.asarray(jitter)]  # (n, S, S, 3) uint8, a copy
        if not noise_sd > 0:
            return base
        x = rng.standard_normal(base.shape)
        x *= noise_sd
        x += base
        np.rint(x, out=x)
        np.clip(x, 0, 255, out=x)
        return x.astype(np.uint8)


class CaptionBank:
    """Every wording of every caption latent: texts[y * per_y + u], u the wording index."""

    def __init__(self, joint, context: int = CONTEXT) -> None:
        self.joint = joint
        keys = ("shape", "colour", "size")
        choices = list(itertools.product(range(len(TEMPLATES)), *([range(2)] * len(keys))))
        self.per_y = len(choices)
        self.texts = []
        for y in range(joint.ny):
            a = joint.y_attrs(y)
            for t, *syn in choices:
                words = {k: SYNONYMS[a[k]][i] for k, i in zip(keys, syn, strict=True)}
                self.texts.append(TEMPLATES[t].format(**words))
        self.tokenizer = train_tokenizer(self.texts)
        self.ids, self.mask = encode(self.tokenizer, self.texts, context)
        if self.mask[:, -1].any():
            raise ValueError(f"context {context} truncates a caption; raise CONTEXT")

    @property
    def vocab(self) -> int:
        return self.tokenizer.get_vocab_size()

    def tokens(self, text: np.ndarray) -> tuple[Tensor, Tensor]:
        t = torch.as_tensor(np.asarray(text), dtype=torch.long)
        return self.ids[t], self.mask[t]


@lru_cache(maxsize=8)
def template_bank(joint, image_size: int) -> TemplateBank:
    """One bank per (joint, size) and process (read-only: its arrays are shared)."""
    return TemplateBank(joint, image_size)


@lru_cache(maxsize=8)
def caption_bank(joint) -> CaptionBank:
    return CaptionBank(joint)


class _Renderer:
    """What the stream, the fixed set and the held-out draws share."""

    def __init__(self, joint, image_size: int, noise_sd: float) -> None:
        self.joint, self.image_size, self.noise_sd = joint, image_size, noise_sd
        self.table = joint.table().numpy()  # (nz, ny) p(z, y)
        self._cdf = np.cumsum(self.table.reshape(-1))

    @property
    def templates(self) -> TemplateBank:
        return template_bank(self.joint, self.image_size)

    @property
    def captions(self) -> CaptionBank:
        return caption_bank(self.joint)

    def _pairs(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        idx = np.searchsorted(self._cdf, rng.random(n) * self._cdf[-1], side="right")
        idx = np.minimum(idx, self.table.size - 1)
        return idx // self.joint.ny, idx % self.joint.ny

    def _draw(self, n: int, rng: np.random.Generator):
        """n pairs: latents, jitter index, wording index, then the images (pixel noise)."""
        z, y = self._pairs(n, rng)
        jitter = rng.integers(len(self.templates.jitters), size=n)
        wording = rng.integers(self.captions.per_y, size=n)
        images = self.templates.images(z, jitter, rng, self.noise_sd)
        return images, z, y, y * self.captions.per_y + wording

    def _batch(self, images, z, y, text) -> ShapesBatch:
        ids, mask = self.captions.tokens(text)
        return ShapesBatch(images, ids, mask, z, y)

    def heldout_images(self, n: int, seed: int) -> tuple[Tensor, np.ndarray]:
        """n images with z ~ p(z) (and fresh nuisance): pixels (n, 3, S, S) and z."""
        rng = np.random.default_rng([HELDOUT_IMAGES, seed])
        pz = self.table.sum(1)
        z = rng.choice(len(pz), size=n, p=pz / pz.sum())
        jitter = rng.integers(len(self.templates.jitters), size=n)
        return to_tensor(self.templates.images(z, jitter, rng, self.noise_sd)), z

    def heldout_captions(self, n: int, seed: int) -> tuple[Tensor, Tensor, np.ndarray]:
        """n captions with y ~ p(y) and a uniform wording: ids, mask and y."""
        rng = np.random.default_rng([HELDOUT_CAPTIONS, seed])
        py = self.table.sum(0)
        y = rng.choice(len(py), size=n, p=py / py.sum())
        text = y * self.captions.per_y + rng.integers(self.captions.per_y, size=n)
        ids, mask = self.captions.tokens(text)
        return ids, mask, y


class ShapesStream(_Renderer):
    """Fresh pairs at every step: `batch(step)` depends on (seed, step) only."""

    def __init__(
        self,
        joint,
        batch_size: int,
        seed: int,
        image_size: int = 16,
        noise_sd: float = NOISE_SD,
    ) -> None:
        super().__init__(joint, image_size, noise_sd)
        self.batch_size, self.seed = int(batch_size), int(seed)

    def batch(self, step: int) -> ShapesBatch:
        rng = np.random.default_rng([TRAIN, self.seed, int(step)])
        return self._batch(*self._draw(self.batch_size, rng))

    def batches(self, start: int = 0):
        """Batches from step `start` on (a resumed run passes the step it stopped at)."""
        step = int(start)
        while True:
            yield self.batch(step)
            step += 1


class FixedShapes(_Renderer):
    """n pairs drawn once and held in memory, served in epochs of seeded permutations."""

    def __init__(
        self,
        joint,
        n: int,
        batch_size: int,
        seed: int,
        image_size: int = 16,
        noise_sd: float = NOISE_SD,
    ) -> None:
        super().__init__(joint, image_size, noise_sd)
        if not 1 <= batch_size <= n:
            raise ValueError(f"batch_size must lie in [1, n={n}], got {batch_size}")
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        rng = np.random.default_rng([FIXED_DRAW, self.seed])
        self.images, self.z, self.y, self.text = self._draw(self.n, rng)

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([FIXED_ORDER, self.seed, int(epoch)]).permutation(self.n)

    def indices(self, step: int) -> np.ndarray:
        """Sample indices of `step`: positions step·B ... step·B + B − 1 of the concatenated
        epoch permutations (a batch may straddle two epochs)."""
        pos = np.arange(int(step) * self.batch_size, (int(step) + 1) * self.batch_size)
        epochs, offsets = np.divmod(pos, self.n)
        out = np.empty(len(pos), dtype=np.int64)
        for e in np.unique(epochs):
            out[epochs == e] = self.order(e)[offsets[epochs == e]]
        return out

    def batch(self, step: int) -> ShapesBatch:
        i = self.indices(step)
        return self._batch(self.images[i], self.z[i], self.y[i], self.text[i])

    def epoch(self, step: int) -> float:
        """Epochs completed after `step` steps."""
        return int(step) * self.batch_size / self.n

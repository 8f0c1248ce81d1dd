"""Image preprocessing: `--preprocess simple | clip`, and `--aug rrc` for training.

- `simple` (the shapes and digits default): a nearest resize to S x S and a [-1, 1] scale. It
  keeps small synthetic images exact, and it is what every run before `--preprocess` used.
- `clip` (the default for CSV/TSV tables and webdataset shards): transformers' CLIP image
  processor, built from arguments (nothing is downloaded): a bicubic resize of the short side to
  S, a centre crop to S x S, and CLIP's mean and std. This is open_clip's and OpenAI's evaluation
  transform, and what loaded CLIP weights expect.
- `--aug rrc` (training only): open_clip's training transform, RandomResizedCrop to S x S with
  bicubic interpolation, scale (0.9, 1.0) (open_clip's `AugmentationCfg` default) and
  torchvision's aspect ratios (3/4, 4/3), then the same processor's rescale and normalisation.
  With `simple` the same box is resized the simple way (nearest) and scaled to [-1, 1].
  The crop box follows torchvision's `RandomResizedCrop.get_params` (ten tries, then a centre
  crop), drawn from a numpy Generator the caller seeds: a sample's crop is a function of the run's
  seed and its place in the data order (data.StepBatches), so runs and resumes repeat exactly.
  Evaluation never augments.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from functools import cache

import numpy as np
import torch
from PIL import Image
from torch import Tensor

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's (and open_clip's) image mean
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RRC_SCALE = (0.9, 1.0)  # open_clip's AugmentationCfg.scale default
RRC_RATIO = (3 / 4, 4 / 3)  # torchvision's RandomResizedCrop default (open_clip keeps it)
RRC_TRIES = 10


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a (3, size, size) float32 tensor. Picklable (loader workers)."""

    kind: str = "simple"  # simple | clip
    size: int = 32
    aug: str = "none"  # none | rrc (clip only; training)

    def for_eval(self) -> Preprocess:
        return replace(self, aug="none")

    def __call__(self, img: Image.Image, rng: np.random.Generator | None = None) -> Tensor:
        if self.aug == "rrc":
            if rng is None:
                # not a ValueError: the readers count those as undecodable images
                raise RuntimeError("--aug rrc draws its crop from a seeded Generator; none given")
            resample = Image.BICUBIC if self.kind == "clip" else Image.NEAREST
            img = random_resized_crop(img.convert("RGB"), self.size, rng, resample)
            if self.kind == "simple":
                return to_tensor(img, self.size)
            return clip_tensor(img, self.size, crop=False)
        if self.kind == "simple":
            return to_tensor(img, self.size)
        return clip_tensor(img.convert("RGB"), self.size)


def preprocess_for(kind: str, size: int, aug: str = "none", train: bool = True) -> Preprocess:
    """The preprocessing of a run (`kind`, `aug` from its config) at `size` px; eval: no aug."""
    prep = Preprocess(kind or "simple", size, aug or "none")
    return prep if train else prep.for_eval()


def to_tensor(img: Image.Image, size: int) -> Tensor:
    """(3, size, size) float32 in [-1, 1]; nearest resize keeps small synthetic images exact."""
    img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.NEAREST)
    a = torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).permute(2, 0, 1)
    return a / 127.5 - 1.0


@cache
def clip_processor(size: int):
    """transformers' CLIP image processor for `size` px, from arguments (no hub access)."""
    try:  # transformers >= 5: the PIL backend by name (the plain name warns without torchvision)
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:  # pragma: no cover - transformers 4.x, whose processor is PIL/numpy
        from transformers import CLIPImageProcessor as Processor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Processor(
            do_resize=True,
            size={"shortest_edge": size},
            resample=Image.BICUBIC,
            do_center_crop=True,
            crop_size={"height": size, "width": size},
            do_rescale=True,
            rescale_factor=1 / 255,
            do_normalize=True,
            image_mean=list(CLIP_MEAN),
            image_std=list(CLIP_STD),
            do_convert_rgb=True,
        )


def clip_tensor(img: Image.Image, size: int, crop: bool = True) -> Tensor:
    """(3, size, size) float32 through the CLIP processor; crop=False: `img` is already
    size x size (a RandomResizedCrop), only rescaled and normalised."""
    kwargs = {} if crop else {"do_resize": False, "do_center_crop": False}
    out = clip_processor(size)(img, return_tensors="pt", **kwargs)["pixel_values"][0]
    return out.to(torch.float32).contiguous()


def rrc_box(
    width: int,
    height: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = RRC_SCALE,
    ratio: tuple[float, float] = RRC_RATIO,
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a RandomResizedCrop box: torchvision's `get_params`, drawn from
    `rng`. Area fraction in `scale` and aspect ratio w/h in `ratio` (up to the rounding of w
    and h to pixels); after RRC_TRIES misses, the centre crop with the ratio clamped."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(RRC_TRIES):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(
    img: Image.Image, size: int, rng: np.random.Generator, resample=Image.BICUBIC
) -> Image.Image:
    """The RandomResizedCrop of `img`: a box from `rrc_box`, resized to size x size (bicubic:
    torchvision's `resized_crop` on a PIL image, crop then PIL's resize)."""
    top, left, h, w = rrc_box(img.width, img.height, rng)
    return img.crop((left, top, left + w, top + h)).resize((size, size), resample)

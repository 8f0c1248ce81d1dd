"""Image-text samples in memory-light form, a map-style dataset over them, and the batch order.

Every map-style reader (shapes, CSV/TSV, digits; shards for evaluation) produces an
`ImageText`: one image source and one caption per sample (plus optional class labels and, for
shapes, the latents z, y whose PMI is exact). Images are decoded lazily; a file that fails to
decode is skipped in its batch and recorded in a `SkipLog` by its identity (its path), so it is
warned about and counted once however often it is drawn; a file that does not exist is counted
as `missing_image`, one that exists but does not decode as `corrupt_image` (`undecodable`). Training shards are streamed instead
(stream.py).

The batch order is a pure function of (seed, step): `batch_indices`. A resumed run therefore
sees exactly the batches an uninterrupted run would have seen. Images go through the run's
`Preprocess` (preprocess.py; a bare int is the simple preprocessing at that size); with a random
augmentation, StepBatches keys each sample by (seed, step, place in the global batch), which
seeds its crop.
"""

from __future__ import annotations

import io
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from pmilab.errors import InputError
from pmilab.pretrain.preprocess import Preprocess
from pmilab.pretrain.preprocess import to_tensor as to_tensor  # its earlier home: still importable

# A source is a file path, the bytes of an encoded image (shards read for evaluation), or an array.
Source = str | bytes | np.ndarray
DECODE_ERRORS = (
    OSError,
    UnidentifiedImageError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
)


@dataclass
class ImageText:
    """Paired samples, with what the readers dropped counted in `skipped`."""

    sources: list[Source]
    captions: list[str]
    name: str
    labels: np.ndarray | None = None  # (n,) int class index, for zero-shot and the probe
    class_names: list[str] | None = None
    prompts: list[list[str]] | None = None  # per class: prompt texts to ensemble (T3)
    latents: dict[str, np.ndarray] = field(default_factory=dict)  # shapes: "z", "y"
    skipped: Counter = field(default_factory=Counter)
    joint: object | None = None  # shapes: the ShapesJoint whose PMI is exact
    ids: list[str] | None = None  # names of in-memory samples (shards: "shard:key")

    def __len__(self) -> int:
        return len(self.captions)

    def subset(self, idx: np.ndarray) -> ImageText:
        idx = np.asarray(idx)
        return ImageText(
            [self.sources[i] for i in idx],
            [self.captions[i] for i in idx],
            self.name,
            None if self.labels is None else self.labels[idx],
            self.class_names,
            self.prompts,
            {k: v[idx] for k, v in self.latents.items()},
            Counter(self.skipped),
            self.joint,
            None if self.ids is None else [self.ids[i] for i in idx],
        )


def nonempty_captions(captions: list, where: str) -> tuple[list[int], Counter]:
    """Indices of the samples whose caption is not empty or whitespace; warn and count the rest.

    When every caption is empty there is nothing to train on: that is one InputError saying so
    here, instead of an empty dataset failing later under another name.
    """
    keep = [i for i, c in enumerate(captions) if c is not None and str(c).strip()]
    n_bad = len(captions) - len(keep)
    counts = Counter()
    if n_bad and not keep:
        raise InputError(f"{where}: all {n_bad} caption(s) are empty; there is nothing to train on")
    if n_bad:
        counts["empty_caption"] = n_bad
        warnings.warn(f"{where}: skipped {n_bad} sample(s) with an empty caption", stacklevel=3)
    return keep, counts


def read_image(src: Source) -> Image.Image:
    if isinstance(src, np.ndarray):
        return Image.fromarray(src)
    if isinstance(src, bytes):
        return Image.open(io.BytesIO(src))
    return Image.open(src)


def decode(
    src: Source, prep: Preprocess | int, rng: np.random.Generator | None = None
) -> Tensor | None:
    """The (3, S, S) image of `src` through `prep` (an int: the simple preprocessing at that
    size), or None when it is missing or cannot be decoded."""
    prep = as_preprocess(prep)
    try:
        img = read_image(src)
        img.load()
        return prep(img, rng)
    except DECODE_ERRORS:
        return None


def identity(data: ImageText, i: int) -> str:
    """How a sample is named in warnings and counted: its file path, else its index."""
    src = data.sources[i]
    if isinstance(src, str):
        return src
    return data.ids[i] if data.ids is not None else f"{data.name}[{i}]"


def undecodable(data: ImageText, i: int) -> str:
    """Why sample i's image did not decode: `missing_image` (no such file) or `corrupt_image`."""
    src = data.sources[i]
    return "missing_image" if isinstance(src, str) and not os.path.exists(src) else "corrupt_image"


def skip_undecodable(skips: SkipLog, data: ImageText, bad: list[int]) -> None:
    """Record the samples whose image did not decode, each under its reason (`undecodable`)."""
    for i in bad:
        skips.add(undecodable(data, i), identity(data, i))


def first_decodable(data: ImageText, size: Preprocess | int) -> int:
    """Index of the first sample whose image decodes; one-line InputError if none does.

    Stops at the first good image, so a healthy dataset costs one decode; a dataset whose every
    image is missing or corrupt fails here, before training, instead of training on nothing.
    The error tells missing files from unreadable ones, with counts and the first few names.
    """
    prep = as_preprocess(size).for_eval()
    for i in range(len(data)):
        if decode(data.sources[i], prep) is not None:
            return i
    if not len(data):
        raise InputError(f"{data.name} has no samples")
    reasons = {"missing_image": [], "corrupt_image": []}
    for i in range(len(data)):
        reasons[undecodable(data, i)].append(identity(data, i))
    missing, corrupt = reasons["missing_image"], reasons["corrupt_image"]
    parts = []
    if missing:
        parts.append(f"{len(missing)} image file(s) are missing ({first_few(missing)})")
    if corrupt:
        parts.append(
            f"{len(corrupt)} image(s) are corrupt, unreadable as images ({first_few(corrupt)})"
        )
    raise InputError(f"no decodable image in {data.name}: {' and '.join(parts)}")


def first_few(names: list[str], k: int = 3) -> str:
    """`a, b, c and 7 more`: enough names to find the problem, on one line."""
    shown = ", ".join(names[:k])
    return f"{shown} and {len(names) - k} more" if len(names) > k else shown


class SkipLog:
    """Skipped samples by reason and identity: each is warned about and counted once.

    `add(reason, ident)` warns the first time it sees (reason, ident); `counts()` is the number
    of distinct identities per reason. The state (lists of identities) goes into checkpoints;
    under DDP `merged()` unions every rank's identities.
    """

    def __init__(self, state: dict | None = None) -> None:
        self.seen: dict[str, set] = {k: set(v) for k, v in (state or {}).items()}

    def add(self, reason: str, ident: str) -> None:
        bucket = self.seen.setdefault(reason, set())
        if ident not in bucket:
            bucket.add(ident)
            warnings.warn(f"skipped ({reason.replace('_', ' ')}): {ident}", stacklevel=2)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in sorted(self.seen.items()) if v}

    def state(self) -> dict[str, list]:
        return {k: sorted(v) for k, v in self.seen.items()}

    def merged(self) -> SkipLog:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, self.state())
        out = SkipLog()
        for part in parts:
            for k, v in part.items():
                out.seen.setdefault(k, set()).update(v)
        return out


def as_preprocess(prep: Preprocess | int) -> Preprocess:
    """A Preprocess; a bare int is the simple preprocessing at that size."""
    return prep if isinstance(prep, Preprocess) else Preprocess("simple", int(prep))


class ImageTextDataset(torch.utils.data.Dataset):
    """Map-style dataset: item i -> (image (3, S, S) or None if it cannot be decoded, i).

    An item key may also be (i, draw): `draw` seeds the numpy Generator of a random
    augmentation (`--aug rrc`; StepBatches makes it from the seed, the step and the sample's
    place in the global batch)."""

    def __init__(
        self, data: ImageText, image_size: int = 32, preprocess: Preprocess | None = None
    ) -> None:
        self.data, self.image_size = data, image_size
        self.prep = preprocess if preprocess is not None else as_preprocess(image_size)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key):
        i, draw = key if isinstance(key, tuple) else (key, None)
        rng = np.random.default_rng(draw) if draw is not None else None
        return decode(self.data.sources[i], self.prep, rng), i


def collate(items: list) -> tuple[Tensor, list[int], list[int]]:
    """Stack decodable images; return (images (b, 3, S, S), their indices, undecodable indices)."""
    good = [(x, i) for x, i in items if x is not None]
    bad = [i for x, i in items if x is None]
    if not good:
        return torch.empty(0), [], bad
    return torch.stack([x for x, _ in good]), [i for _, i in good], bad


def batch_indices(n: int, global_batch: int, seed: int, step: int) -> np.ndarray:
    """The global batch of `step`: epoch e is the permutation of seed (seed, e), cut in order."""
    per_epoch = n // global_batch
    if per_epoch < 1:
        raise InputError(
            f"the dataset has {n} usable samples, fewer than one global batch of {global_batch}; "
            "lower --batch-size or add data"
        )
    epoch, j = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[j * global_batch : (j + 1) * global_batch]


class StepBatches(torch.utils.data.Sampler):
    """Per-rank batches for steps [start, stop) x micro-batches, in the `batch_indices` order."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        accum: int,
        seed: int,
        start: int,
        stop: int,
        rank: int = 0,
        world: int = 1,
        draws: bool = False,
    ) -> None:
        self.n, self.batch_size, self.accum, self.seed = n, batch_size, accum, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world
        self.draws = draws

    def __len__(self) -> int:
        return (self.stop - self.start) * self.accum

    def __iter__(self):
        per_rank = self.batch_size * self.accum  # samples per rank per optimizer step
        for step in range(self.start, self.stop):
            idx = batch_indices(self.n, per_rank * self.world, self.seed, step)
            lo = self.rank * per_rank
            mine = idx[lo : lo + per_rank]
            for k in range(self.accum):
                part = mine[k * self.batch_size : (k + 1) * self.batch_size].tolist()
                if not self.draws:
                    yield part
                    continue
                # (i, draw): the augmentation of the sample at this place of the global batch
                # of this step, the same however the batch is split over ranks and micro-batches
                first = lo + k * self.batch_size
                yield [(i, (self.seed, step, first + q)) for q, i in enumerate(part)]

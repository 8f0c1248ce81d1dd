"""Readers: `--data {shapes, digits, PATH.csv|.tsv, SHARDS}` -> `ImageText` (data.py).

- CSV / TSV (open_clip's `--csv-separator`, `--csv-img-key`, `--csv-caption-key`; defaults
  `,`, `filepath`, `caption`; a `.tsv` file defaults to a tab): relative image paths are relative
  to the file. An optional `label` column (class names or ints) enables zero-shot and the probe.
- webdataset shards (a .tar file, a brace pattern `data-{000..009}.tar`, a glob, or a directory
  of .tar files): training streams them (stream.py); `load_data` reads them in order, at most
  `limit` samples, for evaluation and for the tokenizer's corpus. `.cls` members are labels.
  A brace pattern is counted from its numbers and expanded lazily (`brace_shards`).
- `shapes`: the known-PMI dataset (T7), generated into the cache on first use.
- `digits`: scikit-learn's bundled 8x8 digits with templated captions (offline).
- `mnist5k`, `sklearn-digits`: real labelled digits with held-out zero-shot templates
  (real_images.py).
"""

from __future__ import annotations

import glob
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pmilab.errors import InputError
from pmilab.pretrain.data import ImageText, nonempty_captions
from pmilab.pretrain.real_images import is_real, read_real
from pmilab.pretrain.shapes import ShapesJoint, zeroshot_prompts

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_TEMPLATES = ("a handwritten digit {}", "the number {}", "a scan of a {}")
LABEL_TEMPLATES = ("a photo of a {}", "a picture of a {}")
BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")  # a numbered range of shards, data-{000..009}.tar
MAX_SHARDS = 10_000_000  # a brace pattern naming more is refused before one name is made


@dataclass(frozen=True)
class CsvKeys:
    """How to read a CSV / TSV: open_clip's --csv-separator, --csv-img-key, --csv-caption-key."""

    separator: str = ","
    img_key: str = "filepath"
    caption_key: str = "caption"


def is_table(spec: str) -> bool:
    return spec.lower().endswith((".csv", ".tsv"))


def load_data(
    spec: str,
    split: str = "train",
    shapes_n: tuple[int, int] = (5000, 1000),
    seed: int = 0,
    progress: bool = True,
    keys: CsvKeys | None = None,
    limit: int | None = None,
) -> ImageText:
    """Read `spec` (shapes | digits | a .csv/.tsv | tar shards); `split` matters for shapes/digits.

    `limit` caps the samples read from shards (they are streamed in order, never indexed).
    """
    if spec == "shapes":
        return read_shapes(split, *shapes_n, seed=seed, progress=progress)
    if spec == "digits":
        return read_digits(split)
    if is_real(spec):
        return read_real(spec, split)
    if is_table(spec):
        return read_csv(spec, keys)
    shards = expand_shards(spec)
    if shards:
        return read_shards(shards, limit)
    raise InputError(
        f"--data {spec!r} is neither 'shapes', 'digits', 'mnist5k', 'sklearn-digits', an "
        "existing .csv/.tsv file nor tar "
        "shards (a .tar path, a {000..009} brace pattern, a glob or a directory of .tar files)"
    )


def read_csv(path: str, keys: CsvKeys | None = None) -> ImageText:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    keys = keys or CsvKeys()
    sep = "\t" if (p.suffix.lower() == ".tsv" and keys == CsvKeys()) else keys.separator
    try:
        df = pd.read_csv(p, sep=sep, keep_default_na=False, dtype=str)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise InputError(f"{path} is not a readable table ({str(e).splitlines()[0]})") from None
    img_key, cap_key = keys.img_key, keys.caption_key
    missing = [c for c in (img_key, cap_key) if c not in df.columns]
    if missing:
        raise InputError(
            f"{path} lacks the column(s) {missing} (found {list(df.columns)}, separator "
            f"{sep!r}); name them with --csv-img-key / --csv-caption-key / --csv-separator"
        )
    if df.empty:
        raise InputError(f"{path} has a header ({', '.join(df.columns)}) but no rows of data")
    files = [str(f if Path(f).is_absolute() else p.parent / f) for f in df[img_key]]
    keep, counts = nonempty_captions(df[cap_key].tolist(), f"{path} (column {cap_key!r})")
    captions = [str(df[cap_key].iloc[i]).strip() for i in keep]
    data = ImageText([files[i] for i in keep], captions, name=p.stem, skipped=counts)
    if "label" in df.columns:
        attach_labels(data, df["label"].to_numpy()[keep])
    for key in ("z", "y"):
        if key in df.columns:
            data.latents[key] = df[key].to_numpy()[keep].astype(np.int64)
    return data


def attach_labels(data: ImageText, raw: np.ndarray) -> None:
    """Class names from a label column; prompts from LABEL_TEMPLATES."""
    names = sorted({str(v) for v in raw})
    data.class_names = names
    data.labels = np.array([names.index(str(v)) for v in raw], dtype=np.int64)
    data.prompts = [[t.format(n) for t in LABEL_TEMPLATES] for n in names]


def expand_shards(spec: str) -> list[str]:
    """Shard paths named by a directory, a brace pattern {a..b}, a glob or one file."""
    p = Path(spec)
    if p.is_dir():
        return sorted(str(s) for s in p.glob("*.tar"))
    if BRACE.search(spec):
        return brace_shards(spec)
    if any(ch in spec for ch in "*?["):
        return sorted(glob.glob(spec))
    return [spec] if p.is_file() and spec.endswith(".tar") else []


def brace_shards(spec: str) -> list[str]:
    """The shards of a brace pattern, each checked as its name is made.

    The count comes from the numbers alone, so an absurd pattern (`x-{0..999999999}.tar`) is
    refused before one name is built; the names are then made one at a time and the first
    missing one stops the expansion, so a mistyped pattern fails at its first name, not after
    building (and exhausting memory on) every name.
    """
    count = brace_count(spec)
    if count > MAX_SHARDS:
        raise InputError(
            f"--data {spec!r} names {count:,} shards, more than {MAX_SHARDS:,}; "
            "check the brace ranges {a..b}"
        )
    names = []
    for name in brace_names(spec):
        if not Path(name).is_file():
            raise FileNotFoundError(
                f"shard {name} ({len(names) + 1} of the {count:,} that {spec} names) does not exist"
            )
        names.append(name)
    return names


def brace_count(spec: str) -> int:
    """How many names the {a..b} ranges of `spec` make (their product), without making them."""
    count = 1
    for m in BRACE.finditer(spec):
        a, b = int(m.group(1)), int(m.group(2))
        if b < a:
            raise InputError(f"--data {spec!r}: the range {m.group(0)} is empty (it counts down)")
        count *= b - a + 1
    return count


def brace_names(spec: str) -> Iterator[str]:
    """The names of a brace pattern, lazily, in order (the last range varies fastest).

    Each number is zero-padded to the width of its range's first number, `{000..009}` -> 000.
    """
    yield from _names(BRACE.split(spec))


def _names(parts: list[str]) -> Iterator[str]:
    """parts = [text, a, b, text, a, b, ..., text], as `BRACE.split` cuts a pattern."""
    if len(parts) == 1:
        yield parts[0]
        return
    head, a, b, rest = parts[0], parts[1], parts[2], parts[3:]
    for n in range(int(a), int(b) + 1):
        number = str(n).zfill(len(a))
        for tail in _names(rest):
            yield head + number + tail


def read_shards(shards: list[str], limit: int | None = None) -> ImageText:
    """The first `limit` complete samples of the shards, streamed in order (images kept encoded)."""
    from pmilab.pretrain.stream import read_stream

    items, skips = read_stream(shards, limit)
    if not items:
        raise InputError(f"no complete (image, .txt) samples found in {len(shards)} shard(s)")
    data = ImageText(
        [it["bytes"] for it in items],
        [it["caption"] for it in items],
        name=Path(shards[0]).stem,
        skipped=Counter(skips.counts()),
    )
    data.ids = [it["__id__"] for it in items]
    labels = np.array([it["label"] for it in items], dtype=np.int64)
    if (labels >= 0).all():
        data.labels = labels
    return data


def read_shapes(
    split: str, n_train: int, n_test: int, seed: int = 0, progress: bool = True
) -> ImageText:
    """The shapes split with labels (shape x colour), prompts and latents z, y (T7)."""
    from pmilab.pretrain.shapes_cache import ensure_shapes

    root = ensure_shapes(n_train, n_test, seed=seed, progress=progress)
    data = read_csv(str(root / f"{check_split(split)}.csv"))
    data.name = f"shapes-{split}"
    names, prompts = zeroshot_prompts()
    data.class_names, data.prompts = names, prompts
    # read_csv turned labels into sorted strings; the CSV holds the integer class directly
    data.labels = pd.read_csv(root / f"{split}.csv")["label"].to_numpy(np.int64)
    data.joint = ShapesJoint(**json_fields(root))
    return data


def json_fields(root: Path) -> dict:
    meta = json.loads((root / "meta.json").read_text())
    return {k: meta[k] for k in ("noise", "favourite", "grid")}


def read_digits(split: str) -> ImageText:
    """sklearn digits (1797 8x8 images): first 80% train, last 20% test; seeded captions."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = (d.images * (255.0 / 16.0)).round().astype(np.uint8)  # (n, 8, 8) grey levels
    n_train = int(0.8 * len(imgs))
    idx = np.arange(n_train) if check_split(split) == "train" else np.arange(n_train, len(imgs))
    rng = np.random.default_rng(0)
    tmpl = rng.integers(len(DIGIT_TEMPLATES), size=len(imgs))
    captions = [DIGIT_TEMPLATES[tmpl[i]].format(DIGIT_WORDS[d.target[i]]) for i in idx]
    data = ImageText([np.stack([imgs[i]] * 3, -1) for i in idx], captions, name=f"digits-{split}")
    data.labels = d.target[idx].astype(np.int64)
    data.class_names = list(DIGIT_WORDS)
    data.prompts = [[t.format(w) for t in DIGIT_TEMPLATES] for w in DIGIT_WORDS]
    return data


def check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise InputError(f"split must be 'train' or 'test', got {split!r}")
    return split

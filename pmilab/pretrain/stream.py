"""webdataset shards, streamed through the `webdataset` library (open_clip's `get_wds_dataset`).

- No up-front indexing: each shard is read once, in order, when its turn comes.
- Splitting: without `--dataset-resampled`, rank r of W takes shards r, r+W, ... (split by node;
  a sample always lives on one rank, so its warnings come from one rank), shuffles them with
  (seed, epoch, rank), and loader worker w of K takes every K-th of those
  (`webdataset.split_by_worker`): every sample is seen exactly once per epoch. When the stream
  ends, the next epoch begins; a partial batch carries over. With `--dataset-resampled` every
  worker draws shards with replacement forever (`webdataset.ResampledShards`).
- A sample is an image (.png/.jpg/.jpeg/.webp), a caption (.txt) and, when present, a class
  index (.cls). Members are grouped by key (`webdataset.tariterators`).
- Bad data never stops the stream and is counted once, by identity, in the main process's
  SkipLog: a sample without image or caption (`incomplete_sample`), an empty caption, an image
  that does not decode (`corrupt_image`, named `shard:key`), and a shard that cannot be read to
  its end (`unreadable_shard`, e.g. truncated; the samples before the damage are kept).
- Resuming a stream starts a fresh shard order seeded with the resumed step (as open_clip
  reseeds per epoch); the exact-resume guarantee holds for map-style data (CSV, shapes, digits).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from torch import Tensor
from webdataset.tariterators import group_by_keys

from pmilab.errors import InputError
from pmilab.pretrain.data import DECODE_ERRORS, SkipLog, as_preprocess
from pmilab.pretrain.preprocess import Preprocess

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp")
CHUNK = 32  # samples per message from a loader worker to the main process


def skip(reason: str, ident: str) -> dict:
    return {"__skip__": reason, "__id__": ident}


def tar_members(f, url: str) -> Iterator[dict]:
    """{fname, data, __url__} of every regular member, in order; raises on a damaged archive.

    A tar has no index, so damage shows only as it is read: a member shorter than its header
    says, a broken header, or an archive that stops without its end-of-archive zero blocks.
    """
    with tarfile.open(fileobj=f, mode="r|*") as tf:
        for info in tf:
            if not info.isreg():
                continue
            data = tf.extractfile(info).read()
            if len(data) != info.size:
                raise tarfile.ReadError(f"member {info.name} is truncated")
            yield {"fname": info.name, "data": data, "__url__": url}
            tf.members = []  # stream mode: keep no history
        end = tf.offset
    if f.seekable():
        f.seek(end)
        tail = f.read(1024)
        if len(tail) < 1024 or tail.count(0) != 1024:
            raise tarfile.ReadError("the archive stops without its end-of-archive blocks")


def shard_samples(url: str) -> Iterator[dict]:
    """Raw samples (dicts of member bytes, grouped by key by webdataset) of one shard.

    A damaged shard yields its samples up to the damage, then an `unreadable_shard` marker.
    """
    try:
        with open(url, "rb") as f:
            yield from group_by_keys(tar_members(f, url))
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        yield {**skip("unreadable_shard", url), "__error__": str(e).splitlines()[0]}


def decode_sample(
    s: dict, image_size: Preprocess | int | None, rng: np.random.Generator | None = None
) -> dict:
    """A raw sample -> {image, caption, label, __id__}, or a skip marker. `image_size`: the
    preprocessing (an int: the simple one at that size), None: keep the encoded bytes; `rng`
    draws a random augmentation's parameters."""
    if "__skip__" in s:
        return s
    ident = f"{s['__url__']}:{s['__key__']}"
    ext = next((e for e in IMAGE_EXTS if e in s), None)
    if ext is None or "txt" not in s:
        return skip("incomplete_sample", ident)
    caption = s["txt"].decode("utf-8", "replace").strip()
    if not caption:
        return skip("empty_caption", ident)
    label = -1
    if "cls" in s:
        try:
            label = int(s["cls"].decode().strip())
        except ValueError:
            return skip("bad_cls", ident)
    out = {"caption": caption, "label": label, "__id__": ident}
    if image_size is None:  # raw bytes (evaluation reads them into memory)
        return {**out, "bytes": s[ext]}
    try:
        img = Image.open(io.BytesIO(s[ext]))
        img.load()
        return {**out, "image": as_preprocess(image_size)(img, rng)}
    except DECODE_ERRORS:
        return skip("corrupt_image", ident)


class _WorkerSeed:
    """ResampledShards' per-worker seed: distinct for every (rank, worker)."""

    def __init__(self, rank: int) -> None:
        self.rank = rank

    def __call__(self) -> int:
        info = torch.utils.data.get_worker_info()
        return self.rank * 1000 + (info.id if info else 0)


class ShardStream(torch.utils.data.IterableDataset):
    """One rank's stream of decoded samples (and skip markers), in chunks of CHUNK."""

    def __init__(
        self,
        shards: list[str],
        image_size: Preprocess | int | None,
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
        resampled: bool = False,
        epoch: int = 0,
    ) -> None:
        super().__init__()
        self.shards, self.image_size, self.rank, self.world = shards, image_size, rank, world
        self.seed, self.resampled, self.epoch = seed, resampled, epoch

    def urls(self) -> Iterator[str]:
        if self.resampled:
            shards = wds.ResampledShards(
                self.shards,
                seed=self.seed * 1_000_003 + self.epoch,
                worker_seed=_WorkerSeed(self.rank),
                deterministic=True,
            )
            yield from (s["url"] for s in shards)
            return
        mine = self.shards[self.rank :: self.world]  # split by node: a fixed share per rank
        order = np.random.default_rng([self.seed, self.epoch, self.rank]).permutation(len(mine))
        yield from wds.split_by_worker([mine[i] for i in order])  # split by loader worker

    def samples(self) -> Iterator[dict]:
        rng = None
        if isinstance(self.image_size, Preprocess) and self.image_size.aug != "none":
            info = torch.utils.data.get_worker_info()
            worker = info.id if info else 0
            rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker])
        for url in self.urls():
            for s in shard_samples(url):
                yield decode_sample(s, self.image_size, rng)

    def __iter__(self) -> Iterator[list[dict]]:
        chunk = []
        for item in self.samples():
            chunk.append(item)
            if len(chunk) == CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _unbatched(x):
    return x


class StreamBatches:
    """Batches of exactly `batch_size` decoded samples from a ShardStream, epoch after epoch.

    Yields (images (b, 3, S, S), captions, labels); skip markers go to `skips`. An epoch that
    yields no decodable sample at all raises InputError (no data: never train on nothing).
    """

    def __init__(self, stream: ShardStream, batch_size: int, workers: int, skips: SkipLog) -> None:
        self.stream, self.batch_size, self.workers, self.skips = stream, batch_size, workers, skips
        if not stream.resampled and len(stream.shards) < stream.world:
            raise InputError(
                f"{len(stream.shards)} shard(s) for {stream.world} ranks: every rank needs at "
                "least one shard (split by node); add shards or pass --dataset-resampled"
            )

    def epoch_items(self) -> Iterator[dict]:
        loader = torch.utils.data.DataLoader(
            self.stream,
            batch_size=None,
            num_workers=self.workers,
            collate_fn=_unbatched,
            persistent_workers=False,
        )
        for chunk in loader:
            yield from chunk

    def __iter__(self) -> Iterator[tuple[Tensor, list[str], list[int]]]:
        buf: list[dict] = []
        while True:
            good = 0
            for item in self.epoch_items():
                if "__skip__" in item:
                    self.skips.add(item["__skip__"], item["__id__"])
                    continue
                good += 1
                buf.append(item)
                if len(buf) == self.batch_size:
                    yield collate_items(buf)
                    buf = []
            if not good:
                raise InputError(
                    f"no decodable sample in {len(self.stream.shards)} shard(s) on rank "
                    f"{self.stream.rank} (epoch {self.stream.epoch}): every sample lacked an image "
                    "or caption or failed to decode"
                )
            self.stream.epoch += 1


def collate_items(items: list[dict]) -> tuple[Tensor, list[str], list[int]]:
    return (
        torch.stack([it["image"] for it in items]),
        [it["caption"] for it in items],
        [it["label"] for it in items],
    )


def read_stream(
    shards: list[str], limit: int | None = None, image_size: Preprocess | int | None = None
):
    """Decoded samples of the shards in order (one process), at most `limit`; and the skips."""
    skips, out = SkipLog(), []
    raw = (decode_sample(s, image_size) for url in shards for s in shard_samples(url))
    for item in raw:
        if "__skip__" in item:
            skips.add(item["__skip__"], item["__id__"])
            continue
        out.append(item)
        if limit is not None and len(out) >= limit:
            break
    return out, skips


def stream_captions(shards: list[str], limit: int) -> list[str]:
    """The first `limit` non-empty captions of the shards (images are not decoded)."""
    out = []
    for url in shards:
        for s in shard_samples(url):
            text = s.get("txt", b"").decode("utf-8", "replace").strip()
            if text:
                out.append(text)
                if len(out) >= limit:
                    return out
    return out

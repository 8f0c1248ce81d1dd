"""webdataset streaming (must-show): split by node and worker, resampling, truncated shards, .cls."""

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from pmilab.errors import InputError
from pmilab.pretrain.data import SkipLog
from pmilab.pretrain.stream import ShardStream, StreamBatches


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def write_shards(tmp: Path, n_shards: int, per_shard: int, cls: bool = False) -> dict:
    """Shards data-000.tar ...; returns {"shard:key": pixels}."""
    rng, pixels = np.random.default_rng(0), {}
    for s in range(n_shards):
        url = str(tmp / f"data-{s:03d}.tar")
        with wds.TarWriter(url) as w:
            for j in range(per_shard):
                k = s * per_shard + j
                a = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                sample = {"__key__": f"s{k:05d}", "png": png(a), "txt": f"sample {k} of {k % 3}"}
                if cls:
                    sample["cls"] = str(k % 3)
                w.write(sample)
                pixels[f"{url}:s{k:05d}"] = a
    return pixels


def epoch_ids(shards, rank, world, workers, epoch=0) -> list[str]:
    stream = ShardStream(shards, 8, rank, world, seed=5, epoch=epoch)
    batches = StreamBatches(stream, batch_size=4, workers=workers, skips=SkipLog())
    return [it["__id__"] for it in batches.epoch_items() if "__skip__" not in it]


def test_two_ranks_two_workers_see_every_sample_once_per_epoch(tmp_path):
    pixels = write_shards(tmp_path, 8, 5)
    shards = sorted(str(p) for p in tmp_path.glob("*.tar"))
    for epoch in (0, 1):
        per_rank = [epoch_ids(shards, r, 2, workers=2, epoch=epoch) for r in (0, 1)]
        seen = per_rank[0] + per_rank[1]
        assert sorted(seen) == sorted(pixels)  # every sample, exactly once
        assert len(seen) == len(set(seen)) == 40
        assert not set(per_rank[0]) & set(per_rank[1])  # the ranks split the shards
    # the shard order changes with the epoch
    assert epoch_ids(shards, 0, 2, 0, epoch=0) != epoch_ids(shards, 0, 2, 0, epoch=1)


def test_stream_batches_carry_the_exact_pixels_and_captions(tmp_path):
    pixels = write_shards(tmp_path, 2, 3)
    stream = ShardStream(sorted(str(p) for p in tmp_path.glob("*.tar")), 8)
    items = list(StreamBatches(stream, 4, 0, SkipLog()).epoch_items())
    assert len(items) == 6
    for it in items:
        a = pixels[it["__id__"]]
        ref = torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1) / 127.5 - 1
        assert torch.equal(it["image"], ref) and it["caption"].startswith("sample ")


def test_resampled_stream_goes_past_one_epoch(tmp_path):
    write_shards(tmp_path, 2, 3)
    shards = sorted(str(p) for p in tmp_path.glob("*.tar"))
    stream = ShardStream(shards, 8, resampled=True)
    it = iter(StreamBatches(stream, 4, 0, SkipLog()))
    got = [next(it) for _ in range(5)]  # 20 samples from 6: resampling never ends
    assert stream.epoch == 0 and all(len(b[1]) == 4 for b in got)


def pretrain(tmp_path, data: str, *extra: str) -> dict:
    from pmilab.cli import main

    out = tmp_path / "run"
    args = ["pretrain", "--data", data, "--image-size", "8", "--width", "16", "--dim", "4"]
    args += ["--batch-size", "4", "--warmup", "1", "--no-progress", "--out", str(out), *extra]
    assert main(args) == 0
    return json.loads((out / "summary.json").read_text())


def test_cli_trains_past_one_epoch_with_and_without_resampling(tmp_path):
    write_shards(tmp_path, 2, 3)
    spec = str(tmp_path / "data-{000..001}.tar")
    for extra in (["--dataset-resampled"], []):
        summary = pretrain(tmp_path, spec, "--steps", "5", *extra)  # 20 samples from 6
        assert summary["steps"] == 5 and summary["skipped"] == {}
        import shutil

        shutil.rmtree(tmp_path / "run")


def test_truncated_shard_is_skipped_counted_and_named(tmp_path):
    write_shards(tmp_path, 3, 4)
    bad = tmp_path / "data-001.tar"
    raw = bad.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2 + 100])  # cut inside a member
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = pretrain(tmp_path, str(tmp_path), "--steps", "6")
    assert summary["skipped"] == {"unreadable_shard": 1}  # counted once over several epochs
    named = [str(w.message) for w in caught if "unreadable shard" in str(w.message)]
    assert named == [f"skipped (unreadable shard): {bad}"]


def test_cls_labels_give_zero_shot_with_labels_and_templates_files(tmp_path):
    from pmilab.pretrain.evaluate import evaluate

    write_shards(tmp_path, 2, 6, cls=True)
    pretrain(tmp_path, str(tmp_path), "--steps", "2")
    (tmp_path / "labels.json").write_text(json.dumps(["zero", "one", "two"]))
    (tmp_path / "templates.json").write_text(json.dumps(["a photo of {c}", "{} again"]))
    res = evaluate(
        tmp_path / "run",
        str(tmp_path),
        n_max=6,
        progress=False,
        labels_file=str(tmp_path / "labels.json"),
        templates_file=str(tmp_path / "templates.json"),
    )
    assert res["zeroshot_classes"] == ["zero", "one", "two"] and res["n_eval"] == 6
    assert 0 <= res["zeroshot_top1"] <= 1 and "probe_top1" in res


def test_shards_without_a_decodable_sample_fail_before_training(tmp_path):
    with wds.TarWriter(str(tmp_path / "data-000.tar")) as w:
        for k in range(3):
            w.write({"__key__": f"k{k}", "png": b"garbage", "txt": "hello"})
    from pmilab.pretrain.train import PretrainConfig, train

    cfg = PretrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), progress=False)
    with pytest.raises(InputError, match="no decodable sample in 1 shard"):
        train(cfg)
    assert not (tmp_path / "run").exists()

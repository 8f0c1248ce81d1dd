"""Offline readers (CSV, webdataset shards, digits) and bad data, on files the tests write."""

import io
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from pmilab.errors import InputError
from pmilab.pretrain.data import ImageTextDataset, collate, to_tensor
from pmilab.pretrain.readers import DIGIT_WORDS, expand_shards, load_data

ROOT = Path(__file__).resolve().parents[2]


def images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(n)]


def png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def expected(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1) / 127.5 - 1


def write_csv(tmp: Path, caps: list[str], extra: str = "", corrupt: tuple = ()) -> tuple:
    arrs = images(len(caps))
    (tmp / "img").mkdir(exist_ok=True)
    lines = ["filepath,caption" + extra]
    for i, (a, c) in enumerate(zip(arrs, caps, strict=True)):
        path = tmp / "img" / f"{i}.png"
        path.write_bytes(b"not a png" if i in corrupt else png_bytes(a))
        lines.append(f"img/{i}.png,{c}" + ("," + c.split()[-1] if extra else ""))
    (tmp / "data.csv").write_text("\n".join(lines) + "\n")
    return tmp / "data.csv", arrs


def test_csv_reader_reads_pixels_and_captions_exactly(tmp_path):
    caps = [f"a photo of a {w}" for w in ("cat", "dog", "cat", "bird")]
    path, arrs = write_csv(tmp_path, caps, extra=",label")
    data = load_data(str(path))
    assert data.captions == caps and not sum(data.skipped.values())
    assert data.class_names == ["bird", "cat", "dog"] and data.labels.tolist() == [1, 2, 1, 0]
    ds = ImageTextDataset(data, image_size=8)
    for i, a in enumerate(arrs):
        x, j = ds[i]
        assert j == i and torch.equal(x, expected(a))


def test_csv_empty_captions_and_corrupt_images_are_skipped_and_counted(tmp_path):
    caps = ["one", "", "three", "   ", "five"]
    path, arrs = write_csv(tmp_path, caps, corrupt=(2,))
    with pytest.warns(UserWarning, match="2 sample"):
        data = load_data(str(path))
    assert data.captions == ["one", "three", "five"] and data.skipped["empty_caption"] == 2
    ds = ImageTextDataset(data, image_size=8)
    imgs, idx, bad = collate([ds[i] for i in range(len(ds))])
    assert idx == [0, 2] and bad == [1] and imgs.shape == (2, 3, 8, 8)
    assert torch.equal(imgs[1], expected(arrs[4]))


def test_training_counts_corrupt_images_in_its_summary(tmp_path):
    from pmilab.pretrain.train import PretrainConfig, train

    caps = [f"a {c} {s}" for c in ("red", "blue", "green", "black") for s in ("square", "disc")]
    path, _ = write_csv(tmp_path, caps * 2, extra=",label", corrupt=(3, 7))
    cfg = PretrainConfig(
        data=str(path),
        out=str(tmp_path / "run"),
        steps=4,
        batch_size=8,
        width=16,
        dim=4,
        image_size=8,
        warmup=1,
        ckpt_every=2,
        log_every=1,
        progress=False,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = train(cfg)
    # 4 steps x 8 of 16 samples = 2 epochs: each corrupt file is met twice, counted once,
    # and named in exactly one warning
    assert summary["skipped"]["corrupt_image"] == 2
    named = [str(w.message) for w in caught if "corrupt image" in str(w.message)]
    assert sorted(m.rsplit("/", 1)[1] for m in named) == ["3.png", "7.png"]
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[-1].split(",")[5] == "2"  # the skipped column of the last row
    # eval on a user CSV: half fits the probe, half is held out; corrupt files are counted
    from pmilab.pretrain.evaluate import evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = evaluate(tmp_path / "run", str(path), tmp_path / "eval", progress=False)
    perm = np.random.default_rng(0).permutation(16)  # the split evaluate() documents
    held_out_bad = len({3, 7} & set(perm[8:].tolist()))
    assert res["n_eval"] == 8 - held_out_bad
    # every skipped sample of the evaluation is counted, the probe half's included
    assert res["skipped"]["corrupt_image"] == 2
    assert res["skipped_by_split"]["eval"].get("corrupt_image", 0) == held_out_bad
    assert res["skipped_by_split"]["probe"].get("corrupt_image", 0) == 2 - held_out_bad
    assert res["zeroshot_classes"] == ["disc", "square"]
    for key in ("zeroshot_top1", "probe_top1", "retrieval_r1_i2t", "retrieval_r5_t2i"):
        assert 0.0 <= res[key] <= 1.0
    assert (tmp_path / "eval" / "eval.json").exists()


def test_missing_csv_column_is_one_clear_error(tmp_path):
    (tmp_path / "bad.csv").write_text("path,text\na.png,hello\n")
    with pytest.raises(InputError, match="'filepath'"):
        load_data(str(tmp_path / "bad.csv"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pmilab",
            "pretrain",
            "--data",
            str(tmp_path / "bad.csv"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "caption" in proc.stderr


def write_shards(tmp: Path, n_shards: int, per_shard: int, broken: bool = False) -> list:
    arrs, caps, k = images(n_shards * per_shard, seed=1), [], 0
    for s in range(n_shards):
        with wds.TarWriter(str(tmp / f"data-{s:03d}.tar")) as w:
            for _ in range(per_shard):
                cap = f"sample number {k}"
                sample = {"__key__": f"s{k:05d}", "png": png_bytes(arrs[k]), "txt": cap}
                if broken and k == 1:
                    sample["txt"] = ""
                if broken and k == 2:
                    sample["png"] = b"garbage"
                caps.append(sample["txt"])
                w.write(sample)
                k += 1
        if broken and s == 0:
            with wds.TarWriter(str(tmp / "data-009.tar")) as w:  # image without caption
                w.write({"__key__": "lonely", "png": png_bytes(arrs[0])})
    return arrs, caps


def test_webdataset_shards_read_exactly_by_any_spec(tmp_path):
    arrs, caps = write_shards(tmp_path, 3, 4)
    by_brace = load_data(str(tmp_path / "data-{000..002}.tar"))
    by_dir = load_data(str(tmp_path))
    by_glob = load_data(str(tmp_path / "data-*.tar"))
    assert by_brace.captions == by_dir.captions == by_glob.captions == caps
    ds = ImageTextDataset(by_brace, image_size=8)
    for i in range(len(caps)):
        assert torch.equal(ds[i][0], expected(arrs[i]))
    with pytest.raises(FileNotFoundError, match="data-003.tar"):
        expand_shards(str(tmp_path / "data-{000..003}.tar"))


def test_shard_bad_samples_are_skipped_with_counts(tmp_path):
    write_shards(tmp_path, 1, 4, broken=True)
    with pytest.warns(UserWarning):
        data = load_data(str(tmp_path))
    assert data.skipped == {"incomplete_sample": 1, "empty_caption": 1}
    assert len(data) == 3
    _, idx, bad = collate([ImageTextDataset(data, 8)[i] for i in range(3)])
    assert bad == [1]  # the garbage png (sample 2; sample 1 was dropped for its empty caption)


def test_digits_are_captioned_by_their_label():
    train, test = load_data("digits", "train"), load_data("digits", "test")
    assert len(train) + len(test) == 1797 and len(test) == 360
    for cap, lab in zip(test.captions, test.labels, strict=True):
        assert cap.split()[-1] == DIGIT_WORDS[lab]
    x = to_tensor(Image.fromarray(test.sources[0]), 8)
    assert x.shape == (3, 8, 8) and x.min() >= -1 and x.max() <= 1


def test_unknown_data_spec_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="neither"):
        load_data(str(tmp_path / "nothing-here"))


def test_train_and_eval_on_shards_with_more_workers_than_shards(tmp_path):
    """Retrieval-only eval (no labels) on shards; 2 loader workers read 1 shard."""
    from pmilab.pretrain.evaluate import evaluate
    from pmilab.pretrain.train import PretrainConfig, train

    write_shards(tmp_path, 1, 16)
    shard = str(tmp_path / "data-000.tar")
    cfg = PretrainConfig(
        data=shard,
        out=str(tmp_path / "run"),
        steps=2,
        batch_size=8,
        width=16,
        dim=4,
        image_size=8,
        warmup=1,
        workers=2,
        progress=False,
    )
    with pytest.warns(UserWarning, match="without a shard"):
        assert train(cfg)["skipped"] == {}
    res = evaluate(tmp_path / "run", shard, progress=False)
    assert res["n_eval"] == 16 and "zeroshot_top1" not in res  # no labels: all held out
    assert 0 <= res["retrieval_r1_i2t"] <= res["retrieval_r5_i2t"] <= res["retrieval_r10_i2t"] <= 1

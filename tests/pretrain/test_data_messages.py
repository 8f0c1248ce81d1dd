"""Bad CSV data says what is wrong, in one line each: a header without rows, captions that are
all empty, missing image files (count and first names), corrupt images; skipped samples are
warned about as one line, without a Python source line."""

import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from pmilab.cli import main
from pmilab.pretrain import data as data_module

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--image-size", "8", "--width", "16", "--dim", "4", "--threads", "1", "--no-progress"]


def png(seed: int) -> bytes:
    a = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def table(tmp: Path, rows: list[tuple[str, str]], images: dict[str, bytes]) -> Path:
    """data.csv with `rows` (filepath, caption) and the files `images` beside it."""
    for name, content in images.items():
        (tmp / name).write_bytes(content)
    lines = ["filepath,caption"] + [f"{f},{c}" for f, c in rows]
    (tmp / "data.csv").write_text("\n".join(lines) + "\n")
    return tmp / "data.csv"


def refusal(tmp: Path, csv: Path, capsys) -> str:
    """The one stderr line of `pmilab pretrain` refusing `csv` (exit 2, nothing trained)."""
    rc = main(["pretrain", "--data", str(csv), "--out", str(tmp / "run"), *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert not (tmp / "run").exists()
    return err[0]


def test_a_header_without_rows(tmp_path, capsys):
    line = refusal(tmp_path, table(tmp_path, [], {}), capsys)
    assert "has a header (filepath, caption) but no rows" in line
    assert "missing" not in line and "corrupt" not in line


def test_captions_that_are_all_empty(tmp_path, capsys):
    rows = [("0.png", ""), ("1.png", "   ")]
    line = refusal(tmp_path, table(tmp_path, rows, {"0.png": png(0), "1.png": png(1)}), capsys)
    assert "column 'caption'): all 2 caption(s) are empty" in line
    assert "image" not in line


def test_missing_image_files_are_counted_and_named(tmp_path, capsys):
    rows = [(f"gone-{i}.png", f"caption {i}") for i in range(5)]
    line = refusal(tmp_path, table(tmp_path, rows, {}), capsys)
    first = ", ".join(str(tmp_path / f"gone-{i}.png") for i in range(3))
    assert f"5 image file(s) are missing ({first} and 2 more)" in line
    assert "corrupt" not in line


def test_corrupt_images_are_told_from_missing_ones(tmp_path, capsys):
    rows = [("bad.png", "a caption"), ("gone.png", "another")]
    line = refusal(tmp_path, table(tmp_path, rows, {"bad.png": b"not a png"}), capsys)
    assert f"1 image file(s) are missing ({tmp_path / 'gone.png'})" in line
    assert f"1 image(s) are corrupt, unreadable as images ({tmp_path / 'bad.png'})" in line


def test_training_warns_one_line_per_skipped_image_without_source_lines(tmp_path):
    """A run on 16 rows, one image missing and one corrupt: each is warned about in one line
    under its own reason and counted under it in summary.json."""
    images = {f"{i}.png": png(i) for i in range(16) if i != 3}
    images["5.png"] = b"not a png"
    rows = [(f"{i}.png", f"shape {i % 4}") for i in range(16)]
    csv = table(tmp_path, rows, images)
    out = tmp_path / "run"
    args = ["--data", str(csv), "--out", str(out), "--steps", "2", "--batch-size", "8"]
    cmd = [sys.executable, "-m", "pmilab", "pretrain", *args, "--warmup", "1", *TINY]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    warned = [x for x in proc.stderr.splitlines() if "warning" in x]
    assert sorted(warned) == [
        f"pmilab pretrain: warning: skipped (corrupt image): {tmp_path / '5.png'}",
        f"pmilab pretrain: warning: skipped (missing image): {tmp_path / '3.png'}",
    ], proc.stderr
    assert "warnings.warn" not in proc.stderr and "Warning:" not in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == {"corrupt_image": 1, "missing_image": 1}


def test_control_the_default_format_prints_the_source_line():
    """What the one-line format replaces: Python's own puts the `warnings.warn(...)` call under
    the message of the same warning."""
    src = Path(data_module.__file__).read_text().splitlines()
    lineno = next(i for i, s in enumerate(src, 1) if 'warnings.warn(f"skipped (' in s)
    with warnings.catch_warnings():
        text = warnings.formatwarning("skipped", UserWarning, data_module.__file__, lineno)
    assert len(text.strip().splitlines()) == 2 and "warnings.warn(" in text


def test_one_missing_image_among_good_ones_is_skipped_not_refused(tmp_path):
    from pmilab.pretrain.readers import load_data

    csv = table(tmp_path, [("gone.png", "a"), ("bad.png", "b"), ("ok.png", "c")], {})
    (tmp_path / "bad.png").write_bytes(b"not a png")
    (tmp_path / "ok.png").write_bytes(png(0))
    data = load_data(str(csv))
    assert data_module.first_decodable(data, 8) == 2
    reasons = [data_module.undecodable(data, i) for i in range(2)]
    assert reasons == ["missing_image", "corrupt_image"]

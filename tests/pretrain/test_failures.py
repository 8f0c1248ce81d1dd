"""No silent failures (must-show): each failure the issue found is one line, an exit code, and
leaves what was there before untouched."""

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pmilab.cli import main

BASE = ["pretrain", "--data", "digits", "--image-size", "8", "--width", "16", "--dim", "4"]
BASE += ["--batch-size", "16", "--warmup", "1", "--no-progress"]


def run(capsys, *args: str) -> tuple[int, list[str], str]:
    rc = main(list(args))
    cap = capsys.readouterr()
    return rc, cap.err.strip().splitlines(), cap.out


def test_nan_loss_stops_names_the_step_and_keeps_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    rc, err, _ = run(capsys, *BASE, "--steps", "1", "--lr", "1e30", "--out", str(out))
    assert rc == 0, err  # one step at LR 1e30: finite loss, huge (finite) weights
    before = (out / "ckpt.pt").read_bytes()
    log_before = (out / "log.csv").read_bytes()
    rc, err, out_text = run(
        capsys, *BASE, "--steps", "3", "--lr", "1e30", "--out", str(out), "--resume"
    )
    assert rc == 1
    assert "extends the run from 1 to 3 steps" in out_text
    assert err == [
        "pmilab pretrain: stopped: the loss is nan at step 2 of 3; stopped without writing (the "
        "checkpoint of step 1 is kept). Lower --lr (now 1e+30) or check the data"
    ]
    assert (out / "ckpt.pt").read_bytes() == before  # byte-identical
    assert (out / "log.csv").read_bytes() == log_before
    assert not list(out.glob(".ckpt.pt.tmp-*"))


def write_csv(tmp: Path, n: int, bad: set[int], sep: str = ",", cols=("filepath", "caption")):
    (tmp / "img").mkdir(exist_ok=True)
    rows = [sep.join(cols)]
    rng = np.random.default_rng(0)
    for i in range(n):
        path = tmp / "img" / f"{i}.png"
        if i in bad:
            path.write_bytes(b"not a png")
        else:
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buf, "PNG")
            path.write_bytes(buf.getvalue())
        rows.append(f"img/{i}.png{sep}a picture number {i % 3}")
    name = "data.tsv" if sep == "\t" else "data.csv"
    (tmp / name).write_text("\n".join(rows) + "\n")
    return tmp / name


def test_no_decodable_image_fails_before_training(tmp_path, capsys):
    csv = write_csv(tmp_path, 6, bad={0, 1, 2, 3, 4, 5})
    (tmp_path / "img" / "5.png").unlink()  # missing, not just corrupt
    out = tmp_path / "run"
    rc, err, _ = run(capsys, *BASE, "--data", str(csv), "--batch-size", "2", "--out", str(out))
    assert rc == 2
    img = tmp_path / "img"
    assert err == [
        f"pmilab pretrain: error: no decodable image in data: 1 image file(s) are missing "
        f"({img / '5.png'}) and 5 image(s) are corrupt, unreadable as images ({img / '0.png'}, "
        f"{img / '1.png'}, {img / '2.png'} and 2 more)"
    ]
    assert not out.exists()


def test_resume_refuses_changed_settings_and_allows_longer_runs(tmp_path, capsys):
    out = tmp_path / "run"
    args = [*BASE, "--steps", "2", "--out", str(out)]
    assert run(capsys, *args)[0] == 0
    config = (out / "config.json").read_bytes()
    ckpt = (out / "ckpt.pt").read_bytes()
    change = ["--seed", "1", "--batch-size", "8", "--lr", "0.01", "--data", "shapes"]
    rc, err, _ = run(capsys, *args, *change, "--resume")
    assert rc == 2 and len(err) == 1
    for flag in ("--data 'digits' (now 'shapes')", "--seed 0 (now 1)", "--batch-size 16 (now 8)"):
        assert flag in err[0]
    assert "--lr 0.002 (now 0.01)" in err[0]
    rc, err, _ = run(capsys, *args, "--similarity", "kme", "--warmup", "0", "--resume")
    assert (
        rc == 2 and "--similarity 'linear' (now 'kme')" in err[0] and "--warmup 1 (now 0)" in err[0]
    )
    rc, err, _ = run(capsys, *BASE, "--steps", "1", "--out", str(out), "--resume")
    assert rc == 2 and "--steps 2 (now 1; only an extension is allowed)" in err[0]
    assert (out / "config.json").read_bytes() == config and (out / "ckpt.pt").read_bytes() == ckpt
    rc, err, text = run(capsys, *BASE, "--steps", "3", "--out", str(out), "--resume")
    assert rc == 0 and "--resume extends the run from 2 to 3 steps" in text
    assert json.loads((out / "config.json").read_text())["pretrain"]["steps"] == 3


@pytest.mark.parametrize("damage", ["random", "truncated", "foreign"])
def test_corrupt_or_foreign_checkpoint_is_one_line(tmp_path, capsys, damage):
    out = tmp_path / "run"
    assert run(capsys, *BASE, "--steps", "1", "--out", str(out))[0] == 0
    path = out / "ckpt.pt"
    if damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:5000])
    else:
        import torch

        torch.save({"weights": torch.zeros(3)}, path)
    for args in (
        [*BASE, "--steps", "2", "--out", str(out), "--resume"],
        ["eval", "--checkpoint", str(out), "--data", "digits", "--out", str(tmp_path / "e")],
    ):
        rc, err, _ = run(capsys, *args)
        assert rc == 2 and len(err) == 1, err
        assert str(path) in err[0]
        what = (
            "is not a pmilab-pretrain/2 checkpoint"
            if damage == "foreign"
            else "is not a readable checkpoint"
        )
        assert what in err[0]


def test_eval_n_zero_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(capsys, *BASE, "--steps", "1", "--out", str(out))[0] == 0
    rc, err, _ = run(
        capsys,
        "eval",
        "--checkpoint",
        str(out),
        "--data",
        "digits",
        "--out",
        str(tmp_path / "e"),
        "--n",
        "0",
    )
    assert rc == 2
    assert err == ["pmilab eval: error: --n must be at least 2 (held-out pairs to evaluate), got 0"]


def test_warmup_longer_than_the_run_is_clamped_with_a_warning(tmp_path, capsys):
    out = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc, err, _ = run(
            capsys,
            *BASE[:-3],
            "--warmup",
            "30",
            "--steps",
            "20",
            "--out",
            str(out),
            "--log-every",
            "1",
            "--no-progress",
        )
    assert rc == 0
    msgs = [str(w.message) for w in caught if "--warmup" in str(w.message)]
    assert msgs == [
        "--warmup 30 is not shorter than --steps 20: the learning rate would never leave warmup; "
        "clamped to 2 steps (a tenth of the run). Pass a shorter --warmup to choose it yourself."
    ]
    lrs = [float(line.split(",")[2]) for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert lrs[:3] == pytest.approx([1e-3, 2e-3, 2e-3])  # 2 warmup steps reach the peak ...
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:], strict=False))  # ... then the cosine
    assert lrs[-1] < 1e-4
    assert json.loads((out / "config.json").read_text())["warmup_used"] == 2


def test_keep_checkpoints_keeps_the_last_k(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        *BASE,
        "--steps",
        "4",
        "--ckpt-every",
        "1",
        "--keep-checkpoints",
        "2",
        "--out",
        str(out),
    ]
    assert run(capsys, *args)[0] == 0
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept == ["ckpt-00000003.pt", "ckpt-00000004.pt"]
    assert (out / "checkpoints" / kept[-1]).read_bytes() == (out / "ckpt.pt").read_bytes()
    import torch

    assert torch.load(out / "checkpoints" / kept[0], weights_only=True)["step"] == 3

"""Every command that writes refuses an --out holding an earlier run of itself or another
command's output (one line, exit 2, every earlier file byte-identical), unless --overwrite; the
resume paths (`pretrain --resume`, `verify` on its own --out) still go on.

The earlier outputs are real runs of `fit`, `pretrain` and `eval` (so their files are what those
commands write) and a `verify` folder with its files (its meta.json corrupt, so that a verify
that is let through stops at reading it, before training)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from pmilab.cli import main

PRETRAIN = ["pretrain", "--data", "digits", "--image-size", "8", "--width", "16", "--dim", "4"]
PRETRAIN += ["--batch-size", "16", "--warmup", "0", "--threads", "1", "--no-progress"]
FIT = ["fit", "--dist", "latent:nx=4,ny=4,k=2,seed=0", "--quiet"]
NEVER = "100000000"  # --steps of a command that must be refused before training


def eval_args(d: Path, n: int = 20) -> list[str]:
    return ["eval", "--checkpoint", str(d / "pretrain"), "--data", "digits", "--n", str(n)]


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    d = tmp_path_factory.mktemp("earlier")
    assert main([*FIT, "--steps", "3", "--out", str(d / "fit")]) == 0
    assert main([*PRETRAIN, "--steps", "1", "--out", str(d / "pretrain")]) == 0
    assert main([*eval_args(d), "--threads", "1", "--no-progress", "--out", str(d / "eval")]) == 0
    v = d / "verify"
    (v / "runs").mkdir(parents=True)
    (v / "report.md").write_text("# report\n")
    (v / "results.csv").write_text("run_id,sweep\n")
    (v / "meta.json").write_text('{"preset": "smoke", "seeds": nul')  # corrupt on purpose
    partial = d / "pretrain-partial"  # killed before its first checkpoint
    shutil.copytree(d / "pretrain", partial)
    (partial / "ckpt.pt").unlink()
    return d


@pytest.fixture
def d(earlier, tmp_path):
    """A fresh copy of the earlier outputs per test."""
    shutil.copytree(earlier, tmp_path / "in")
    return tmp_path / "in"


def snapshot(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def command(name: str, d: Path) -> list[str]:
    return {
        "fit": [*FIT, "--steps", NEVER],
        "verify": ["verify", "--preset", "smoke", "--jobs", "1", "--claims", "T5"],
        "pretrain": [*PRETRAIN, "--steps", "1"],
        "eval": eval_args(d),
    }[name]


REFUSED = [
    ("fit", "verify", "meta.json, report.md, results.csv, runs"),
    ("fit", "pretrain", "config.json, ckpt.pt, tokenizer.json, log.csv, summary.json"),
    ("fit", "eval", "eval.json"),
    ("verify", "fit", "config.json, metrics.json, model.pt, logits.npy"),
    ("verify", "pretrain", "config.json, ckpt.pt"),
    ("verify", "eval", "eval.json"),
    ("pretrain", "fit", "config.json, metrics.json, model.pt"),
    ("pretrain", "verify", "meta.json, report.md"),
    ("pretrain", "eval", "eval.json"),
    ("pretrain", "pretrain-partial", "config.json, tokenizer.json, log.csv"),
    ("eval", "eval", "eval.json"),
    ("eval", "fit", "config.json, metrics.json"),
    ("eval", "verify", "meta.json"),
    ("eval", "pretrain", "config.json, ckpt.pt"),
]


@pytest.mark.parametrize(
    "cmd, folder, files", REFUSED, ids=[f"{c}-into-{f}" for c, f, _ in REFUSED]
)
def test_an_out_holding_earlier_output_is_refused(cmd, folder, files, d, capsys):
    before = snapshot(d)
    rc = main([*command(cmd, d), "--out", str(d / folder)])
    line = one_line(capsys)
    assert rc == 2
    assert line.startswith(f"pmilab {cmd}: error: the output folder {d / folder} holds an earlier")
    assert f"({files}" in line and "pass --overwrite" in line
    assert snapshot(d) == before


def test_pretrain_into_its_own_checkpoint_names_resume_and_overwrite(d, capsys):
    before = snapshot(d)
    assert main([*command("pretrain", d), "--out", str(d / "pretrain")]) == 2
    line = one_line(capsys)
    assert "already holds a checkpoint" in line and "--resume" in line and "--overwrite" in line
    assert snapshot(d) == before


def test_resume_and_overwrite_exclude_each_other(d, capsys):
    before = snapshot(d)
    argv = [*command("pretrain", d), "--resume", "--overwrite", "--out", str(d / "pretrain")]
    assert main(argv) == 2
    assert "pass one of them" in one_line(capsys)
    assert snapshot(d) == before


def test_pretrain_resume_goes_on_in_its_own_folder_only(d, capsys):
    """--resume continues a pretrain run (own files allowed) but not into a fit run."""
    before = snapshot(d)
    assert main([*PRETRAIN, "--steps", "1", "--resume", "--out", str(d / "fit")]) == 2
    assert "holds an earlier run (metrics.json, model.pt" in one_line(capsys)
    assert snapshot(d) == before
    assert main([*PRETRAIN, "--steps", "2", "--resume", "--out", str(d / "pretrain")]) == 0
    assert json.loads((d / "pretrain" / "summary.json").read_text())["steps"] == 2
    capsys.readouterr()


def test_pretrain_overwrite_replaces_the_whole_earlier_run(d, capsys):
    """--overwrite leaves nothing of the old run: its numbered checkpoints, log and TensorBoard
    files go; another command's file beside it stays."""
    run = d / "pretrain"
    (run / "checkpoints").mkdir(exist_ok=True)
    (run / "checkpoints" / "ckpt-999.pt").write_bytes(b"old")
    (run / "tensorboard").mkdir(exist_ok=True)
    (run / "tensorboard" / "events.old").write_bytes(b"old")
    (run / "notes.txt").write_text("mine")
    assert main([*PRETRAIN, "--steps", "1", "--overwrite", "--out", str(run)]) == 0
    assert not (run / "checkpoints" / "ckpt-999.pt").exists()
    assert not (run / "tensorboard" / "events.old").exists()
    assert (run / "notes.txt").read_text() == "mine"
    assert json.loads((run / "summary.json").read_text())["steps"] == 1
    capsys.readouterr()


def test_verify_on_its_own_out_is_let_through(d, capsys):
    """Control: verify's own folder passes the check; it stops at the corrupt meta.json."""
    before = snapshot(d)
    assert main([*command("verify", d), "--out", str(d / "verify")]) == 2
    line = one_line(capsys)
    assert "is not a pmilab verify meta.json" in line and "holds an earlier" not in line
    assert snapshot(d) == before


def test_verify_overwrite_lets_a_foreign_folder_through(d, capsys):
    """With --overwrite the check passes: the run stops at the next check (an unreachable Ray
    address, refused before anything is written)."""
    before = snapshot(d)
    argv = [*command("verify", d), "--overwrite", "--executor", "ray", "--address", "127.0.0.1:1"]
    assert main([*argv, "--out", str(d / "fit")]) == 2
    line = one_line(capsys)
    assert "holds an earlier" not in line and "ray" in line.lower()
    assert snapshot(d) == before


def test_eval_overwrite_replaces_its_eval_json(d, capsys):
    old = json.loads((d / "eval" / "eval.json").read_text())
    argv = [*eval_args(d, n=30), "--threads", "1", "--no-progress", "--overwrite"]
    assert main([*argv, "--out", str(d / "eval")]) == 0
    new = json.loads((d / "eval" / "eval.json").read_text())
    assert new != old
    capsys.readouterr()


def test_pretrain_overwrite_starts_afresh(d, capsys):
    old = (d / "pretrain" / "ckpt.pt").read_bytes()
    argv = [*PRETRAIN, "--steps", "2", "--seed", "1", "--overwrite"]
    assert main([*argv, "--out", str(d / "pretrain")]) == 0
    assert (d / "pretrain" / "ckpt.pt").read_bytes() != old
    assert json.loads((d / "pretrain" / "config.json").read_text())["pretrain"]["seed"] == 1
    assert main([*argv, "--out", str(d / "fit")]) == 0  # a foreign folder too, when asked
    capsys.readouterr()


def test_fit_overwrite_writes_into_a_verify_folder(d, capsys):
    assert main([*FIT, "--steps", "3", "--overwrite", "--out", str(d / "verify")]) == 0
    assert (d / "verify" / "metrics.json").exists()
    capsys.readouterr()

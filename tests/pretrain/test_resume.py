"""Kill and resume (must-show): SIGKILL mid-run, `--resume`, same final state as no kill (CPU)."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pmilab.cli import main
from pmilab.pretrain.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[2]
ARGS = [
    "--data",
    "digits",
    "--image-size",
    "8",
    "--width",
    "16",
    "--dim",
    "8",
    "--batch-size",
    "16",
    "--steps",
    "40",
    "--warmup",
    "5",
    "--ckpt-every",
    "5",
    "--log-every",
    "5",
    "--threads",
    "1",
    "--no-progress",
]


def pretrain(out: Path, *extra: str, wait: bool = True):
    cmd = [sys.executable, "-m", "pmilab", "pretrain", *ARGS, "--out", str(out), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if wait:
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def log_rows(out: Path) -> list[tuple[str, str]]:
    with open(out / "log.csv") as f:
        return [(r["step"], r["loss"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize("sim", ["kme"])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, sim, capsys):
    full, killed = tmp_path / "full", tmp_path / "killed"
    proc = pretrain(killed, "--similarity", sim, wait=False)
    deadline = time.time() + 240
    while not (killed / "ckpt.pt").exists():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    step_at_kill = torch.load(killed / "ckpt.pt", weights_only=False)["step"]
    assert 0 < step_at_kill < 40, "the kill must land mid-run"
    resumed = pretrain(killed, "--similarity", sim, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert main(["pretrain", *ARGS, "--out", str(full), "--similarity", sim]) == 0  # in-process

    a = torch.load(full / "ckpt.pt", weights_only=False)
    b = torch.load(killed / "ckpt.pt", weights_only=False)
    assert a["step"] == b["step"] == 40
    for name, t in a["model"].items():
        assert torch.equal(t, b["model"][name]), name
    assert log_rows(full) == log_rows(killed)
    ea = evaluate(full, "digits", n_max=200, progress=False)
    eb = evaluate(killed, "digits", n_max=200, progress=False)
    keys = ["zeroshot_top1", "retrieval_r1_i2t", "retrieval_r5_t2i", "probe_top1"]
    assert {k: ea[k] for k in keys} == {k: eb[k] for k in keys}
    # the run trained: its logged loss fell. (Zero-shot accuracy is not asserted: after 40 steps
    # at this size it sits at chance, 0.095 against 0.1 on this machine's kernels, and "above
    # 0.1" held only by luck on another CPU.)
    rows = log_rows(full)
    assert float(rows[-1][1]) < float(rows[0][1]) - 0.05, rows

    # in the finished run dir: no --resume is refused, another similarity is one clear error
    base = ["pretrain", *ARGS, "--out", str(killed)]
    assert main([*base, "--similarity", sim]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*base, "--similarity", "wpse", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--similarity '{sim}' (now 'wpse')" in err[0], err

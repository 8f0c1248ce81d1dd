"""Ctrl-C (SIGINT) in `pmilab pretrain`: a checkpoint at the step reached, exit 130, and
`--resume` goes on from it."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from pmilab.cli import main
from tests.pretrain.test_resume import ARGS, ROOT

STEPS = 200  # about 3 s on one thread: the SIGINT lands long before the end


def command(out: Path, *extra: str) -> list[str]:
    args = [*ARGS, "--steps", str(STEPS), "--ckpt-every", "1000", "--log-every", "1"]
    return [sys.executable, "-m", "pmilab", "pretrain", *args, "--out", str(out), *extra]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _default_sigint() -> None:
    """In the child: SIGINT as a terminal gives it. A shell's background job inherits SIGINT
    ignored, and pretrain then (by design) leaves Ctrl-C alone; this test must not depend on
    how pytest itself was started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_checkpoints_the_current_step_and_resume_goes_on(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        command(out),
        cwd=ROOT,
        env=env(),
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    deadline = time.time() + 240
    while not (out / "log.csv").exists():  # the first step is logged: the loop runs
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline
        time.sleep(0.01)
    assert not (out / "ckpt.pt").exists()  # --ckpt-every 1000: only the interrupt writes one
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    step = torch.load(out / "ckpt.pt", weights_only=False)["step"]
    assert 1 <= step < STEPS, "the interrupt must land mid-run"
    with open(out / "log.csv") as f:
        logged = [int(r["step"]) for r in csv.DictReader(f)]
    assert logged == list(range(1, step + 1))  # every finished step is logged, and no other
    assert f"interrupted at step {step} of {STEPS}" in err and "--resume" in err
    assert "Traceback" not in err

    resumed = subprocess.run(
        command(out, "--resume"), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert torch.load(out / "ckpt.pt", weights_only=False)["step"] == STEPS
    with open(out / "log.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, STEPS + 1))
    # the interrupt's checkpoint is a whole step: the resumed run ends as an uninterrupted one
    full = tmp_path / "full"
    assert main(command(full)[3:]) == 0
    a = torch.load(full / "ckpt.pt", weights_only=False)["model"]
    b = torch.load(out / "ckpt.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

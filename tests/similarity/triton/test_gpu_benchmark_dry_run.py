"""The GPU benchmark's code path runs end to end on a CPU (issue 15): `--dry-run` puts Triton in
its interpreter and uses tiny sizes, so what a GPU run executes is checked here, except the
timings and the CUDA memory counters. (benchmarks/gpu_check.sh --dry-run does the same for the
whole script.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.similarity.triton.conftest import SKIP_REASON

pytest.importorskip("triton", reason=SKIP_REASON)

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "pairwise_gpu.py"


def test_arguments():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import pairwise_gpu as bench
    finally:
        sys.path.remove(str(SCRIPT.parent))
    args = bench.parse_args(["--quick", "--heads", "kme", "--name", "x"])
    assert args.quick and not args.dry_run and args.heads == ["kme"] and args.name == "x"
    assert args.impls == list(bench.IMPLS)
    with pytest.raises(SystemExit):
        bench.parse_args(["--quick", "--dry-run"])  # one grid at a time
    assert bench.slug("NVIDIA H200 NVL") == "nvidia-h200-nvl"
    assert bench.GRID == {"B": (1024, 4096, 16384), "M": (4, 8, 16), "d": (64, 256)}


def test_dry_run_writes_the_report(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--dry-run", "--heads", "kme", "--out", str(tmp_path)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    df = pd.read_csv(tmp_path / "dry-run.csv")
    assert set(df.impl) == {"triton", "chunked", "einsum"} and (df.status == "ok").all()
    assert (df.frac_bf16_gemm > 0).all()
    assert (df[df.impl == "triton"].max_rel_diff_vs_chunked < 1e-4).all()
    text = (tmp_path / "dry-run.md").read_text()
    assert "Fraction of the bf16 GEMM rate" in text and "| 20 | 2 | 20 | kme |" in text

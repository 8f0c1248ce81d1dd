"""The GPU benchmark's code path runs end to end on a CPU (issue 15): `--dry-run` puts Triton in
its interpreter and uses tiny sizes, so what a GPU run executes is checked here, except the
timings and the CUDA memory counters. (benchmarks/gpu_check.sh --dry-run does the same for the
whole script.)"""

from __future__ import annotations

import os
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
    assert args.tiles == [None] and bench.configurations(args) == [
        (b, 8, d) for b in (1024, 4096) for d in (64, 256)
    ]


def test_sweep_arguments():
    """--configs replaces the grid; --tiles runs Triton once per shape, the others once."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import pairwise_gpu as bench
    finally:
        sys.path.remove(str(SCRIPT.parent))
    argv = ["--configs", "4096,8,256", "16384,16,64", "--impls", "triton", "chunked"]
    args = bench.parse_args(argv + ["--tiles", "default", "64,32,8,2", "--profile"])
    assert bench.configurations(args) == [(4096, 8, 256), (16384, 16, 64)] and args.profile
    assert bench.runs(args) == [("triton", None), ("triton", (64, 32, 8, 2)), ("chunked", None)]
    assert [bench.tiles_name(t) for t in args.tiles] == ["default", "64,32,8,2"]
    for bad in (
        ["--tiles", "64,32"],
        ["--tiles", "64,x,8"],
        ["--configs", "4096,8"],
        ["--configs", "0,8,64"],
    ):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def test_dry_run_writes_the_report(tmp_path):
    """Runs the interpreter even on a GPU machine, whose CUDA torch may ship an older Triton."""
    from pmilab.similarity._triton_support import interpreter_problem

    if (why := interpreter_problem()) is not None:
        pytest.skip(why)
    cmd = [sys.executable, str(SCRIPT), "--dry-run", "--heads", "kme", "--out", str(tmp_path)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    df = pd.read_csv(tmp_path / "dry-run.csv")
    assert set(df.impl) == {"triton", "chunked", "einsum"} and (df.status == "ok").all()
    assert (df.frac_bf16_gemm > 0).all()
    assert (df[df.impl == "triton"].max_rel_diff_vs_chunked < 1e-4).all()
    text = (tmp_path / "dry-run.md").read_text()
    assert "Fraction of the bf16 GEMM rate" in text and "| 20 | 2 | 20 | kme |" in text


def test_dry_run_with_an_old_interpreter_is_one_line(tmp_path):
    """Where the installed Triton's interpreter cannot run the kernels (3.6.0, measured), the
    dry run says so in one line and exits 2 instead of a traceback from inside a kernel."""
    stub = tmp_path / "site" / "triton-3.6.0.dist-info"
    stub.mkdir(parents=True)
    (stub / "METADATA").write_text("Metadata-Version: 2.1\nName: triton\nVersion: 3.6.0\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stub.parent), str(ROOT)])}
    cmd = [sys.executable, str(SCRIPT), "--dry-run", "--heads", "kme", "--out", str(tmp_path)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    line = res.stderr.strip()
    assert "\n" not in line and line.startswith("pairwise_gpu: error:") and "3.6.0" in line
    assert not any(tmp_path.glob("dry-run*"))


def test_focus_dry_run_runs_every_section(tmp_path):
    """`gpu_check.sh --focus --dry-run`: the sections a GPU session runs for issue 15 (tests, tile
    sweep with profile, missing grid rows, ncu), on CPU at tiny sizes."""
    from pmilab.similarity._triton_support import interpreter_problem

    if (why := interpreter_problem()) is not None:
        pytest.skip(why)
    env = {**os.environ, "PY": sys.executable, "TMPDIR": str(tmp_path)}
    cmd = ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--focus", "--dry-run"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    for section in ("machine", "tests_triton", "sweep", "grid_rest", "ncu"):
        assert f"=== {section}: ok ===" in res.stdout
    (out,) = [p for p in tmp_path.iterdir() if (p / "dry-run-sweep.md").exists()]
    sweep = pd.read_csv(out / "dry-run-sweep.csv")
    assert sorted(sweep.tiles) == ["32,16,4,2", "32,16,4,2", "default", "default"]
    assert "## Tile sweep" in (out / "dry-run-sweep.md").read_text()
    profile = (out / "dry-run-sweep-profile.md").read_text()
    assert profile.count("### B = C = 20") == 4 and "KMEFused" in profile
    rest = pd.read_csv(out / "dry-run-grid-rest.csv")
    assert set(rest.impl) == {"triton", "chunked"} and (rest.status == "ok").all()


def test_gpu_check_rejects_unknown_arguments():
    res = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--fast"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and res.stderr.strip().startswith("usage:")
    assert "\n" not in res.stderr.strip()
    res = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--focus", "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SECTIONS": "sweep bogus"},
    )
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip() == (
        "gpu_check: no focus section 'bogus' (SECTIONS takes: tests_triton sweep grid_rest ncu)"
    )


def test_flat_variants_are_implementations():
    """--impls takes the flattened kernels (issue 27) as Triton implementations: once per tile
    shape, each run under its $PMILAB_TRITON_VARIANT; the default grid does not run them."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import pairwise_gpu as bench
    finally:
        sys.path.remove(str(SCRIPT.parent))
    assert "triton-flat" not in bench.parse_args([]).impls
    args = bench.parse_args(["--impls", "triton-flat", "chunked", "--tiles", "default", "64,64,8"])
    assert bench.runs(args) == [
        ("triton-flat", None),
        ("triton-flat", (64, 64, 8)),
        ("chunked", None),
    ]
    seen = []
    with bench.triton_variant("flat-atomic"):
        from pmilab.similarity._pairwise import triton_variant

        seen.append(triton_variant())
    assert seen == ["flat-atomic"] and bench.TRITON_IMPLS["triton-flat-atomic"] == "flat-atomic"


def test_short_dry_run_runs_every_section(tmp_path):
    """`gpu_check.sh --short --dry-run`: the sections a GPU session runs for issue 27 (the flat
    kernels' tests, the target shape on every Triton variant in one run with its GEMM rate, the
    ncu command), on CPU at tiny sizes."""
    from pmilab.similarity._triton_support import interpreter_problem

    if (why := interpreter_problem()) is not None:
        pytest.skip(why)
    env = {**os.environ, "PY": sys.executable, "TMPDIR": str(tmp_path)}
    cmd = ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--short", "--dry-run"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    for section in ("machine", "tests_flat", "target", "ncu_flat"):
        assert f"=== {section}: ok ===" in res.stdout
    (out,) = [p for p in tmp_path.iterdir() if (p / "dry-run-short.csv").exists()]
    df = pd.read_csv(out / "dry-run-short.csv")
    assert sorted(df.impl) == sorted(["triton", "triton-flat", "triton-flat-atomic"] * 2)
    assert (df.status == "ok").all() and (df.frac_bf16_gemm > 0).all()
    assert df.bf16_gemm_tflops.nunique() == 1  # one GEMM rate for every variant
    assert (df.max_rel_diff_vs_chunked < 1e-4).all()
    assert "| 20 | 3 | 20 | kme | triton-flat |" in (out / "dry-run-short.md").read_text()
    tests = (out / "dry-run-short-tests.txt").read_text()
    assert "deselected" in tests or "collected" in tests
    (ncu,) = [line for line in res.stdout.splitlines() if line.startswith("dry run: ncu")]
    for part in ("--clock-control none", "SpeedOfLight", "Occupancy", "WarpStateStats"):
        assert part in ncu
    assert "MemoryWorkloadAnalysis" in ncu and "--impls triton-flat " in ncu
    assert "--configs 4096,8,256" in ncu


def test_short_mode_rejects_focus_and_unknown_sections():
    script = str(ROOT / "benchmarks" / "gpu_check.sh")
    res = subprocess.run(
        ["bash", script, "--short", "--focus"], cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode == 2 and res.stderr.strip().startswith("usage:")
    env = {**os.environ, "SECTIONS": "target sweep"}
    res = subprocess.run(
        ["bash", script, "--short", "--dry-run"], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip() == (
        "gpu_check: no short section 'sweep' (SECTIONS takes: tests_flat target ncu_flat)"
    )

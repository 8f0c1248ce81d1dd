"""`benchmarks/triton_compile_check.py` compiles the kernels for sm_90a as Triton's launcher
specialises them at run time. Its first version did not: every point load came out as a 2-byte
scalar load, and its register and spill counts, which chose the d = 256 tiles, described kernels
that never run. The control here is that unspecialised compile (`--ragged`, as for sizes like
d = 20): it must show the scalar loads the specialised one must not have."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.similarity.triton.conftest import SKIP_REASON

pytest.importorskip("triton", reason=SKIP_REASON)

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "triton_compile_check.py"


def _table(*extra: str, tiles="64,32,8,2", variants=("tiled",), dtype="bf16") -> list[dict]:
    """Rows of the script's markdown table for these points, d = 64, these tiles and variants."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compile, not interpret
    cmd = [sys.executable, str(SCRIPT), "--dims", "64", "--dtypes", dtype, "--variants", *variants]
    cmd += ["--tiles", tiles] if tiles else []
    res = subprocess.run(
        cmd + list(extra), cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    if res.returncode and "no ptxas" in res.stderr:
        pytest.skip("this Triton ships no ptxas")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [
        line.strip("|").split("|")
        for line in res.stdout.splitlines()
        if line.startswith(f"| {dtype} ")
    ]
    keys = [
        "points",
        "d",
        "kernel",
        "tiles",
        "registers",
        "spilled",
        "shared",
        "resident",
        "tensor",
    ]
    keys += ["async", "vector", "scalar"]
    return [dict(zip(keys, (c.strip() for c in r), strict=True)) for r in rows]


def test_specialised_compile_vectorises_and_pipelines_the_point_loads():
    rows = _table()
    assert len(rows) == 9  # the WPSE column pass runs the transposed tile, 32 × 64
    assert {r["tiles"] for r in rows} == {"64×32, 8, 2", "32×64, 8, 2"}
    for r in rows:
        assert int(r["scalar"]) == 0, r
        assert int(r["vector"]) + int(r["async"]) > 0, r
    fwd = next(r for r in rows if r["kernel"] == "kme forward")
    assert fwd["tensor"] == "wgmma" and int(fwd["async"]) > 0 and int(fwd["spilled"]) == 0
    # the column that says so tells the instructions apart: the WPSE column pass's 32-row tile
    # runs on mma.sync (benchmarks/results/triton_compile_sm90.md)
    cols = next(r for r in rows if r["kernel"] == "wpse-gaussian backward columns")
    assert cols["tensor"] == "mma"


def test_flattened_kernels_use_the_tensor_cores():
    """Issue 27: every flattened kernel (forward, both backward passes, the one-pass atomic
    backward; both heads) compiles for sm_90a with wgmma on its default tiles, its point loads
    vectorised; with fp32 points (tf32x3: three TF32 products) on the tensor cores too (the
    tiled kernels' IEEE fp32 dots use none: test_flat_tf32x3.py checks which precision each
    kernel asks for)."""
    rows = _table(tiles=None, variants=("flat", "flat-atomic"))
    assert len(rows) == 12
    assert {r["tiles"] for r in rows} == {"128×64 pts, 8, 2"}
    for r in rows:
        assert r["tensor"] == "wgmma", r
        assert int(r["scalar"]) == 0 and int(r["vector"]) + int(r["async"]) > 0, r
        assert int(r["resident"]) >= 8 and int(r["registers"]) <= 255, r
    fp32 = _table(tiles=None, variants=("flat", "flat-atomic"), dtype="fp32")
    assert len(fp32) == 12 and {r["tensor"] for r in fp32} <= {"mma", "wgmma"}, fp32


def test_unspecialised_compile_is_the_control():
    rows = _table("--ragged")
    assert len(rows) == 9
    assert all(int(r["scalar"]) > 0 for r in rows)


def test_resident_warps_by_hand():
    """The occupancy column against hand-worked cases (64K registers allocated per warp in
    units of 256, 228 KiB of shared memory less 1 KiB per block, 64 warps, 32 blocks)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from triton_compile_check import resident_warps
    finally:
        sys.path.remove(str(SCRIPT.parent))
    # 232 registers: 7424 per warp (29 units); 4 warps: 29696 per block -> 2 blocks
    assert resident_warps(232, 4, 50 * 1024) == 8
    # 225 registers round up to 232 per thread (7424 per warp); 8 warps: 59392 -> 1 block
    assert resident_warps(225, 8, 80 * 1024) == 8
    # 64 registers, 8 warps: 16384 per block -> 4 by registers; 96 KiB shared -> 2 blocks
    assert resident_warps(64, 8, 96 * 1024) == 16
    # 32 registers, 1 warp, no shared memory: 32 blocks cap -> 32 warps
    assert resident_warps(32, 1, 0) == 32
    # 16 registers, 4 warps: registers allow 32 blocks, the 64-warp cap allows 16
    assert resident_warps(16, 4, 0) == 64

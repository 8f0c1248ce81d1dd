"""Compile every Triton kernel variant for a GPU architecture without a GPU; report registers.

    .venv/bin/python benchmarks/triton_compile_check.py             # sm_90a (H100/H200)
    .venv/bin/python benchmarks/triton_compile_check.py --arch 100  # another architecture
    .venv/bin/python benchmarks/triton_compile_check.py --tiles 64,64,4   # try other tiles
    .venv/bin/python benchmarks/triton_compile_check.py --tiles 64,32,8,3 # ... and num_stages
    .venv/bin/python benchmarks/triton_compile_check.py --variants flat   # the flattened only

For both heads, forward and backward kernels, bf16 and fp32 points, d ∈ {64, 128, 256},
M = N = 8: the tiled kernels (`_triton_kme`, `_triton_wpse`, with the tiles
`_triton_common.tile_shape` picks) and the flattened ones (`_triton_flat_*`, issue 27, with
`flat_tile_shape`'s; "rows+atomic" is the one-pass backward of $PMILAB_TRITON_VARIANT=
flat-atomic), or --tiles BB,BC,WARPS[,STAGES] for all of them (points, not sets, for the
flattened ones). Triton's front end and its NVIDIA back end lower the kernel to PTX, and the
ptxas that ships with Triton assembles it, printing registers per thread, spilled bytes and
shared memory, how many warps of it one SM can hold (the occupancy that registers and shared
memory allow), which tensor-core instructions the dot products use (wgmma: Hopper's; mma:
mma.sync; none: the FMA units), how many loads are asynchronous copies into shared memory
(cp.async: software-pipelined) and how many are 16-byte vector loads. It proves the kernels
compile for that GPU and fit its register file; it measures no speed. Prints a markdown table.

The compile is specialised as Triton's launcher specialises it at run time: every pointer
16-byte aligned, every integer argument divisible by 16 (B, C and d of the benchmark's sizes;
`--ragged` drops the integer part, as for sizes like d = 20). Without that, the address
arithmetic cannot be proven contiguous, every load of a point tile becomes a 2-byte scalar load,
and registers, spills and shared memory come out unlike the kernels that run (the first version
of this script compiled that way; its table misled the tile choice, see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.compiler import compile as triton_compile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pairwise_gpu import tile_spec  # noqa: E402  (the benchmarks' --tiles parser)


def ptxas_binary() -> str:
    """The newest ptxas bundled with Triton (its PTX may be too new for the older one)."""
    here = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    for name in ("ptxas-blackwell", "ptxas"):
        if os.path.exists(os.path.join(here, name)):
            return os.path.join(here, name)
    raise FileNotFoundError(f"no ptxas in {here}")


def compile_one(
    fn,
    pointer_dtype: str,
    constexprs: dict,
    warps: int,
    arch: int,
    stages: int | None = None,
    ragged: bool = False,
) -> dict:
    """Lower `fn` to PTX for `arch` and assemble it; registers, spills, shared bytes, wgmma,
    asynchronous and 16-byte vector loads. Specialised as the launcher does (module docstring)."""
    scalars = {"B", "C", "D", "R", "S", "l_r", "l_s", "g_r", "g_s"}
    sig, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in constexprs:
            sig[name] = "constexpr"
            continue
        if name in scalars:
            sig[name] = "i32"
            if ragged:
                continue
        else:
            sig[name] = f"*{pointer_dtype}" if name in ("P", "Q") else "*fp32"
        attrs[(i,)] = [["tt.divisibility", 16]]
    src = ASTSource(fn=fn, signature=sig, constexprs=constexprs, attrs=attrs)
    options = {"num_warps": warps} | ({"num_stages": stages} if stages else {})
    k = triton_compile(src, target=GPUTarget("cuda", arch, 32), options=options)
    ptx = k.asm["ptx"]
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    sm = f"sm_{arch}a" if arch in (90, 100) else f"sm_{arch}"
    res = subprocess.run([ptxas_binary(), f"-arch={sm}", "-v", f.name, "-o", os.devnull], capture_output=True, text=True)  # fmt: skip
    os.unlink(f.name)
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    regs = re.findall(r"Used (\d+) registers", res.stderr)
    spills = re.findall(r"(\d+) bytes spill stores", res.stderr)
    return {
        "registers": int(regs[0]) if regs else -1,
        "spill_bytes": int(spills[0]) if spills else 0,
        "shared_bytes": k.metadata.shared,
        "tensor_cores": tensor_cores(ptx),
        "async_copies": len(re.findall(r"cp\.async\.c[ag]\.shared\.global", ptx)),
        "vector_loads": len(re.findall(r"ld\.global(?:\.\w+)*\.v4\.b32", ptx)),
        "scalar_b16_loads": len(re.findall(r"ld\.global(?:\.\w+)*\.b16", ptx)),
    }


VARIANTS = ("tiled", "flat", "flat-atomic")  # `_pairwise.TRITON_VARIANTS`
M = N = 8  # points per set, as at the issues' target


def tensor_cores(ptx: str) -> str:
    """Which tensor-core instructions the PTX multiplies with: "wgmma" (Hopper's asynchronous
    warpgroup MMA), "mma" (mma.sync, Ampere's), or "none" (the FMA units: fp32 IEEE dots).
    fp32 tf32x3 dots (the flattened kernels') are three TF32 products of either kind."""
    if re.search(r"\bwgmma\.mma_async", ptx):
        return "wgmma"
    if re.search(r"\bmma\.sync", ptx):
        return "mma"
    return "none"


def variants(dtype: str, d: int, tiles: tuple[int, ...] | None, which=VARIANTS[:1]):
    """(name, kernel, constexprs, warps, stages, tile) of every kernel launch for these points:
    the tiled kernels (tile: BB × BC sets) and/or the flattened ones (`_triton_flat_*`; tile:
    rows × cols points, BB = rows/8 sets), each with `tiles` or its own default shape (stages:
    None for Triton's default)."""
    import torch

    from pmilab.similarity._triton_common import flat_tile_shape, input_precision, tile_shape

    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    bd = max(16, 1 << (d - 1).bit_length())
    common = {"M": M, "N": N, "BLOCK_D": bd, "DOT_F32": False}
    common["PRECISION"] = input_precision(torch_dtype)  # as the launchers pass it
    half = dtype != "fp32"
    if "tiled" in which:
        bb, bc, warps, *stages = tiles or tile_shape(torch_dtype, bd)
        for name, fn, consts, tile in _tiled(common, half, bb, bc):
            yield name, fn, consts, warps, (stages or [None])[0], tile
    flat = [v for v in which if v != "tiled"]
    if flat:
        rows, cols, warps, *stages = tiles or flat_tile_shape(torch_dtype, bd)
        common |= {"MP": M, "NP": N, "BLOCK_B": max(1, rows // M), "BLOCK_C": max(1, cols // N)}
        common["PRECISION"] = input_precision(torch_dtype, flat=True)  # fp32: tf32x3
        for name, fn, consts, tile in _flat(common, half, flat):
            yield name, fn, consts, warps, (stages or [None])[0], tile


def _tiled(common: dict, half: bool, bb: int, bc: int):
    from pmilab.similarity import _triton_kme as K
    from pmilab.similarity import _triton_wpse as W

    lim = {"SUM_LO": 2.0**-100, "SUM_HI": 2.0**100}
    kme = {"BLOCK_B": bb, "BLOCK_C": bc}
    tile = f"{bb}×{bc}"
    yield "kme forward", K._kme_fwd, common | kme | lim, tile
    for side, cols in (("rows", False), ("columns", True)):
        extra = kme | {"COLUMNS": cols, "HALF": half}
        yield f"kme backward {side}", K._kme_bwd, common | extra, tile
    for kernel, imq in (("gaussian", False), ("imq", True)):
        yield f"wpse-{kernel} forward", W._wpse_fwd, common | kme | {"IMQ": imq}, tile
        for side, (r, s) in (("rows", (bb, bc)), ("columns", (bc, bb))):
            extra = {"BLOCK_R": r, "BLOCK_S": s, "IMQ": imq, "HALF": half}
            yield f"wpse-{kernel} backward {side}", W._wpse_bwd, common | extra, f"{r}×{s}"


def _flat(common: dict, half: bool, which: list[str]):
    """The flattened kernels: forward, and the backward's passes of each variant asked for (the
    columns pass only without atomics; with them, the rows pass adds the columns' sums)."""
    from pmilab.similarity import _pairwise_blocks as blocks
    from pmilab.similarity import _triton_flat_kme as FK
    from pmilab.similarity import _triton_flat_wpse as FW

    tile = f"{common['BLOCK_B'] * M}×{common['BLOCK_C'] * N} pts"
    lim = {"SUM_LO": 2.0**-100, "SUM_HI": 2.0**100, "LN2": blocks.LN2}
    passes = [("rows", False, False), ("columns", True, False)] * ("flat" in which)
    passes += [("rows+atomic", False, True)] * ("flat-atomic" in which)
    yield "kme-flat forward", FK._kme_fwd_flat, common | lim, tile
    for side, cols, atomic in passes:
        extra = {"COLUMNS": cols, "ATOMIC": atomic, "HALF": half}
        yield f"kme-flat backward {side}", FK._kme_bwd_flat, common | extra, tile
    for kernel, imq in (("gaussian", False), ("imq", True)):
        yield f"wpse-{kernel}-flat forward", FW._wpse_fwd_flat, common | {"IMQ": imq}, tile
        for side, cols, atomic in passes:
            extra = {"COLUMNS": cols, "ATOMIC": atomic, "IMQ": imq, "HALF": half}
            yield f"wpse-{kernel}-flat backward {side}", FW._wpse_bwd_flat, common | extra, tile


# One Hopper SM (H100/H200, compute capability 9.0): 64K 32-bit registers, allocated per warp in
# units of 256; 228 KiB of shared memory, 1 KiB of it reserved per resident block; at most 64
# warps and 32 blocks (CUDA C Programming Guide, "Compute Capabilities").
SM_REGISTERS, REG_UNIT, SM_SHARED, BLOCK_RESERVED, SM_WARPS, SM_BLOCKS = (
    65536,
    256,
    228 * 1024,
    1024,
    64,
    32,
)


def resident_warps(registers: int, warps: int, shared_bytes: int) -> int:
    """Warps of this kernel one Hopper SM holds at once (the occupancy limit from registers,
    shared memory and the warp and block caps): how much latency the SM can hide."""
    per_warp = -(-registers * 32 // REG_UNIT) * REG_UNIT
    blocks = min(
        SM_REGISTERS // (per_warp * warps),
        SM_SHARED // (shared_bytes + BLOCK_RESERVED),
        SM_WARPS // warps,
        SM_BLOCKS,
    )
    return blocks * warps


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, said quietly
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, default=90, help="compute capability × 10 (90: H100)")
    ap.add_argument(
        "--tiles",
        type=tile_spec,
        default=None,
        help="BB,BC,WARPS[,STAGES] instead of tile_shape's / flat_tile_shape's (and Triton's)",
    )
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    ap.add_argument(
        "--ragged", action="store_true", help="sizes not divisible by 16 (no integer hints)"
    )
    ap.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=VARIANTS,
        help="which kernels: the tiled ones, the flattened ones (flat: forward and the two "
        "backward passes; flat-atomic: the one-pass backward); --tiles then counts points",
    )
    args = ap.parse_args(argv)
    tiles = args.tiles
    sizes = "sizes not divisible by 16" if args.ragged else "sizes divisible by 16"
    print(f"sm_{args.arch}, Triton {triton.__version__}, M = N = {M}, {sizes}\n")
    print(
        "| points | d | kernel | tile, warps, stages | registers | spilled bytes | shared KiB "
        "| resident warps / SM | tensor cores | async copies | 16-byte loads | 2-byte loads |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    bad = 0
    for dtype in args.dtypes:
        for d in args.dims:
            for name, fn, consts, warps, stages, tile in variants(dtype, d, tiles, args.variants):
                r = compile_one(fn, dtype, consts, warps, args.arch, stages, args.ragged)
                bad += r["spill_bytes"] > 0
                resident = resident_warps(r["registers"], warps, r["shared_bytes"])
                print(
                    f"| {dtype} | {d} | {name} | {tile}, {warps}, {stages or 'default'} | "
                    f"{r['registers']} | {r['spill_bytes']} | {r['shared_bytes'] / 1024:.0f} | "
                    f"{resident} | {r['tensor_cores']} | {r['async_copies']} | "
                    f"{r['vector_loads']} | {r['scalar_b16_loads']} |",
                    flush=True,
                )
    print(f"\n{bad} kernel(s) spill registers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

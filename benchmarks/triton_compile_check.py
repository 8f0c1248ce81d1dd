"""Compile every Triton kernel variant for a GPU architecture without a GPU; report registers.

    .venv/bin/python benchmarks/triton_compile_check.py             # sm_90a (H100/H200)
    .venv/bin/python benchmarks/triton_compile_check.py --arch 100  # another architecture
    .venv/bin/python benchmarks/triton_compile_check.py --tiles 64,64,4   # try other tiles
    .venv/bin/python benchmarks/triton_compile_check.py --tiles 64,32,8,3 # ... and num_stages

For both heads, forward and both backward kernels, bf16 and fp32 points, d ∈ {64, 128, 256},
M = N = 8, with the tiles `_triton_common.tile_shape` picks (or --tiles BB,BC,WARPS[,STAGES]):
Triton's front end and its NVIDIA back end lower the kernel to PTX, and the ptxas that ships
with Triton assembles it, printing registers per thread, spilled bytes and shared memory,
how many warps of it one SM can hold (the occupancy that registers and shared memory allow),
whether the dot products use the Hopper tensor-core instructions (wgmma), how many loads are
asynchronous copies into shared memory (cp.async: software-pipelined) and how many are 16-byte
vector loads. It proves the kernels compile for that GPU and fit its register file; it measures
no speed. Prints a markdown table.

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
        "wgmma": "wgmma" in ptx,
        "async_copies": len(re.findall(r"cp\.async\.c[ag]\.shared\.global", ptx)),
        "vector_loads": len(re.findall(r"ld\.global(?:\.\w+)*\.v4\.b32", ptx)),
        "scalar_b16_loads": len(re.findall(r"ld\.global(?:\.\w+)*\.b16", ptx)),
    }


def variants(dtype: str, d: int, tiles: tuple[int, ...] | None):
    """(name, kernel, constexprs, warps) of every kernel launch for these points."""
    import torch

    from pmilab.similarity import _triton_kme as K
    from pmilab.similarity import _triton_wpse as W
    from pmilab.similarity._triton_common import tile_shape

    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    bd = max(16, 1 << (d - 1).bit_length())
    bb, bc, warps = (tiles or tile_shape(torch_dtype, bd))[:3]
    common = {"M": 8, "N": 8, "BLOCK_D": bd, "DOT_F32": False}
    common["PRECISION"] = "ieee" if dtype == "fp32" else "tf32"
    half = dtype != "fp32"
    lim = {"SUM_LO": 2.0**-100, "SUM_HI": 2.0**100}
    kme = {"BLOCK_B": bb, "BLOCK_C": bc}
    yield "kme forward", K._kme_fwd, common | kme | lim, warps
    yield "kme backward rows", K._kme_bwd, common | kme | {"COLUMNS": False, "HALF": half}, warps
    yield "kme backward columns", K._kme_bwd, common | kme | {"COLUMNS": True, "HALF": half}, warps
    for kernel, imq in (("gaussian", False), ("imq", True)):
        yield f"wpse-{kernel} forward", W._wpse_fwd, common | kme | {"IMQ": imq}, warps
        for side, (r, s) in (("rows", (bb, bc)), ("columns", (bc, bb))):
            extra = {"BLOCK_R": r, "BLOCK_S": s, "IMQ": imq, "HALF": half}
            yield f"wpse-{kernel} backward {side}", W._wpse_bwd, common | extra, warps


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
        help="BB,BC,WARPS[,STAGES] instead of tile_shape's (and Triton's)",
    )
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    ap.add_argument(
        "--ragged", action="store_true", help="sizes not divisible by 16 (no integer hints)"
    )
    args = ap.parse_args(argv)
    tiles = args.tiles
    stages = tiles[3] if tiles and len(tiles) == 4 else None
    sizes = "sizes not divisible by 16" if args.ragged else "sizes divisible by 16"
    print(f"sm_{args.arch}, Triton {triton.__version__}, M = N = 8, {sizes}\n")
    print(
        "| points | d | kernel | tile, warps, stages | registers | spilled bytes | shared KiB "
        "| resident warps / SM | wgmma | async copies | 16-byte loads | 2-byte loads |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    bad = 0
    for dtype in args.dtypes:
        for d in args.dims:
            for name, fn, consts, warps in variants(dtype, d, tiles):
                r = compile_one(fn, dtype, consts, warps, args.arch, stages, args.ragged)
                bb = consts.get("BLOCK_B", consts.get("BLOCK_R"))
                bc = consts.get("BLOCK_C", consts.get("BLOCK_S"))
                bad += r["spill_bytes"] > 0
                print(
                    f"| {dtype} | {d} | {name} | {bb}×{bc}, {warps}, {stages or 'default'} | "
                    f"{r['registers']} | {r['spill_bytes']} | {r['shared_bytes'] / 1024:.0f} | "
                    f"{resident_warps(r['registers'], warps, r['shared_bytes'])} | {r['wgmma']} | {r['async_copies']} | {r['vector_loads']} | "
                    f"{r['scalar_b16_loads']} |",
                    flush=True,
                )
    print(f"\n{bad} kernel(s) spill registers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

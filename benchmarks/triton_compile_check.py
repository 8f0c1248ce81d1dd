"""Compile every Triton kernel variant for a GPU architecture without a GPU; report registers.

    .venv/bin/python benchmarks/triton_compile_check.py             # sm_90a (H100/H200)
    .venv/bin/python benchmarks/triton_compile_check.py --arch 100  # another architecture
    .venv/bin/python benchmarks/triton_compile_check.py --tiles 64,64,4   # try other tiles

For both heads, forward and both backward kernels, bf16 and fp32 points, d ∈ {64, 128, 256},
M = N = 8, with the tiles `_triton_common.tile_shape` picks (or --tiles BB,BC,WARPS): Triton's
front end and its NVIDIA back end lower the kernel to PTX, and the ptxas that ships with Triton
assembles it, printing registers per thread, spilled bytes and shared memory, and whether the
dot products use the Hopper tensor-core instructions (wgmma). It proves the kernels compile for
that GPU and fit its register file; it measures no speed. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.compiler import compile as triton_compile


def ptxas_binary() -> str:
    """The newest ptxas bundled with Triton (its PTX may be too new for the older one)."""
    here = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    for name in ("ptxas-blackwell", "ptxas"):
        if os.path.exists(os.path.join(here, name)):
            return os.path.join(here, name)
    raise FileNotFoundError(f"no ptxas in {here}")


def compile_one(fn, pointer_dtype: str, constexprs: dict, warps: int, arch: int) -> dict:
    """Lower `fn` to PTX for `arch` and assemble it; registers, spills, shared bytes, wgmma."""
    scalars = {"B", "C", "D", "R", "S", "l_r", "l_s", "g_r", "g_s"}
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name in scalars:
            sig[name] = "i32"
        else:
            sig[name] = f"*{pointer_dtype}" if name in ("P", "Q") else "*fp32"
    src = ASTSource(fn=fn, signature=sig, constexprs=constexprs)
    k = triton_compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
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
    }


def variants(dtype: str, d: int, tiles: tuple[int, int, int] | None):
    """(name, kernel, constexprs, warps) of every kernel launch for these points."""
    import torch

    from pmilab.similarity import _triton_kme as K
    from pmilab.similarity import _triton_wpse as W
    from pmilab.similarity._triton_common import tile_shape

    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    bd = max(16, 1 << (d - 1).bit_length())
    bb, bc, warps = tiles or tile_shape(torch_dtype, bd)
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


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, said quietly
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, default=90, help="compute capability × 10 (90: H100)")
    ap.add_argument("--tiles", default=None, help="BB,BC,WARPS instead of tile_shape's")
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    args = ap.parse_args(argv)
    tiles = tuple(int(v) for v in args.tiles.split(",")) if args.tiles else None
    print(f"sm_{args.arch}, Triton {triton.__version__}, M = N = 8\n")
    print("| points | d | kernel | tile, warps | registers | spilled bytes | shared KiB | wgmma |")
    print("|---|---|---|---|---|---|---|---|")
    bad = 0
    for dtype in args.dtypes:
        for d in args.dims:
            for name, fn, consts, warps in variants(dtype, d, tiles):
                r = compile_one(fn, dtype, consts, warps, args.arch)
                bb = consts.get("BLOCK_B", consts.get("BLOCK_R"))
                bc = consts.get("BLOCK_C", consts.get("BLOCK_S"))
                bad += r["spill_bytes"] > 0
                print(
                    f"| {dtype} | {d} | {name} | {bb}×{bc}, {warps} | {r['registers']} | "
                    f"{r['spill_bytes']} | {r['shared_bytes'] / 1024:.0f} | {r['wgmma']} |",
                    flush=True,
                )
    print(f"\n{bad} kernel(s) spill registers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

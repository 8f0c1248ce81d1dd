"""GPU mode of the point-set benchmark: fused Triton kernels vs chunked torch vs naive einsum.

    .venv/bin/python benchmarks/pairwise_gpu.py             # the full grid, on the GPU
    .venv/bin/python benchmarks/pairwise_gpu.py --quick     # B ∈ {1024, 4096}, M = 8
    .venv/bin/python benchmarks/pairwise_gpu.py --dry-run   # on a CPU: the same code path at tiny
                                                            # sizes, Triton in its interpreter
    .venv/bin/python benchmarks/pairwise_gpu.py --configs 4096,8,256 --impls triton \
        --tiles default 64,32,8 64,32,8,2 --profile        # a tile sweep at one configuration,
                                                            # and where its time goes

Grid: B = C ∈ {1024, 4096, 16384}, M = N ∈ {4, 8, 16}, d ∈ {64, 256}, heads KME and WPSE
(Gaussian, α₁ = 0), implementations:
- triton:  `_pairwise.kme_logits` / `wpse_logits` through `_backend` = "triton" (the fused kernels),
- chunked: the same public functions with `_backend` forced to "chunked" (pure torch, fp32),
- einsum:  `kme_logits_einsum` / `wpse_logits_einsum` (materialises (B, C, M, N) for autograd),
- triton-flat, triton-flat-atomic (only when asked for, --impls): the Triton kernels with the
  point sets flattened into the tile (`_triton_flat_*`, issue 27; $PMILAB_TRITON_VARIANT), the
  backward's columns by a second pass or by atomics.
Inputs are bf16 unit-norm points and bf16 log-softmax weights (what a bf16 encoder hands over),
σ = 0.5 learnable in fp32. Workload: logits → symmetric InfoNCE → backward. Each configuration
reports the best and median fwd+bwd time, the peak GPU memory above the inputs, and the achieved
rate 6·B·C·M·N·d FLOPs / time (the three GEMM passes of a fused implementation) as a fraction of
the bf16 GEMM rate measured in the same run (8192² bf16 matmul, fp32 accumulation). The expected
fractions, worked out on paper: benchmarks/README.md. Writes OUT/NAME.csv and OUT/NAME.md, NAME
naming the GPU (default: its name from torch, e.g. nvidia-h200).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GRID = {"B": (1024, 4096, 16384), "M": (4, 8, 16), "d": (64, 256)}
QUICK = {"B": (1024, 4096), "M": (8,), "d": (64, 256)}
DRY = {"B": (20,), "M": (2, 3), "d": (20,)}  # ragged against the interpreter's 16-wide tiles
HEADS = ("kme", "wpse")
IMPLS = ("triton", "chunked", "einsum")  # the default; --impls may add the flattened variants
# Triton implementations by the `_pairwise.triton_variant` they run
TRITON_IMPLS = {"triton": "tiled", "triton-flat": "flat", "triton-flat-atomic": "flat-atomic"}
# Upper bound on the einsum version's peak: ~10 live (B, C, M, N) fp32 tensors in backward
# (measured on CPU: 7.5 for KME, 9.5 for WPSE; see pairwise.py NAIVE_TENSORS).
EINSUM_BYTES_PER_SCORE = 40


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="B ∈ {1024, 4096}, M = 8 only")
    mode.add_argument(
        "--dry-run",
        action="store_true",
        help="CPU, tiny sizes, Triton interpreter: checks the code",
    )
    ap.add_argument("--out", type=Path, default=HERE / "results" / "gpu", help="results directory")
    ap.add_argument("--name", default=None, help="file name (default: the GPU's name, slugified)")
    ap.add_argument("--heads", nargs="+", choices=HEADS, default=list(HEADS))
    ap.add_argument(
        "--impls", nargs="+", choices=[*IMPLS, *list(TRITON_IMPLS)[1:]], default=list(IMPLS)
    )
    ap.add_argument(
        "--configs",
        nargs="+",
        type=config,
        default=None,
        metavar="B,M,d",
        help="these (B = C, M = N, d) instead of the grid, e.g. 4096,8,256",
    )
    ap.add_argument(
        "--tiles",
        nargs="+",
        type=tile_spec,
        default=[None],
        metavar="BB,BC,WARPS[,STAGES]",
        help="run the Triton kernels on each of these tiles (num_stages optional; 'default': "
        "_triton_common.tile_shape's; the flattened kernels read BB, BC as points); the other "
        "implementations run once",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also write NAME-profile.md: per-kernel device time of one Triton fwd+bwd of each "
        "configuration and head (torch.profiler), with each kernel's share",
    )
    ap.add_argument(
        "--target-seconds", type=float, default=1.0, help="timed reps per run fill about this"
    )
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=20.0,
        help="a run whose first fwd+bwd exceeds this is timed once",
    )
    return ap.parse_args(argv)


def config(text: str) -> tuple[int, int, int]:
    """Parse "B,M,d" into (B, M, d), positive integers."""
    try:
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 3 or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected B,M,d (positive integers), got {text!r}")
    return vals


def tile_spec(text: str) -> tuple[int, ...] | None:
    """--tiles: `_triton_common.parse_tiles`, its error as argparse's."""
    from pmilab.similarity._triton_common import parse_tiles

    try:
        return parse_tiles(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def tiles_name(shape: tuple[int, ...] | None) -> str:
    return "default" if shape is None else ",".join(map(str, shape))


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


def machine(device) -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = "not installed"
    if device.type == "cuda":
        prop = torch.cuda.get_device_properties(device)
        info |= {
            "gpu": prop.name,
            "sms": prop.multi_processor_count,
            "memory_gib": prop.total_memory / 2**30,
        }
    else:
        info |= {"gpu": f"none (dry run on {platform.processor() or 'CPU'})"}
    return info


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_rate(device, n: int, reps: int = 5) -> float:
    """Best FLOP/s of an n×n bf16 matmul (fp32 accumulation) on `device`."""
    import torch

    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    a @ b
    best = math.inf
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


@contextlib.contextmanager
def triton_variant(name: str):
    """$PMILAB_TRITON_VARIANT = `name` inside the block (`_pairwise.triton_variant`)."""
    from pmilab.similarity._pairwise import TRITON_VARIANT_ENV

    old = os.environ.get(TRITON_VARIANT_ENV)
    os.environ[TRITON_VARIANT_ENV] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(TRITON_VARIANT_ENV, None)
        else:
            os.environ[TRITON_VARIANT_ENV] = old


@contextlib.contextmanager
def forced_backend(name: str):
    """`_pairwise._backend` answers `name` inside the block (the chunked path on a GPU, or the
    Triton kernels on CPU tensors in a dry run)."""
    from pmilab.similarity import _pairwise

    old = _pairwise._backend
    _pairwise._backend = lambda px: name
    try:
        yield
    finally:
        _pairwise._backend = old


def inputs(b: int, m: int, d: int, device, seed: int = 0):
    """bf16 unit-norm points (B, M, d) ×2, bf16 log-softmax weights (B, M) ×2, fp32 σ; leaves."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator(device=device).manual_seed(seed)

    def pts():
        x = torch.randn(b, m, d, generator=g, device=device)
        return F.normalize(x, dim=-1).bfloat16().requires_grad_()

    def wts():
        x = torch.randn(b, m, generator=g, device=device)
        return x.log_softmax(-1).bfloat16().requires_grad_()

    px, wx, py, wy = pts(), wts(), pts(), wts()
    sigma = torch.tensor(0.5, device=device, requires_grad=True)
    return [px, wx, py, wy, sigma]


def logits_fn(head: str, impl: str):
    """(px, wx, py, wy, σ) -> (B, C) logits of `head` by `impl`."""
    from pmilab.similarity import _pairwise as P

    if impl == "einsum":
        if head == "kme":
            return P.kme_logits_einsum
        return lambda *a: P.wpse_logits_einsum(*a, 0.0, 1.0)

    backend, variant = ("triton", TRITON_IMPLS[impl]) if impl in TRITON_IMPLS else (impl, "tiled")

    def fn(*a):
        with forced_backend(backend), triton_variant(variant):
            return P.kme_logits(*a) if head == "kme" else P.wpse_logits(*a, 0.0, 1.0)

    return fn


def workload(head: str, impl: str, leaves: list):
    """One forward+backward: logits -> symmetric InfoNCE -> backward (grads reset first)."""
    from pmilab.losses import symmetric_infonce

    fn = logits_fn(head, impl)

    def run():
        for t in leaves:
            t.grad = None
        symmetric_infonce(fn(*leaves)).backward()

    return run


def timed(run, device) -> tuple[float, int]:
    """(seconds, peak bytes above what was allocated before) of one call."""
    import torch

    sync(device)
    base = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    t0 = time.perf_counter()
    run()
    sync(device)
    elapsed = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) - base if device.type == "cuda" else -1
    return elapsed, peak


def measure(run, device, args) -> dict:
    """Two warm-up calls (the first compiles the Triton kernels), then timed reps."""
    first, _ = timed(run, device)
    if first > args.max_seconds:
        t, peak = timed(run, device)
        return {"time_s": t, "time_median_s": t, "reps": 1, "peak_bytes": peak}
    if args.dry_run:  # the interpreter is slow, and its times say nothing
        t, peak = timed(run, device)
        return {"time_s": t, "time_median_s": t, "reps": 1, "peak_bytes": peak}
    timed(run, device)
    reps = max(3, min(20, int(args.target_seconds / max(first, 1e-6))))
    runs = [timed(run, device) for _ in range(reps)]
    times = [t for t, _ in runs]
    return {
        "time_s": min(times),
        "time_median_s": statistics.median(times),
        "reps": reps,
        "peak_bytes": max(p for _, p in runs),
    }


def agreement(head: str, leaves: list, impl: str = "triton") -> float:
    """max |ℓ_triton − ℓ_chunked| / max(1, |ℓ_chunked|) (KME) or / max|S_chunked| (WPSE): a
    sanity check of the kernels at the benchmark's sizes (the tests use small ones)."""
    import torch

    with torch.no_grad():
        a, b = (logits_fn(head, i)(*leaves).double() for i in (impl, "chunked"))
    scale = b.abs().clamp_min(1.0) if head == "kme" else b.abs().max().clamp_min(1e-30)
    return ((a - b).abs() / scale).max().item()


def plan(b: int, m: int, d: int, impl: str, device) -> str | None:
    """None to run, or why not."""
    import torch

    if impl == "einsum" and device.type == "cuda":
        need = EINSUM_BYTES_PER_SCORE * (b * m) ** 2
        free, _ = torch.cuda.mem_get_info(device)
        if need > 0.8 * free:
            return f"not run: needs ~{need / 2**30:.0f} GiB"
    return None


def run_one(head: str, impl: str, leaves: list, device, args) -> dict:
    """Status and measurements of one (configuration, head, implementation)."""
    import torch

    b, m, d = leaves[0].shape
    why = plan(b, m, d, impl, device)
    if why is not None:
        return {"status": why}
    try:
        out = {"status": "ok"} | measure(workload(head, impl, leaves), device, args)
        if impl in TRITON_IMPLS:
            out["max_rel_diff_vs_chunked"] = agreement(head, leaves, impl)
        return out
    except torch.OutOfMemoryError:
        return {"status": "out of memory"}
    finally:
        for t in leaves:
            t.grad = None
        if device.type == "cuda":
            torch.cuda.empty_cache()


def configurations(args) -> list[tuple[int, int, int]]:
    """(B, M, d) to run: --configs, or the grid of the mode."""
    if args.configs:
        return list(args.configs)
    grid = DRY if args.dry_run else QUICK if args.quick else GRID
    return [(b, m, d) for b in grid["B"] for m in grid["M"] for d in grid["d"]]


def runs(args) -> list[tuple[str, tuple[int, ...] | None]]:
    """(impl, tiles) pairs of one configuration and head: Triton once per tile shape."""
    out = []
    for impl in args.impls:
        out += [(impl, t) for t in args.tiles] if impl in TRITON_IMPLS else [(impl, None)]
    return out


def run_grid(args, device) -> list[dict]:
    from pmilab.similarity._triton_common import override_tiles

    n = 256 if args.dry_run else 8192
    rates = [gemm_rate(device, n)]
    rows = []
    for i, (b, m, d) in enumerate(configurations(args)):
        leaves = inputs(b, m, d, device)
        for head in args.heads:
            for impl, shape in runs(args):
                row = {"B": b, "M": m, "d": d, "head": head, "impl": impl}
                row["tiles"] = tiles_name(shape) if impl in TRITON_IMPLS else ""
                with override_tiles(shape):
                    row |= {"flops": 6.0 * b * b * m * m * d} | run_one(
                        head, impl, leaves, device, args
                    )
                rows.append(row)
                print(_line(row), flush=True)
        if i % 4 == 3:  # the GEMM rate again during the run; the best one defines the floor
            rates.append(gemm_rate(device, n))
    rates.append(gemm_rate(device, n))
    rate = max(rates)
    for row in rows:
        row |= {"bf16_gemm_tflops": rate / 1e12, "gemm_n": n}
        if "time_s" in row:
            row["tflops"] = row["flops"] / row["time_s"] / 1e12
            row["frac_bf16_gemm"] = row["flops"] / row["time_s"] / rate
            row["peak_mib"] = row["peak_bytes"] / 2**20 if row["peak_bytes"] >= 0 else math.nan
    return rows


def profile(args, device, info: dict) -> str:
    """NAME-profile.md: per-kernel time of one Triton fwd+bwd of each configuration, head and
    tile shape (`pairwise_gpu_profile`)."""
    from pairwise_gpu_profile import header, kernel_times, step_lines

    from pmilab.similarity._triton_common import override_tiles

    unit = "device" if device.type == "cuda" else "CPU"
    lines = header(device, info)
    shapes = [(i, t) for i, t in runs(args) if i in TRITON_IMPLS] or [("triton", None)]
    for b, m, d in configurations(args):
        leaves = inputs(b, m, d, device)
        for head in args.heads:
            for impl, shape in shapes:
                with override_tiles(shape):
                    times = kernel_times(workload(head, impl, leaves), device)
                title = f"B = C = {b}, M = N = {m}, d = {d}, {head}, tiles {tiles_name(shape)}"
                title += "" if impl == "triton" else f", {impl}"
                lines += step_lines(title, times, unit)
                print(f"profiled {title}", flush=True)
    return "\n".join(lines)


def _line(row: dict) -> str:
    t = f"{row['time_s'] * 1e3:9.2f} ms" if "time_s" in row else " " * 12
    tiles = f" [{row['tiles']}]" if row.get("tiles") else ""
    return f"B={row['B']:6d} M={row['M']:3d} d={row['d']:4d} {row['head']:5s} {row['impl']:18s}{t}  {row['status']}{tiles}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:  # before triton is first imported (by the kernels' modules)
        from pmilab.similarity._triton_support import interpreter_problem

        if (why := interpreter_problem()) is not None:
            print(
                f"pairwise_gpu: error: --dry-run needs Triton's interpreter: {why}", file=sys.stderr
            )
            return 2
        os.environ["TRITON_INTERPRET"] = "1"
    sys.path.insert(0, str(HERE))
    import pandas as pd
    import torch
    from pairwise_gpu_report import write_report

    if args.dry_run:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("no CUDA device: run on a GPU machine, or pass --dry-run", file=sys.stderr)
        return 2
    info = machine(device)
    if args.tiles != [None]:  # GPU launches take these tiles (the interpreter keeps its own)
        info["tiles"] = " ".join(tiles_name(t) for t in args.tiles)
    name = args.name or ("dry-run" if args.dry_run else slug(info["gpu"]))
    rows = run_grid(args, device)
    args.out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df.to_csv(args.out / f"{name}.csv", index=False)
    (args.out / f"{name}.md").write_text(write_report(df, info, args))
    print(f"wrote {args.out / name}.csv and .md")
    if args.profile:
        (args.out / f"{name}-profile.md").write_text(profile(args, device, info))
        print(f"wrote {args.out / name}-profile.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

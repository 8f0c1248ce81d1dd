"""Speed and memory of the exact point-set heads against the naive version and the GEMM floor.

    .venv/bin/python benchmarks/pairwise.py            # the full grid (tens of minutes on 2 cores)
    .venv/bin/python benchmarks/pairwise.py --quick    # must-show speed point, B = 256 (minutes)

Grid: B = C ∈ {256, 1024, 4096}, M = N ∈ {1, 4, 16}, d ∈ {64, 256}, plus the must-show point
B = 1024, M = 8, d = 64, and `KME(sigma=0.5).logit_matrix` at B = 4096, M = 16, d = 64 (memory).
For each configuration and implementation (see `pairwise_worker.py`) a fresh process measures
forward+backward time and its own peak RSS; the floor is 6·B·C·M·N·d FLOPs divided by the GEMM
rate of a 2048² matmul measured in that same process. The naive version is only run where its
estimated memory fits (never into swap); elsewhere its time is extrapolated and marked.
Writes OUT/cpu.csv (or cuda.csv) and OUT/cpu.md naming the machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
MUST_SHOW = (1024, 8, 64)
MEMORY_POINT = (4096, 16, 64)
IMPLS = ("kme_naive", "kme", "wpse_naive", "wpse", "linear")
# Live (B, C, M, N) fp32 tensors of the einsum versions at their peak (backward), measured at
# B = 1024, M = 8, d = 64 on this machine: KME 1.9 GiB = 7.5 of them, WPSE 2.4 GiB = 9.5;
# rounded up so the estimate is an upper bound.
NAIVE_TENSORS = {"kme_naive": 8, "wpse_naive": 10}
NAIVE_LIMIT_GIB = 3.0  # never start a naive run estimated above this (shared 2-core machines)
# Rough fwd+bwd time in units of the floor, only to choose reps and skip hopeless runs.
SLOWDOWN = {
    "kme_naive": 15,
    "wpse_naive": 15,
    "kme": 2.5,
    "wpse": 2.5,
    "kme_head": 2.5,
    "linear": 8,  # four interleaved workloads
    "interleaved": 14,  # kme + wpse + GEMMs
}


# The point-set heads get 3x the time limit (they are what the suite is about); the memory
# must-show always runs.
LIMIT_X = {"kme": 3.0, "wpse": 3.0, "kme_head": float("inf")}


def machine() -> dict:
    model = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "gpu": gpu,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def grid(quick: bool) -> list[tuple[int, int, int, str]]:
    """(B, M, d, impl) in run order: the must-show points first."""
    shapes = (
        [(256, m, 64) for m in (1, 4)]
        if quick
        else [(b, m, d) for b in (256, 1024, 4096) for m in (1, 4, 16) for d in (64, 256)]
    )
    out = [(*MUST_SHOW, impl) for impl in (*IMPLS, "interleaved")]
    out += [] if quick else [(*MEMORY_POINT, "kme_head")]
    out += [(*s, impl) for s in shapes for impl in IMPLS if s != MUST_SHOW]
    return out


def flops(b: int, m: int, d: int) -> float:
    return 6.0 * b * b * m * m * d


def run_worker(cfg: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(HERE / "pairwise_worker.py"), json.dumps(cfg)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout > {timeout:.0f} s"}
    if res.returncode != 0:
        tail = (res.stderr.strip().splitlines() or ["?"])[-1]
        return {"status": f"failed: {tail[:120]}"}
    return {"status": "ok"} | json.loads(res.stdout.strip().splitlines()[-1])


def plan(b: int, m: int, d: int, impl: str, rate: float, args) -> dict | str:
    """Worker config, or the reason it is not run."""
    if impl in NAIVE_TENSORS:
        gib = NAIVE_TENSORS[impl] * 4 * (b * m) ** 2 / 2**30
        if gib > NAIVE_LIMIT_GIB:
            return f"not run: needs ~{gib:.0f} GiB"
    if impl == "kme" and (b, m, d) == MEMORY_POINT:
        return "same run as kme_head"  # the head calls kme_logits; filled in by `derive`
    est = SLOWDOWN[impl] * flops(b, m, d) / rate
    if est > args.max_seconds * LIMIT_X.get(impl, 1.0):
        return f"not run: ~{est:.0f} s"
    # best of 3 after a warm-up where cheap; long runs once, cold (the suite must fit in ~15 min)
    must = (b, m, d) == MUST_SHOW
    reps = 3 if est < 3 or must else 1
    return {
        "impl": impl,
        "b": b,
        "m": m,
        "d": d,
        "reps": reps,
        "warmup": est < 3 or must,
        "threads": args.threads,
        "profile": must and impl in ("kme", "wpse"),
    }


def measure_all(args) -> tuple[pd.DataFrame, dict]:
    from pairwise_worker import gemm_rate

    rate = gemm_rate()
    rows, profiles = [], {}
    for b, m, d, impl in tqdm(grid(args.quick), desc="benchmark", unit="run"):
        cfg = plan(b, m, d, impl, rate, args)
        res = run_worker(cfg, 4 * args.max_seconds) if isinstance(cfg, dict) else {"status": cfg}
        if "profile" in res:
            profiles[impl] = res.pop("profile")
        rows.append({"B": b, "M": m, "d": d, "impl": impl, "flops": flops(b, m, d)} | res)
    return derive(pd.DataFrame(rows)), profiles


def derive(df: pd.DataFrame) -> pd.DataFrame:
    """Floor, ratio to the floor, naive extrapolation, speedups, linear/minimal."""
    for col in ("time_s", "gemm_gflops", "peak_rss_mib"):
        if col not in df:
            df[col] = float("nan")
    head = df[(df.impl == "kme_head") & (df.status == "ok")]
    for r in head.itertuples():  # KME at the memory point is the kme_head run
        same = (df.impl == "kme") & (df.B == r.B) & (df.M == r.M) & (df.d == r.d)
        cols = [c for c in df.columns if c not in ("impl", "status")]
        df.loc[same, cols] = df.loc[r.Index, cols].values
        df.loc[same, "status"] = "ok (the kme_head run)"
    df["floor_s"] = df["flops"] / (df["gemm_gflops"] * 1e9)
    df["x_floor"] = df["time_s"] / df["floor_s"]
    if "gemm512_gflops" in df:  # the same ratio against the 512² (cache-resident) GEMM rate
        df["x_floor512"] = df["time_s"] * df["gemm512_gflops"] * 1e9 / df["flops"]
    for naive in NAIVE_TENSORS:  # time per FLOP of the largest naive run that fit
        ok = df[(df.impl == naive) & (df.status == "ok")]
        if len(ok):
            ref = ok.loc[ok.flops.idxmax()]
            miss = (df.impl == naive) & (df.status != "ok")
            df.loc[miss, "time_s"] = df.loc[miss, "flops"] * ref.time_s / ref.flops
            df.loc[miss, "status"] = df.loc[miss, "status"] + "; time extrapolated"
    base = df.set_index(["B", "M", "d", "impl"])["time_s"]

    def other(row, impl):
        return base.get((row.B, row.M, row.d, impl), float("nan"))

    df["speedup_vs_naive"] = [
        other(r, r.impl + "_naive") / r.time_s if r.impl in ("kme", "wpse") else float("nan")
        for r in df.itertuples()
    ]
    return df


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="must-show speed point and B=256 only")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="results directory")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=40.0,
        help="skip a run estimated to take longer than this (one fwd+bwd)",
    )
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from pairwise_report import write_report

    info = machine()
    df, profiles = measure_all(args)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "cpu"  # the workers run on the CPU; a CUDA variant would write cuda.csv / cuda.md
    df.to_csv(args.out / f"{name}.csv", index=False)
    (args.out / f"{name}.md").write_text(
        write_report(df, profiles, info, args, MUST_SHOW, MEMORY_POINT)
    )
    print((args.out / f"{name}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

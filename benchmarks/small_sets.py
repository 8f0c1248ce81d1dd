"""Time and peak memory of the fused small-set path against the naive reference and the GEMM floor.

    .venv/bin/python benchmarks/small_sets.py                 # records results/small_sets.{md,json}
    .venv/bin/python benchmarks/small_sets.py --sizes 24 --reps 5   # a quick look

The fused path (`pmilab/similarity/_pairwise_small.py`) is what the heads sweep and the replicate
trainer run for point sets in d <= SMALL_D dimensions. Here each head (KME, WPSE-Gaussian) runs
three ways on the same inputs (unit-norm points in d = 2, M = N = 8, B = C, symmetric InfoNCE,
forward + backward):
- `naive`: the einsum reference that keeps (B, C, M, N) tensors for backward;
- `chunked`: the memory-bounded general path (`_pairwise.kme_logits` / `wpse_logits`);
- `small`: the fused path.
Every measurement is a fresh process (`pairwise_worker.py`), so its peak RSS is its own; the
memory column is the peak resident memory of one forward + backward above the memory the process
held just before it (inputs allocated; the kernel's peak mark reset through /proc/self/clear_refs). The floor
is 6·B·C·M·N·d FLOPs at the GEMM rate of a 2048² fp32 matmul measured in the same process. Before
timing, the three are checked to give the same logits (float32, 1e-4 relative), so a speed-up
never comes from a different computation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
HEADS = ("kme", "wpse")
WAYS = {"naive": "{}_naive", "chunked": "{}", "small": "{}_small"}
M, D = 8, 2


def worker(cfg: dict, timeout: float = 1800) -> dict:
    cmd = [sys.executable, str(HERE / "pairwise_worker.py"), json.dumps(cfg)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        raise SystemExit(f"worker {cfg} failed: {res.stderr.strip().splitlines()[-1]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def same_logits(b: int) -> dict[str, float]:
    """Largest relative difference of each way's logits from the naive ones, per head."""
    sys.path.insert(0, str(HERE))
    from pairwise_worker import point_inputs

    from pmilab.similarity import _pairwise, _pairwise_small

    px, wx, py, wy = (t.detach() for t in point_inputs(b, M, D))
    fns = {
        "kme_naive": _pairwise.kme_logits_einsum,
        "kme": _pairwise.kme_logits,
        "kme_small": _pairwise_small.kme_logits_small,
        "wpse_naive": lambda *a: _pairwise.wpse_logits_einsum(*a, 0.0, 1.0),
        "wpse": lambda *a: _pairwise.wpse_logits(*a, 0.0, 1.0),
        "wpse_small": lambda *a: _pairwise_small.wpse_logits_small(*a, 0.0, 1.0),
    }
    out = {name: fn(px, wx, py, wy, torch.tensor(0.5)) for name, fn in fns.items()}
    diffs = {}
    for head in HEADS:
        ref = out[f"{head}_naive"]
        for way in ("chunked", "small"):
            got = out[WAYS[way].format(head)]
            diffs[f"{head}_{way}"] = float(((got - ref).abs().max() / ref.abs().max()).item())
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="24,256,1024", help="B = C values (default: %(default)s)")
    ap.add_argument("--reps", type=int, default=7, help="timed reps per process (best kept)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="output folder")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    load0 = os.getloadavg()[0]
    checks = {b: same_logits(b) for b in sizes}
    bad = {b: c for b, c in checks.items() if max(c.values()) > 1e-4}
    if bad:
        raise SystemExit(f"the three ways disagree (relative differences): {bad}")
    rows = []
    jobs = [(b, h, w) for b in sizes for h in HEADS for w in WAYS]
    for b, head, way in tqdm(jobs, desc="small sets", unit="run"):
        cfg = {"impl": WAYS[way].format(head), "b": b, "m": M, "d": D, "reps": args.reps}
        r = worker(cfg | {"threads": args.threads})
        floor = 6.0 * b * b * M * M * D / (r["gemm_gflops"] * 1e9)
        rows.append(
            {
                "B": b,
                "head": head,
                "way": way,
                "time_ms": 1e3 * r["time_s"],
                "x_floor": r["time_s"] / floor,
                "peak_mib": r["workload_peak_rss_mib"],
                "gemm_gflops": r["gemm_gflops"],
            }
        )
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "threads": args.threads,
        "reps": args.reps,
        "load_avg_start": load0,
        "load_avg_end": os.getloadavg()[0],
        "max_rel_diff_vs_naive": checks,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "small_sets.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(table(rows, meta))
    return 0


def picked(b: int) -> str:
    """The way `KME` / `WPSE` take at B = C = b (`similarity.base.use_reference`)."""
    from pmilab.similarity.base import use_reference

    return "small" if use_reference(torch.empty(b, M, D), torch.empty(b, M, D)) else "chunked"


def table(rows: list[dict], meta: dict) -> str:
    by = {(r["B"], r["head"], r["way"]): r for r in rows}
    lines = [
        f"{meta['machine']}, {meta['threads']} thread(s), best of {meta['reps']} reps per fresh "
        f"process; load average {meta['load_avg_start']:.1f} -> {meta['load_avg_end']:.1f}",
        "| B = C | head | naive ms | chunked ms | small ms | small / naive | small x floor "
        "| naive MiB | chunked MiB | small MiB | the heads pick |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b, head in dict.fromkeys((r["B"], r["head"]) for r in rows):
        n, c, s = (by[(b, head, w)] for w in WAYS)
        lines.append(
            f"| {b} | {head} | {n['time_ms']:.2f} | {c['time_ms']:.2f} | {s['time_ms']:.2f} "
            f"| {s['time_ms'] / n['time_ms']:.2f} | {s['x_floor']:.0f} "
            f"| {n['peak_mib']:.0f} | {c['peak_mib']:.0f} | {s['peak_mib']:.0f} | {picked(b)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

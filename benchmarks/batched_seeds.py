"""Many seeds as one computation: per-replicate training-step time, batched against sequential.

    .venv/bin/python benchmarks/batched_seeds.py            # R in 1 8 32 128, every head (~6 min)
    .venv/bin/python benchmarks/batched_seeds.py --quick    # R in 1 8, fewer steps (a look)

The heads sweep's shapes (`pmilab/experiments/claims/heads.py`): the exact population loss on the
24x20 latent table (K = 4), lr 0.1, unnormalised heads with bias; tabular; linear d = 4; KME and
WPSE with M = 8 points in d = 2. For each head and R, in one process with one torch thread:
- sequential: `_train` of one replica (seed 0), which is what `fit(seed=s)` runs, per step;
- batched: `_train` of R replicas (seeds 0..R-1) stacked into one computation, per step / R;
the two alternated round by round (so a change in machine load hits both), timed in CPU seconds
(`time.process_time`; CPU time does not grow when other jobs hold the cores). Model building
and evaluation are not timed: they cost the same per seed either way.
Beside it: the process's one-thread fp32 GEMM rate (a 512^3 matmul, timed in the same rounds),
and the achieved rate of the batched step from an analytic FLOP count (fwd + bwd = 3x the
forward's multiply-adds and elementwise ops; see `flops_per_step`).
Writes results/batched_seeds.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from pmilab.dists import parse_spec
from pmilab.runtime.device import resolve_device
from pmilab.training.config import FitConfig
from pmilab.training.loop import _train, prepare

SPEC = "latent:nx=24,ny=20,k=4,seed=0"
HEADS = {
    "tabular": dict(similarity="tabular"),
    "linear": dict(similarity="linear", dim=4),
    "kme": dict(similarity="kme", dim=2, points=8),
    "wpse": dict(similarity="wpse", dim=2, points=8),
}
BASE = dict(population=True, lr=0.1, normalize=False, bias=True, logit_cap=None)


def flops_per_step(head: str, nx: int, ny: int, dim: int, points: int) -> float:
    """Analytic FLOPs of one replica's fwd + bwd (3x the forward) on the nx x ny table.
    Forward: point-set heads ~ nx·ny·M²·(3d + 6) (differences, squares, sums, weights, exp,
    logsumexp); linear 2·nx·ny·d (the GEMM); every head ~10 per cell for the loss."""
    cells = nx * ny
    head_fwd = {
        "tabular": 0.0,
        "linear": 2.0 * cells * dim,
        "kme": cells * points**2 * (3 * dim + 6),
        "wpse": cells * points**2 * (3 * dim + 6),
    }[head]
    return 3.0 * (head_fwd + 10.0 * cells)


def gemm_gflops(n: int = 512, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.process_time()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.process_time() - t) / 1e9


def time_train(dist, cfg: FitConfig, seeds: list[int], device) -> float:
    """CPU seconds per step of `_train` on these replicas (one warm-up step not timed)."""
    rep, inputs = prepare(dist, cfg.replace(steps=1), seeds, device)
    _train(rep, inputs, cfg.replace(steps=1), seeds, progress=False)
    rep, inputs = prepare(dist, cfg, seeds, device)
    t = time.process_time()
    _train(rep, inputs, cfg, seeds, progress=False)
    return (time.process_time() - t) / cfg.steps


def steps_for(head: str, r: int, quick: bool) -> int:
    per_step_ms = {"tabular": 0.15, "linear": 0.2, "kme": 0.6, "wpse": 0.6}[head] * max(r, 4)
    budget_ms = 400 if quick else 1500
    return int(min(300, max(20, budget_ms / per_step_ms)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="R in 1 8, fewer steps and rounds")
    ap.add_argument("--replicas", type=int, nargs="+", default=None, help="R values")
    ap.add_argument("--heads", nargs="+", default=list(HEADS), choices=list(HEADS))
    ap.add_argument("--rounds", type=int, default=None, help="alternated rounds (default 3)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    rs = args.replicas or ([1, 8] if args.quick else [1, 8, 32, 128])
    rounds = args.rounds or (2 if args.quick else 3)
    torch.set_num_threads(1)
    device = resolve_device("cpu")
    dist = parse_spec(SPEC)
    rows = []
    load0 = os.getloadavg()
    for head in args.heads:
        cfg = FitConfig(**{**BASE, **HEADS[head]}).validated()
        for r in rs:
            steps = steps_for(head, r, args.quick)
            c = cfg.replace(steps=steps)
            seq, bat, gemm = [], [], []
            for _ in range(rounds):
                gemm.append(gemm_gflops())
                seq.append(time_train(dist, c, [0], device))
                bat.append(time_train(dist, c, list(range(r)), device) / r)
            s_ms, b_ms = statistics.median(seq) * 1e3, statistics.median(bat) * 1e3
            flops = flops_per_step(head, dist.nx, dist.ny, c.dim, c.points)
            row = dict(
                head=head,
                R=r,
                steps=steps,
                rounds=rounds,
                sequential_ms_per_replica_step=s_ms,
                batched_ms_per_replica_step=b_ms,
                speedup=s_ms / b_ms,
                speedup_min=min(seq) / max(bat),
                speedup_max=max(seq) / min(bat),
                gemm_gflops=statistics.median(gemm),
                achieved_gflops_batched=flops / (b_ms / 1e3) / 1e9,
                achieved_gflops_sequential=flops / (s_ms / 1e3) / 1e9,
            )
            rows.append(row)
            print(
                f"{head:8s} R={r:4d}  seq {s_ms:7.3f} ms  batched {b_ms:7.3f} ms/replica  "
                f"x{row['speedup']:5.1f}  ({row['achieved_gflops_batched']:.2f} of "
                f"{row['gemm_gflops']:.1f} GEMM GFLOP/s)",
                flush=True,
            )
    meta = dict(
        machine=f"{platform.machine()}, {os.cpu_count()} cores",
        torch=torch.__version__,
        python=sys.version.split()[0],
        threads=1,
        load_average_start=load0,
        load_average_end=os.getloadavg(),
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        commit=os.popen("git rev-parse --short HEAD 2>/dev/null").read().strip(),
        quick=args.quick,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    name = "batched_seeds_quick" if args.quick else "batched_seeds"
    (args.out / f"{name}.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    (args.out / f"{name}.md").write_text(report(meta, rows))
    print(f"wrote {args.out / name}.md")
    return 0


def report(meta: dict, rows: list[dict]) -> str:
    lines = [
        "# Many seeds as one computation: per-replicate step time (benchmarks/batched_seeds.py)",
        "",
        f"{meta['date']}, commit {meta['commit']} (+ working tree), {meta['machine']}, torch "
        f"{meta['torch']}, one torch thread, CPU time. Load average at start "
        f"{', '.join(f'{v:.1f}' for v in meta['load_average_start'])}, at end "
        f"{', '.join(f'{v:.1f}' for v in meta['load_average_end'])}.",
        "",
        f"Shapes of the heads sweep: exact population loss on {SPEC}; tabular, linear d=4, "
        "KME and WPSE M=8 points in d=2. Sequential = one replica per run (what fit(seed=s) "
        "runs); batched = R replicas in one vmapped computation, time / R. Alternated rounds, "
        "medians; the range is min/max over the rounds' ratios.",
        "",
        "| head | R | sequential ms/step | batched ms/step/replica | speedup (range) | "
        "achieved GFLOP/s batched (sequential) | GEMM GFLOP/s, same process |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['head']} | {r['R']} | {r['sequential_ms_per_replica_step']:.3f} | "
            f"{r['batched_ms_per_replica_step']:.3f} | **{r['speedup']:.1f}x** "
            f"({r['speedup_min']:.1f}-{r['speedup_max']:.1f}) | "
            f"{r['achieved_gflops_batched']:.2f} ({r['achieved_gflops_sequential']:.2f}) | "
            f"{r['gemm_gflops']:.1f} |"
        )
    lines += [
        "",
        "Targets (issue: many seeds as one computation), at R = 32: >= 8x for KME (M = 8), "
        ">= 20x for tabular and linear.",
        "",
    ]
    for head, target in (("kme", 8), ("tabular", 20), ("linear", 20)):
        hit = [r for r in rows if r["head"] == head and r["R"] == 32]
        if hit:
            v = hit[0]["speedup"]
            lines.append(f"- {head} at R = 32: {v:.1f}x, {'MET' if v >= target else 'NOT MET'}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

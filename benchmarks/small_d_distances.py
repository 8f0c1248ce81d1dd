"""Small-d squared distances: the coordinate-by-coordinate path against the materialised one.

One KME and one WPSE training-step-like computation (exact-population InfoNCE on a B x C table:
logits, both softmax directions weighted by a fixed joint table, backward to points, weights and
sigma), fwd + bwd, with the squared distances from `_pairwise._sq_dists_materialised` (the code
before) or `_pairwise.sq_dists` (the small-d path for d <= SMALL_D). One torch thread, the two
variants interleaved rep by rep, median of the reps. Also checks that both give identical logits
and gradients (torch.equal), so a speed-up never comes from a different computation.

    .venv/bin/python benchmarks/small_d_distances.py [--reps 200] [--dims 1,2,3,4]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from pmilab.similarity import _pairwise as P

B, C, M = 24, 20, 8


def _inputs(d: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    px, wx = torch.randn(B, M, d, generator=g), torch.randn(B, M, generator=g)
    py, wy = torch.randn(C, M, d, generator=g), torch.randn(C, M, generator=g)
    joint = torch.rand(B, C, generator=g)
    return px, wx.log_softmax(-1), py, wy.log_softmax(-1), joint / joint.sum()


def _logits(head: str, dists, px, wx, py, wy, sigma) -> torch.Tensor:
    d2 = dists(px, py)
    if head == "kme":
        return P._kme_from_sq_dists(d2, wx, wy, sigma)
    return 10 * P._wpse_from_sq_dists(d2, px, wx, py, wy, sigma, 0.5, 1.0, "gaussian")


def step(head: str, dists, inputs) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One fwd + bwd; returns the logits and the gradients wrt px, wx, py, wy, log sigma."""
    *pts, joint = inputs
    leaves = [t.clone().requires_grad_() for t in pts] + [torch.tensor(-0.5, requires_grad=True)]
    px, wx, py, wy, log_sigma = leaves
    logits = _logits(head, dists, px, wx, py, wy, log_sigma.exp())
    loss = -(joint * (logits.log_softmax(1) + logits.log_softmax(0))).sum()
    loss.backward()
    return logits.detach(), [t.grad for t in leaves]


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(head: str, d: int, reps: int) -> dict:
    inputs = _inputs(d)
    ref, new = step(head, P._sq_dists_materialised, inputs), step(head, P.sq_dists, inputs)
    equal = torch.equal(ref[0], new[0]) and all(map(torch.equal, ref[1], new[1]))
    before, after = [], []
    for _ in range(reps):  # interleaved: load changes hit both alike
        before.append(_time(lambda: step(head, P._sq_dists_materialised, inputs)))
        after.append(_time(lambda: step(head, P.sq_dists, inputs)))
    b, a = statistics.median(before), statistics.median(after)
    return {"head": head, "d": d, "before_us": b * 1e6, "after_us": a * 1e6, "equal": equal}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--dims", default="1,2,3,4")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (1 min) at start"
    )
    print(f"B = {B}, C = {C}, M = N = {M}, fp32, 1 thread, {args.reps} interleaved reps, median")
    print("| head | d | materialised (us) | small-d (us) | speed-up | identical |")
    print("|---|---|---|---|---|---|")
    for d in (int(x) for x in args.dims.split(",")):
        for head in ("kme", "wpse"):
            r = bench(head, d, args.reps)
            print(
                f"| {head} | {d} | {r['before_us']:.0f} | {r['after_us']:.0f} | "
                f"{r['before_us'] / r['after_us']:.2f}x | {r['equal']} |"
            )
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at end")


if __name__ == "__main__":
    main()

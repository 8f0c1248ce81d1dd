"""One benchmark measurement, run in a fresh process so its peak RSS is its own.

    python benchmarks/pairwise_worker.py '{"impl": "kme", "b": 1024, "m": 8, "d": 64, ...}'

prints one JSON line: forward+backward times (min and median over reps), the whole process's
peak RSS (ru_maxrss, MiB), and the GEMM rate measured in this same process on a large square
matmul. Every workload is logits -> symmetric InfoNCE -> backward, with C = B and N = M.

impl:
- kme, wpse:          pmilab's memory-bounded `_pairwise.kme_logits` / `wpse_logits` (σ learnable)
- kme_naive, wpse_naive: the usual einsum implementation, (B, C, M, N) kept for backward
- kme_head:           `pl.similarity.KME(sigma=0.5).logit_matrix` (the must-show memory point)
- kme_small, wpse_small: the fused small-set path of the heads sweep (`_pairwise_small`: float64
                      rank-(d+2) GEMM scores, hand-written backward; benchmarks/small_sets.py)
- none:               no workload (what the process alone costs)
- linear:             `pl.similarity.Linear(normalize=False)` + `pl.losses.symmetric_infonce` on
                      features of width D = M·N·d (the same 6·B·C·M·N·d FLOPs); the worker also
                      times, interleaved in the same process, the minimal reference zx @ zyᵀ + two
                      `F.cross_entropy`, and the cosine head `Linear()` against the same minimal
                      reference with `F.normalize` first; it reports the ratios.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from pmilab.similarity import _pairwise, _pairwise_small

GEMM_N = 2048  # the large square matmul whose rate defines the floor (2·n³ FLOPs)


def gemm_rate(reps: int = 3, n: int = GEMM_N) -> float:
    """Best FLOP/s of an n×n fp32 matmul in this process."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n**3 / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def symmetric_infonce(logits):
    """pmilab's loss when the engine has it, else the minimal two cross-entropies."""
    try:
        from pmilab.losses import symmetric_infonce as loss
    except ImportError:  # pragma: no cover - engine not there yet
        return minimal_loss(logits)
    return loss(logits)


def minimal_loss(logits):
    target = torch.arange(logits.shape[0])
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def point_inputs(b: int, m: int, d: int, seed: int = 0):
    """Unit-norm points and log-softmax weights (what the heads' encoders produce), with grad."""
    g = torch.Generator().manual_seed(seed)
    px = F.normalize(torch.randn(b, m, d, generator=g), dim=-1).requires_grad_()
    py = F.normalize(torch.randn(b, m, d, generator=g), dim=-1).requires_grad_()
    wx = torch.randn(b, m, generator=g).log_softmax(-1).requires_grad_()
    wy = torch.randn(b, m, generator=g).log_softmax(-1).requires_grad_()
    return px, wx, py, wy


def linear_workloads(b: int, width: int) -> dict:
    """The linear head (plain and cosine) and its minimal references, on (B, D) features."""
    from pmilab.similarity import Linear

    g = torch.Generator().manual_seed(0)
    zx = torch.randn(b, width, generator=g).requires_grad_()
    zy = torch.randn(b, width, generator=g).requires_grad_()
    plain, cosine = Linear(normalize=False), Linear()
    return {
        "linear": lambda: symmetric_infonce(plain.logit_matrix(zx, zy)).backward(),
        "minimal": lambda: minimal_loss(zx @ zy.T).backward(),
        "linear_cos": lambda: symmetric_infonce(cosine.logit_matrix(zx, zy)).backward(),
        "minimal_cos": lambda: minimal_loss(
            F.normalize(zx, dim=-1) @ F.normalize(zy, dim=-1).T * 14.3
        ).backward(),
    }


def linear_ratios(b: int, width: int, reps: int) -> dict:
    """Head time / minimal time, the four interleaved in this process (best of reps each)."""
    runs = linear_workloads(b, width)
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(reps + 1):  # the first round warms up and is kept only if it is the best
        for name, run in runs.items():
            best[name] = min(best[name], _timed(run))
    return {
        "minimal_s": best["minimal"],
        "linear_over_minimal": best["linear"] / best["minimal"],
        "cosine_over_minimal_cos": best["linear_cos"] / best["minimal_cos"],
        "cosine_over_minimal": best["linear_cos"] / best["minimal"],
    }


def interleaved(b: int, m: int, d: int, reps: int) -> dict:
    """KME, WPSE and the floor's GEMM alternated in one process, best of reps each.

    A shared machine's load changes between processes; alternating the three within one process
    keeps the ratios to the floor comparable (the headline numbers of the must-show point).
    """
    runs = {impl: workload(impl, b, m, d) for impl in ("kme", "wpse")}
    best = {impl: float("inf") for impl in runs}
    rate = 0.0
    for _ in range(reps + 1):  # the first round warms up
        for impl, run in runs.items():
            rate = max(rate, gemm_rate(reps=1))
            best[impl] = min(best[impl], _timed(run))
    floor = 6.0 * b * b * m * m * d / rate
    out = {f"{impl}_s": t for impl, t in best.items()}
    return out | {f"{impl}_x_floor": t / floor for impl, t in best.items()}


def workload(impl: str, b: int, m: int, d: int):
    """A closure running one forward+backward of `impl` at (B=C=b, M=N=m, d)."""
    if impl == "linear":
        return linear_workloads(b, m * m * d)["linear"]
    if impl == "none":
        return lambda: None
    px, wx, py, wy = point_inputs(b, m, d)
    sigma = torch.tensor(0.5, requires_grad=True)
    fns = {
        "kme_small": lambda: _pairwise_small.kme_logits_small(px, wx, py, wy, sigma),
        "wpse_small": lambda: _pairwise_small.wpse_logits_small(px, wx, py, wy, sigma, 0.0, 1.0),
        "kme": lambda: _pairwise.kme_logits(px, wx, py, wy, sigma),
        "kme_naive": lambda: _pairwise.kme_logits_einsum(px, wx, py, wy, sigma),
        "wpse": lambda: _pairwise.wpse_logits(px, wx, py, wy, sigma, 0.0, 1.0),
        "wpse_naive": lambda: _pairwise.wpse_logits_einsum(px, wx, py, wy, sigma, 0.0, 1.0),
    }
    if impl == "kme_head":
        from pmilab.similarity import KME

        head = KME(sigma=0.5)
        fns[impl] = lambda: head.logit_matrix(px, wx, py, wy)
    return lambda: symmetric_infonce(fns[impl]()).backward()


def profile(run) -> str:
    """torch.profiler table of one forward+backward: where the time goes (self CPU time)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14)


def _status_mib(key: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS and return it, in MiB.
    ru_maxrss cannot do this: it keeps the import-time peak (scipy, pandas), which hides
    a workload of a few hundred MiB. NaN where /proc cannot (not Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return float("nan")
    return _status_mib("VmRSS")


def peak_rss_since_reset() -> float:
    return _status_mib("VmHWM")


def measure(cfg: dict) -> dict:
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    if cfg["impl"] == "interleaved":
        res = interleaved(cfg["b"], cfg["m"], cfg["d"], int(cfg.get("reps", 3)))
        return res | {
            "time_s": float("nan"),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "gemm_gflops": 6.0
            * cfg["b"] ** 2
            * cfg["m"] ** 2
            * cfg["d"]
            / (res["kme_s"] / res["kme_x_floor"])
            / 1e9,
            "threads": torch.get_num_threads(),
        }
    run = workload(cfg["impl"], cfg["b"], cfg["m"], cfg["d"])
    rss0 = reset_peak_rss()
    if cfg.get("warmup", True):
        run()
    # the workload's own peak above the memory it started with (inputs already allocated)
    workload_peak = peak_rss_since_reset() - rss0
    # Interleaved: the GEMM rate is re-measured before every timed run and the best of each is
    # kept, so a burst of load from other jobs cannot favour one side of the ratio.
    rates, times = [gemm_rate(reps=2)], []
    for _ in range(int(cfg.get("reps", 3))):
        times.append(_timed(run))
        rates.append(gemm_rate(reps=1))
    rate = max(rates)
    # For reference only: small GEMMs (cache-resident, like the heads' tiles) can run faster than
    # the 2048² matmul on a memory-bound shared machine, which would flatter the floor ratio.
    small = gemm_rate(reps=5, n=512)
    extra = {"profile": profile(run)} if cfg.get("profile") else {}
    if cfg["impl"] == "linear":
        extra |= linear_ratios(cfg["b"], cfg["m"] ** 2 * cfg["d"], int(cfg.get("reps", 3)))
    return extra | {
        "time_s": min(times),
        "time_median_s": statistics.median(times),
        "reps": len(times),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "workload_peak_rss_mib": workload_peak,
        "gemm_gflops": rate / 1e9,
        "gemm512_gflops": small / 1e9,
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))

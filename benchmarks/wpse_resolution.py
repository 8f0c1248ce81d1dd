"""WPSE on points whose every fp32 pair the expansion cannot resolve: what the resolution costs.

Unnormalised N(0, 1) points, d = 256, σ = 2.5, B = C, M = N = 8, positive weights, Gaussian
kernel, α₁ = 0: scores near −40 (kernel values ~1e-18, within fp32's range; at σ = 1 they would
all underflow to 0), and every pair's fp32 expansion error estimate exceeds the 1e-5 contract,
so every pair is resolved (`_pairwise_chunked.resolve_kernel_sums`). One fwd+bwd (sum of the logits),
CPU, modes:
- block:       the float64 expansion over the block of flagged pairs (the default);
- differences: every flagged pair from direct differences (DENSE_FP64_FRACTION = inf: what every
               flagged pair took before the float64 block existed);
- einsum:      the naive version, materialising (B, C, M, N) for autograd (fp32);
- floor:       the fp32 expansion with no resolution at all (the speed floor; its error is what
               the flags guard against, measured below).
Timed in interleaved rounds (paired ratios to `block`, median and range); peak memory per mode
in a fresh process (peak RSS above the inputs); max error of each mode against the float64
brute-force reference, relative to Σ|wx wy| k (+1e-30) as in tests/similarity/test_pairwise.py.

    .venv/bin/python benchmarks/wpse_resolution.py               # the recorded run
    .venv/bin/python benchmarks/wpse_resolution.py --batch 32 --rounds 2   # quick look

Writes results/wpse_resolution.{json,md} (or --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository root: `pmilab` without installing

MODES = ("block", "differences", "einsum", "floor")


def inputs(b: int, m: int, d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    px, py = torch.randn(b, m, d, generator=g), torch.randn(b, m, d, generator=g)
    wx, wy = torch.rand(b, m, generator=g) + 0.1, torch.rand(b, m, generator=g) + 0.1
    return px, wx, py, wy


def run(mode: str, args) -> torch.Tensor:
    """One fwd+bwd in `mode`; returns the logits."""
    from pmilab.similarity import _pairwise as P
    from pmilab.similarity import _pairwise_chunked as C

    old = (C.DENSE_FP64_FRACTION, C.WPSE_TOL[torch.float32])
    if mode == "differences":
        C.DENSE_FP64_FRACTION = float("inf")
    if mode == "floor":
        C.WPSE_TOL[torch.float32] = float("inf")
    try:
        px, wx, py, wy, s = args
        px, py = px.detach().requires_grad_(), py.detach().requires_grad_()
        s = torch.tensor(s)
        fn = P.wpse_logits_einsum if mode == "einsum" else P.wpse_logits
        out = fn(px, wx, py, wy, s, 0.0, 1.0)
        out.sum().backward()
        return out.detach()
    finally:
        C.DENSE_FP64_FRACTION, C.WPSE_TOL[torch.float32] = old


def hwm_mib() -> float:
    """This process's peak resident memory (VmHWM), MiB. Not ru_maxrss: Linux carries that over
    from the parent across fork and exec, so a child started by a big parent reads the parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib(mode: str, b: int, m: int, d: int, sigma: float) -> float:
    """Peak RSS above the inputs of one fwd+bwd in a fresh process (MiB)."""
    code = (
        f"import sys; sys.path.insert(0, {str(HERE.parent)!r}); sys.path.insert(0, {str(HERE)!r});"
        f"import wpse_resolution as w; a = (*w.inputs({b}, {m}, {d}), {sigma});"
        "w.run('floor', (*w.inputs(2, 2, 8), 1.0)); h0 = w.hwm_mib();"
        f"w.run({mode!r}, a); print(w.hwm_mib() - h0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128, help="B = C (default 128)")
    ap.add_argument("--points", type=int, default=8, help="M = N (default 8)")
    ap.add_argument("--dim", type=int, default=256, help="d (default 256)")
    ap.add_argument("--sigma", type=float, default=2.5, help="σ (default 2.5)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="results directory")
    a = ap.parse_args(argv)
    if min(a.batch, a.points, a.dim, a.rounds) < 1 or not a.sigma > 0:
        ap.error("--batch, --points, --dim, --rounds and --sigma must be positive")
    torch.manual_seed(0)
    from pmilab.similarity import _pairwise as P
    from pmilab.similarity import _pairwise_chunked as C

    args = (*inputs(a.batch, a.points, a.dim), a.sigma)
    px, wx, py, wy, _ = args
    _, err = C.kernel_expanded(px, wx, py, wy, torch.tensor(a.sigma) ** -2, "gaussian")
    flagged = (err > C.WPSE_TOL[torch.float32]).float().mean().item()
    d64 = [t.double() for t in (px, wx, py, wy)]
    ref = P.wpse_logits_naive(*d64, a.sigma, 0.0, 1.0)
    k = P.kernel_values(P.sq_dists(d64[0], d64[2]), a.sigma, "gaussian")
    scale = torch.einsum("bm,cn,bcmn->bc", d64[1], d64[3], k) / a.points**2
    errors = {}
    for mode in MODES:  # warm-up, and each mode's error against the float64 reference
        out = run(mode, args)
        errors[mode] = ((out.double() - ref).abs() / (scale + 1e-30)).max().item()
    times = {mode: [] for mode in MODES}
    for r in range(a.rounds):
        order = MODES[r % len(MODES) :] + MODES[: r % len(MODES)]  # rotate: drift hits all
        for mode in order:
            t0 = time.perf_counter()
            run(mode, args)
            times[mode].append(time.perf_counter() - t0)
        print(
            f"round {r + 1}/{a.rounds}: "
            + ", ".join(f"{m} {times[m][-1] * 1e3:.0f} ms" for m in MODES),
            flush=True,
        )
    peaks = {mode: peak_rss_mib(mode, a.batch, a.points, a.dim, a.sigma) for mode in MODES}
    rows = []
    for mode in MODES:
        ratios = [t / b for t, b in zip(times[mode], times["block"], strict=True)]
        rows.append(
            {
                "mode": mode,
                "median_ms": statistics.median(times[mode]) * 1e3,
                "min_ms": min(times[mode]) * 1e3,
                "max_ms": max(times[mode]) * 1e3,
                "ratio_to_block_median": statistics.median(ratios),
                "ratio_to_block_min": min(ratios),
                "ratio_to_block_max": max(ratios),
                "peak_rss_mib": peaks[mode],
                "max_rel_error": errors[mode],
            }
        )
    meta = {
        "B": a.batch,
        "M": a.points,
        "d": a.dim,
        "sigma": a.sigma,
        "rounds": a.rounds,
        "flagged_fraction": flagged,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "wpse_resolution.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        "# WPSE when every fp32 pair needs resolving (benchmarks/wpse_resolution.py)",
        "",
        f"B = C = {a.batch}, M = N = {a.points}, d = {a.dim}, σ = {a.sigma:g}, N(0, 1) points, Gaussian, "
        f"fwd+bwd on CPU ({meta['threads']} threads, torch {meta['torch']}), {a.rounds} "
        f"interleaved rounds, {meta['date']}. Pairs flagged by the fp32 error estimate: "
        f"{flagged:.0%}. Error: max |Δ| / Σ|wx wy| k against the float64 reference (contract "
        "1e-5).",
        "",
        "| mode | median ms (min–max) | × block, paired median (min–max) | peak RSS MiB | max error |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['median_ms']:.1f} ({r['min_ms']:.1f}–{r['max_ms']:.1f}) | "
            f"{r['ratio_to_block_median']:.2f} ({r['ratio_to_block_min']:.2f}–"
            f"{r['ratio_to_block_max']:.2f}) | {r['peak_rss_mib']:.0f} | {r['max_rel_error']:.2g} |"
        )
    (a.out / "wpse_resolution.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

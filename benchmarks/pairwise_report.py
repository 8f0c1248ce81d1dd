"""The markdown summary of a `benchmarks/pairwise.py` run: machine, must-show verdicts, full table."""

from __future__ import annotations

import math

import pandas as pd

# The targets (issue 6, "Must show").
FLOOR_X = 3.0  # KME / WPSE within 3x the GEMM floor at the must-show point
NAIVE_X = 4.0  # and >= 4x faster than the naive version
RSS_GIB = 3.0  # KME head at B=4096, M=16, d=64: whole-process peak RSS
LINEAR_X = 1.2  # linear head + symmetric InfoNCE vs matmul + two cross-entropies


def _fmt(x, spec=".3g") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _row(df: pd.DataFrame, b: int, m: int, d: int, impl: str):
    hit = df[(df.B == b) & (df.M == m) & (df.d == d) & (df.impl == impl)]
    return None if hit.empty else hit.iloc[0]


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def must_show(df: pd.DataFrame, must: tuple, memory: tuple) -> list[str]:
    lines = [
        "## Must-show points",
        "",
        "| claim | measured | target | verdict |",
        "|---|---|---|---|",
    ]
    both = _row(df, *must, "interleaved")
    for impl in ("kme", "wpse"):
        r, naive = _row(df, *must, impl), _row(df, *must, impl + "_naive")
        if both is None or both.status != "ok" or r is None or naive is None:
            lines.append(f"| {impl} at B,M,d={must} | not measured | | FAIL |")
            continue
        x = getattr(both, f"{impl}_x_floor")
        lines.append(
            f"| {impl} fwd+bwd at B=C={must[0]}, M=N={must[1]}, d={must[2]}: time / GEMM floor, "
            f"alternated with the floor's GEMM in one process | {getattr(both, f'{impl}_s'):.3f} s"
            f" = {x:.2f}x | ≤ {FLOOR_X}x | {_verdict(x <= FLOOR_X)} |"
        )
        norm = naive.x_floor / r.x_floor  # each process's time over its own floor
        lines.append(
            f"| {impl} speed-up over the naive einsum (separate processes: raw time ratio; "
            f"ratio of x_floor) | {r.speedup_vs_naive:.1f}x; {norm:.1f}x | ≥ {NAIVE_X}x | "
            f"{_verdict(min(r.speedup_vs_naive, norm) >= NAIVE_X)} |"
        )
    for impl in ("kme_head", "kme"):
        r = _row(df, *memory, impl)
        if r is not None and r.status == "ok":
            gib = r.peak_rss_mib / 1024
            lines.append(
                f"| `{impl}` fwd+bwd at B=C={memory[0]}, M=N={memory[1]}, d={memory[2]}"
                f": whole-process peak RSS | {gib:.2f} GiB ({r.time_s:.1f} s) | "
                f"< {RSS_GIB} GiB | {_verdict(gib < RSS_GIB)} |"
            )
    r = _row(df, *must, "linear")
    if r is not None and r.status == "ok":
        width = must[1] ** 2 * must[2]
        for what, col in (
            (
                "`Linear(normalize=False)` + symmetric InfoNCE vs matmul + 2 cross-entropies",
                "linear_over_minimal",
            ),
            (
                "`Linear()` (cosine) + symmetric InfoNCE vs normalize + matmul + 2 cross-entropies",
                "cosine_over_minimal_cos",
            ),
            (
                "`Linear()` (cosine) + symmetric InfoNCE vs matmul + 2 cross-entropies (no "
                "normalisation in the reference)",
                "cosine_over_minimal",
            ),
        ):
            x = getattr(r, col)
            lines.append(
                f"| {what}, B = {must[0]}, D = {width}, interleaved in one process | {x:.2f}x | "
                f"≤ {LINEAR_X}x | {_verdict(x <= LINEAR_X)} |"
            )
    return lines + [""]


def table(df: pd.DataFrame) -> list[str]:
    cols = [
        "B",
        "M",
        "d",
        "impl",
        "time_s",
        "floor_s",
        "x_floor",
        "x_floor512",
        "peak_rss_mib",
        "speedup_vs_naive",
        "linear_over_minimal",
        "cosine_over_minimal",
        "status",
    ]
    cols = [c for c in cols if c in df]
    lines = ["## All runs", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.itertuples():
        vals = [
            str(getattr(r, c)) if c in ("B", "M", "d", "impl", "status") else _fmt(getattr(r, c))
            for c in cols
            if c in df
        ]
        lines.append("| " + " | ".join(vals) + " |")
    return lines + [""]


def write_report(
    df: pd.DataFrame, profiles: dict, info: dict, args, must: tuple, memory: tuple
) -> str:
    """The report; `must` and `memory` are the (B, M, d) of the must-show and memory points."""
    threads = df["threads"].dropna()
    head = [
        "# Point-set similarity benchmark (CPU)",
        "",
        f"- machine: {info['cpu']}, {info['cores']} cores"
        + (f", GPU {info['gpu']}" if info["gpu"] else ", no GPU"),
        f"- torch {info['torch']}, python {info['python']}, torch threads "
        f"{int(threads.iloc[0]) if len(threads) else '?'}; run {info['date']}"
        + (" (--quick)" if args.quick else ""),
        "- every number below comes from this one run; each row is a fresh process. The machine "
        "is shared with other jobs, so absolute times are noisy: read the ratios.",
        "- workload: logits → symmetric InfoNCE → backward, C = B, N = M, unit-norm points, "
        "log-softmax weights, learnable σ = 0.5. floor = 6·B·C·M·N·d FLOPs / the GEMM rate of a "
        "2048² fp32 matmul measured in the same process. `*_naive`: the einsum version that "
        "keeps (B, C, M, N) for backward; not run where it would need more than 3 GiB "
        "(its time is then extrapolated per FLOP from the largest naive run).",
        "- x_floor512: the same ratio against a 512² matmul's rate (cache-resident GEMMs, like "
        "the tiles'), shown because on a memory-bound shared host it can exceed the 2048² rate.",
        "- linear: `Linear(normalize=False)` + `symmetric_infonce` on features of width M·N·d "
        "(the same FLOPs as the point-set heads); its ratios to `zx @ zy.T` + two "
        "`F.cross_entropy` (and of the cosine `Linear()` to the same with `F.normalize`) are "
        "timed interleaved in one process, best of the reps each.",
        "",
    ]
    body = must_show(df, must, memory) + table(df)
    for impl, text in profiles.items():
        body += [
            f"## Where the time goes: {impl} at B,M,d = {must} (torch.profiler, self CPU time)",
            "",
            "```",
            text.rstrip(),
            "```",
            "",
        ]
    return "\n".join(head + body)

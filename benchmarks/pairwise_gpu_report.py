"""The markdown summary of a `benchmarks/pairwise_gpu.py` run: machine, GEMM rate, tables."""

from __future__ import annotations

import math

import pandas as pd

# Expected fraction of the bf16 GEMM rate of the Triton kernels on an H100/H200, fwd+bwd at large
# B, default tiles (benchmarks/README.md, "Expected fraction of the bf16 GEMM rate"), by d.
EXPECTED = {64: "0.25–0.4", 256: "0.25–0.4 (0.44–0.6 with wgmma tiles)"}
# ... and of the flattened kernels (issue 27; benchmarks/README.md, "The flattened kernels"), by
# implementation and d
EXPECTED_FLAT = {
    "triton-flat": {64: "0.19–0.28", 256: "0.35–0.55"},
    "triton-flat-atomic": {256: "0.3–0.45"},
}


def expected(impl: str, d: int) -> str:
    """The paper estimate for this Triton implementation at this d, or "—"."""
    table = {d: EXPECTED.get(d, "—")} if impl == "triton" else EXPECTED_FLAT.get(impl, {})
    return table.get(d, "—")


def _fmt(x, spec=".3g") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def summary(df: pd.DataFrame) -> list[str]:
    """One row per (B, M, d, head): the three implementations side by side."""
    lines = [
        "## Fraction of the bf16 GEMM rate (fwd+bwd, 6·B·C·M·N·d FLOPs / time / rate)",
        "",
        "| B | M | d | head | triton | chunked | einsum | triton ms | chunked ms | einsum ms"
        " | triton MiB | chunked MiB | einsum MiB | expected triton |",
        "|" + "---|" * 14,
    ]
    key = ["B", "M", "d", "head"]
    for (b, m, d, head), grp in df.groupby(key, sort=False):
        by = {}
        for r in grp.itertuples():  # Triton: its first tile shape (all of them: tile_sweep)
            by.setdefault(r.impl, r)

        def get(impl, col, scale=1.0, spec=".3g", by=by):
            r = by.get(impl)
            if r is None or not hasattr(r, col):
                return "—"
            v = getattr(r, col)
            if isinstance(v, float) and math.isnan(v):
                return r.status if r.status != "ok" else "—"
            return _fmt(v * scale, spec)

        fr = [get(i, "frac_bf16_gemm", spec=".3f") for i in ("triton", "chunked", "einsum")]
        ms = [get(i, "time_s", 1e3) for i in ("triton", "chunked", "einsum")]
        mib = [get(i, "peak_mib", spec=".0f") for i in ("triton", "chunked", "einsum")]
        exp = EXPECTED.get(d, "—")
        lines.append(f"| {b} | {m} | {d} | {head} | " + " | ".join(fr + ms + mib) + f" | {exp} |")
    return lines + [""]


def tile_sweep(df: pd.DataFrame) -> list[str]:
    """Triton on each variant and tile shape (when more than one ran), fastest first per
    configuration."""
    tri = df[df.impl.str.startswith("triton")] if "tiles" in df else df.iloc[:0]
    if tri.empty or len(tri.groupby(["impl", "tiles"])) < 2:
        return []
    lines = [
        "## Tile sweep (Triton variants, fwd+bwd; BB,BC,warps[,stages]: sets, or points for "
        "the flattened kernels)",
        "",
        "| B | M | d | head | impl | tiles | fraction of bf16 GEMM | expected | ms | MiB "
        "| max rel diff vs chunked |",
        "|" + "---|" * 11,
    ]
    for _, grp in tri.groupby(["B", "M", "d", "head"], sort=False):
        grp = grp.sort_values("time_s", na_position="last") if "time_s" in grp else grp
        for r in grp.itertuples():
            frac = _fmt(getattr(r, "frac_bf16_gemm", math.nan), ".4f")
            ms = _fmt(getattr(r, "time_s", math.nan) * 1e3)
            mib = _fmt(getattr(r, "peak_mib", math.nan), ".0f")
            diff = _fmt(getattr(r, "max_rel_diff_vs_chunked", math.nan), ".2g")
            if r.status != "ok":
                frac = r.status
            lines.append(
                f"| {r.B} | {r.M} | {r.d} | {r.head} | {r.impl} | {r.tiles} | {frac} "
                f"| {expected(r.impl, r.d)} | {ms} | {mib} | {diff} |"
            )
    return lines + [""]


def table(df: pd.DataFrame) -> list[str]:
    cols = [
        "B",
        "M",
        "d",
        "head",
        "impl",
        "tiles",
        "time_s",
        "time_median_s",
        "reps",
        "peak_mib",
        "tflops",
        "frac_bf16_gemm",
        "max_rel_diff_vs_chunked",
        "status",
    ]
    cols = [c for c in cols if c in df]
    lines = ["## All runs", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.itertuples():
        vals = [
            str(getattr(r, c))
            if c in ("B", "M", "d", "head", "impl", "tiles", "status", "reps")
            else _fmt(getattr(r, c))
            for c in cols
        ]
        lines.append("| " + " | ".join(vals) + " |")
    return lines + [""]


def write_report(df: pd.DataFrame, info: dict, args) -> str:
    rate = df["bf16_gemm_tflops"].iloc[0] if len(df) else float("nan")
    n = int(df["gemm_n"].iloc[0]) if len(df) else 0
    mode = " (--dry-run: CPU, Triton interpreter; times say nothing)" if args.dry_run else ""
    mode += " (--quick)" if args.quick else ""
    head = [
        f"# Point-set similarity benchmark (GPU){mode}",
        "",
        f"- GPU: {info['gpu']}"
        + (f", {info['sms']} SMs, {info['memory_gib']:.0f} GiB" if "sms" in info else ""),
        f"- torch {info['torch']}, triton {info['triton']}, python {info['python']}; "
        f"run {info['date']}",
        "- Triton tiles: "
        + (f"--tiles {info['tiles']} (BB,BC,warps[,stages])" if "tiles" in info else "the defaults")
        + " (`_triton_common.tile_shape`; the flattened kernels: `flat_tile_shape`)",
        f"- bf16 GEMM rate measured in this run (best {n}² matmul, interleaved with the runs): "
        f"{rate:.1f} TFLOP/s",
        "- workload: logits → symmetric InfoNCE → backward, C = B, N = M, bf16 unit-norm points "
        "and log-softmax weights, learnable σ = 0.5 (fp32). triton: the fused kernels; chunked: "
        "the pure-torch path (fp32) that CPU tensors take; einsum: the naive version, in bf16, "
        "which keeps (B, C, M, N) for backward (not run where it would not fit).",
        "- time: best of the reps (median in the full table); memory: peak allocated above the "
        "inputs during one fwd+bwd. expected: the paper estimate for an H100/H200 "
        "(benchmarks/README.md). max_rel_diff_vs_chunked (triton rows): the logits of the two "
        "paths on the same inputs, relative as in the tests (a sanity check at these sizes).",
        "",
    ]
    return "\n".join(head + summary(df) + tile_sweep(df) + table(df))

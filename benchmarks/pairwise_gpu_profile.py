"""Where one Triton fwd+bwd spends its time: `pairwise_gpu.py --profile`.

For each configuration and head (and each --tiles shape), after two warm-up calls, one
logits → symmetric InfoNCE → backward step runs under torch.profiler; the report lists every
kernel (device time on a GPU, CPU time in a dry run) with its calls, total time and share of the
step. The fused kernels are named `_kme_fwd`, `_kme_bwd` (rows and columns passes: two calls),
`_wpse_fwd`, `_wpse_bwd`; everything else is the torch around them (norms, shifts, the error
estimate, the split sums, the loss). It answers what an ncu profile answers first, without ncu:
which kernel to look at.
"""

from __future__ import annotations

TOP = 12  # kernels listed per step; the rest are summed in one line


def kernel_times(run, device) -> list[tuple[str, int, float]]:
    """(name, calls, µs) of every kernel (GPU) or op (CPU) of one call of `run`, longest first."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    run()
    run()
    if cuda:
        torch.cuda.synchronize(device)
    with profile(activities=acts) as prof:
        run()
        if cuda:
            torch.cuda.synchronize(device)
    out = []
    for e in prof.key_averages():
        us = e.self_device_time_total if cuda else e.self_cpu_time_total
        if us > 0:
            out.append((e.key, e.count, float(us)))
    return sorted(out, key=lambda r: -r[2])


FUSED = ("_kme_fwd", "_kme_bwd", "_wpse_fwd", "_wpse_bwd")


def step_lines(title: str, times: list[tuple[str, int, float]], unit: str) -> list[str]:
    total = sum(t for _, _, t in times) or float("nan")
    fused = sum(t for name, _, t in times if name.startswith(FUSED))
    lines = [
        f"### {title}",
        "",
        f"{unit} time {total / 1e3:.3f} ms, of which the fused kernels {fused / 1e3:.3f} ms "
        f"({fused / total:.1%})",
        "",
    ]
    lines += ["| kernel | calls | ms | share |", "|---|---|---|---|"]
    for name, calls, us in times[:TOP]:
        short = name if len(name) <= 70 else name[:67] + "..."
        lines.append(f"| `{short}` | {calls} | {us / 1e3:.3f} | {us / total:.1%} |")
    rest = times[TOP:]
    if rest:
        us = sum(t for _, _, t in rest)
        lines.append(
            f"| {len(rest)} others | {sum(c for _, c, _ in rest)} | {us / 1e3:.3f} | {us / total:.1%} |"
        )
    return lines + [""]


def header(device, info: dict) -> list[str]:
    """The report's first lines."""
    unit = "device" if device.type == "cuda" else "CPU"
    return [
        "# Where one Triton fwd+bwd spends its time (torch.profiler)",
        "",
        f"- GPU: {info['gpu']}; torch {info['torch']}, triton {info['triton']}; run {info['date']}",
        "- one logits → symmetric InfoNCE → backward step after two warm-up calls; self time per "
        f"kernel ({unit}); `_*_bwd` runs twice per step (rows, columns)"
        + ("" if device.type == "cuda" else "; dry run: the interpreter's times say nothing"),
        "",
    ]

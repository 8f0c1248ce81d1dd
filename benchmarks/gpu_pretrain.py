"""GPU check of `pmilab pretrain`: the CUDA + bf16 path, images/s, and the heads against GEMM.

One command, three parts, one results file named after the machine:
1. GEMM rates: a bf16 (and an fp32) square matmul timed on this device; the yardstick.
2. bf16 pretraining smoke, one per head (linear, WPSE, KME): `pmilab pretrain` in-process on
   CUDA with `--precision bf16` (towers under bf16 autocast, heads and loss in fp32), the
   ViT-B-16 preset on the offline digits data resized to 224 px; records the final loss (must
   be finite), images/s and data time of the last logged interval, peak GPU memory.
3. Head benchmark: (a) the issue's step benchmark (benchmarks/pretrain_step.py: small ViT,
   batch 256, d = 256, M = 4) under bf16 autocast, as ratios to linear, with the head's share of
   the step; (b) each similarity head alone (forward + backward, fp32 as the precision rule
   says) at B = C = 1024, M = N = 8, d = 256, as an effective rate 6·B·C·M·N·d / t (linear:
   6·B·C·d / t) and as a fraction of the measured bf16 and fp32 GEMM rates.

    python benchmarks/gpu_pretrain.py                 # on a CUDA machine (a few minutes)
    python benchmarks/gpu_pretrain.py --dry-run --out-dir /tmp/gp   # CPU, tiny sizes: the code paths

Writes OUT_DIR/pretrain-<machine>.json and .md (default OUT_DIR: benchmarks/results/gpu).
Exit status: 0 done; 1 a smoke run failed (its error is in the results); 2 no CUDA device
without --dry-run, or bad arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # sibling: pretrain_step
sys.path.insert(0, str(HERE.parent))  # the repository root: `pmilab` without installing

import pretrain_step  # noqa: E402

HEADS = ("linear", "wpse", "kme")


def sizes(dry: bool) -> dict:
    if dry:  # tiny: every code path, seconds on a CPU
        return {
            "gemm_n": 256,
            "smoke": {
                "tower": "hf-vit",
                "text_tower": "clip",
                "width": 16,
                "image_layers": 1,
                "text_layers": 1,
                "image_heads": 2,
                "text_heads": 2,
                "image_size": 16,
                "patch_size": 8,
                "dim": 8,
                "tokenizer": "bpe",
                "vocab_size": 300,
                "batch_size": 4,
                "steps": 2,
            },
            "step": {"batch": 8, "dim": 8, "points": 2, "width": 16, "layers": 1, "rounds": 1},
            "head": {"b": 16, "m": 2, "d": 8},
        }
    return {
        "gemm_n": 8192,
        "smoke": {"model": "ViT-B-16", "batch_size": 64, "steps": 30, "workers": 4},
        "step": {"batch": 256, "dim": 256, "points": 4, "width": 128, "layers": 4, "rounds": 20},
        "head": {"b": 1024, "m": 8, "d": 256},
    }


def machine_name(dry: bool) -> str:
    if dry:
        return "dry-run-cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str, repeat: int = 5) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeat):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def gemm_rates(n: int, device: str) -> dict:
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        t = timed(lambda a=a, b=b: a @ b, device)
        out[f"{name}_tflops"] = 2 * n**3 / t / 1e12
    return out


def smoke(sim: str, fields: dict, device: str, out: Path) -> dict:
    """One bf16 `pmilab pretrain` run; its loss, images/s, data time and peak memory."""
    from pmilab.pretrain.config import PretrainConfig
    from pmilab.pretrain.train import train

    steps = fields["steps"]
    cfg = PretrainConfig.from_flags(
        {
            **fields,
            "data": "digits",
            "similarity": sim,
            "device": device,
            "precision": "bf16",
            "warmup": 2,
            "log_every": max(1, steps // 2),
            "out": str(out / sim),
            "progress": False,
        }
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        summary = train(cfg)
    except Exception as e:  # record and go on: the results say which head failed and why
        return {"ok": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
    rows = (out / sim / "log.csv").read_text().splitlines()
    head, last = rows[0].split(","), rows[-1].split(",")
    row = dict(zip(head, last, strict=True))
    res = {
        "ok": math.isfinite(summary["final_loss"]),
        "final_loss": summary["final_loss"],
        "images_per_s": float(row["samples_per_s"]),
        "data_s_per_step": float(row["data_s"]),
        "step_s": float(row["step_s"]),
        "precision": summary["precision"],
        "device": summary["device"],
    }
    if device == "cuda":
        res["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return res


def head_alone(sim: str, b: int, m: int, d: int, device: str) -> dict:
    """One similarity head's logit matrix + InfoNCE, forward and backward, fp32."""
    from pmilab.losses import symmetric_infonce
    from pmilab.similarity import KME, WPSE, Linear

    g = torch.Generator(device=device).manual_seed(0)
    if sim == "linear":
        head = Linear().to(device)
        parts = [torch.randn(b, d, device=device, generator=g) for _ in range(2)]
        flops = 6 * b * b * d
    else:
        head = (WPSE(alpha_linear=1.0) if sim == "wpse" else KME()).to(device)
        pts = [torch.randn(b, m, d, device=device, generator=g) for _ in range(2)]
        wts = [torch.randn(b, m, device=device, generator=g).log_softmax(-1) for _ in range(2)]
        parts = [pts[0], wts[0], pts[1], wts[1]]
        flops = 6 * b * b * m * m * d
    parts = [p.requires_grad_(True) for p in parts]

    def step():
        loss = symmetric_infonce(head.logit_matrix(*parts))
        loss.backward()
        for p in parts:
            p.grad = None

    t = timed(step, device)
    return {"seconds": t, "effective_tflops": flops / t / 1e12}


def markdown(res: dict) -> str:
    g = res["gemm"]
    lines = [
        f"# GPU check of pretraining: {res['machine']}",
        "",
        f"{res['device_name']}; torch {res['torch']}, CUDA {res['cuda']}; {res['utc']}; "
        f"mode: {res['mode']}.",
        "",
        f"GEMM ({res['sizes']['gemm_n']}^2): bf16 {g['bf16_tflops']:.3g} TFLOP/s, "
        f"fp32 {g['fp32_tflops']:.3g} TFLOP/s.",
        "",
        "## bf16 pretraining smoke (`pmilab pretrain --precision bf16`)",
        "",
        "| head | ok | final loss | images/s | data s/step | step s | peak GiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for h, r in res["smoke"].items():
        if not r.get("final_loss") and not r["ok"]:
            lines.append(f"| {h} | FAILED: {r.get('error', '')} | | | | | |")
            continue
        lines.append(
            f"| {h} | {r['ok']} | {r['final_loss']:.4f} | {r['images_per_s']:.1f} | "
            f"{r['data_s_per_step']:.4f} | {r['step_s']:.4f} | {r.get('peak_gib', float('nan')):.2f} |"
        )
    lines += [
        "",
        "## Head overhead: small ViT step under bf16 autocast (ratios to linear)",
        "",
        "| head | step s | step / linear [q1, q3] | heads + similarity + loss share |",
        "|---|---|---|---|",
    ]
    for h, r in res["step"].items():
        lines.append(
            f"| {h} | {r['step_s']:.4f} | {r['step_ratio']:.3f} [{r['step_ratio_q1']:.3f}, "
            f"{r['step_ratio_q3']:.3f}] | {100 * r['head_share']:.1f}% |"
        )
    hs = res["sizes"]["head"]
    lines += [
        "",
        f"## Similarity heads alone (fp32, B = C = {hs['b']}, M = N = {hs['m']}, d = {hs['d']})",
        "",
        "| head | s (fwd + bwd) | effective TFLOP/s | of bf16 GEMM | of fp32 GEMM |",
        "|---|---|---|---|---|",
    ]
    for h, r in res["heads"].items():
        lines.append(
            f"| {h} | {r['seconds']:.5f} | {r['effective_tflops']:.2f} | "
            f"{100 * r['effective_tflops'] / g['bf16_tflops']:.1f}% | "
            f"{100 * r['effective_tflops'] / g['fp32_tflops']:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: exercise the paths")
    p.add_argument("--out-dir", type=Path, default=HERE / "results" / "gpu", help="results folder")
    p.add_argument("--steps", type=int, default=None, help="smoke steps per head (default 30)")
    p.add_argument("--batch", type=int, default=None, help="smoke batch per step (default 64)")
    args = p.parse_args(argv)
    for name in ("steps", "batch"):
        v = getattr(args, name)
        if v is not None and v < (1 if name == "steps" else 2):
            p.error(f"--{name} must be >= {1 if name == 'steps' else 2}, got {v}")
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_pretrain: error: no CUDA device here; use --dry-run on a CPU", file=sys.stderr)
        return 2
    device = "cpu" if args.dry_run else "cuda"
    if args.dry_run:
        torch.set_num_threads(1)  # tiny sizes: one thread is fastest, and steady on a busy host
    sz = sizes(args.dry_run)
    if args.steps is not None:
        sz["smoke"]["steps"] = args.steps
    if args.batch is not None:
        sz["smoke"]["batch_size"] = args.batch
    name = machine_name(args.dry_run)
    res = {
        "machine": name,
        "device_name": (platform.processor() or platform.machine())
        if args.dry_run
        else torch.cuda.get_device_name(0),
        "host": platform.node(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "mode": "dry-run (CPU, tiny sizes; numbers mean nothing)" if args.dry_run else "gpu",
        "utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "sizes": sz,
    }
    res["gemm"] = gemm_rates(sz["gemm_n"], device)
    with tempfile.TemporaryDirectory() as tmp:
        res["smoke"] = {h: smoke(h, sz["smoke"], device, Path(tmp)) for h in HEADS}
    st = sz["step"]
    make_cfg = pretrain_step.config(st["batch"], st["dim"], st["points"], st["width"], st["layers"])
    times, params = pretrain_step.measure(
        make_cfg, st["batch"], st["rounds"], HEADS, device, autocast=True
    )
    res["step"] = pretrain_step.summarise(times, params)
    hs = sz["head"]
    res["heads"] = {h: head_alone(h, hs["b"], hs["m"], hs["d"], device) for h in HEADS}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"pretrain-{name}.json").write_text(json.dumps(res, indent=1) + "\n")
    (args.out_dir / f"pretrain-{name}.md").write_text(markdown(res))
    print(markdown(res))
    return 0 if all(r["ok"] for r in res["smoke"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

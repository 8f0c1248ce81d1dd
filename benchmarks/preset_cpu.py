"""The real-size preset on CPU: parameter count and step time of `--model ViT-B-16` per head.

ViT-B/16 image tower at 224 px, 12-layer width-512 text transformer (77 tokens), d = 512, the
vocabulary of CLIP's BPE (49408 tokens). One AdamW step at batch 2 on a fixed synthetic batch;
the median of `--steps` timed steps after one warm-up step.

    .venv/bin/python benchmarks/preset_cpu.py          # writes results/preset_cpu.{json,md}
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import pretrain_step  # noqa: E402

VOCAB = 49408


def main(argv: list[str] | None = None) -> int:
    from pmilab.pretrain.config import PretrainConfig
    from pmilab.pretrain.model import build_model
    from pmilab.pretrain.train import optimizer_for

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3, help="timed steps per head (after a warm-up)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", type=Path, default=HERE / "results", help="directory for the results")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    batch = (
        torch.randn(2, 3, 224, 224, generator=g),
        torch.randint(3, VOCAB, (2, 77), generator=g),
        torch.ones(2, 77, dtype=torch.bool),
    )
    rows = {}
    for sim in ("linear", "wpse", "kme"):
        cfg = PretrainConfig.from_flags({"model": "ViT-B-16", "similarity": sim, "batch_size": 2})
        torch.manual_seed(0)
        model = build_model(cfg.model_config(VOCAB))
        opt = optimizer_for(model, cfg)
        pretrain_step.time_step(model, opt, batch)  # warm-up
        times = [pretrain_step.time_step(model, opt, batch) for _ in range(args.steps)]
        rows[sim] = {
            "params": sum(p.numel() for p in model.parameters()),
            "image_tower": sum(p.numel() for p in model.image.parameters()),
            "text_tower": sum(p.numel() for p in model.text.parameters()),
            "step_s": statistics.median(times),
            "steps_s": times,
        }
        del model, opt
    res = {"machine": pretrain_step.machine(), "batch": 2, "vocab": VOCAB, "results": rows}
    lines = [
        "# `--model ViT-B-16` on CPU (benchmarks/preset_cpu.py)",
        "",
        f"ViT-B/16 at 224 px + 12-layer width-512 text tower, d = 512, vocabulary {VOCAB}; one "
        f"AdamW step at batch 2, median of {args.steps} after a warm-up.",
        f"Machine: {res['machine']['cpu']}, {res['machine']['cores']} cores, torch "
        f"{res['machine']['torch']}, {args.threads} thread(s), load average "
        f"{res['machine']['load_average']} at the end, {res['machine']['utc']}.",
        "",
        "| head | parameters | image tower | text tower | step at batch 2 (s) |",
        "|---|---|---|---|---|",
    ]
    for sim, r in rows.items():
        lines.append(
            f"| {sim} | {r['params']:,} | {r['image_tower']:,} | {r['text_tower']:,} | "
            f"{r['step_s']:.2f} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "preset_cpu.json").write_text(json.dumps(res, indent=1) + "\n")
    (args.out / "preset_cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

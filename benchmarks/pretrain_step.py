"""Head overhead of pretraining: one optimizer step of linear, WPSE and KME on the same towers.

Setup (the issue's): a small transformers ViT image tower and a CLIP text tower (width 128,
4 layers, 4 heads, 32 px images in 4 px patches, 16 tokens), batch 256, d = 256, M = 4, CPU.
The three models share their towers' initial weights (same seed, towers built first); they
differ only in the output heads and the similarity.

Measured, interleaved so that the machine's drift hits every head alike:
- `step`: a full optimizer step (forward, backward through towers and heads, AdamW) on a fixed
  synthetic batch, for each head in turn (rotated order), `--rounds` times;
- `head`: the part that the choice of head adds, on the same round: the output heads (point or
  point-set), the similarity's logit matrix and the InfoNCE loss, forward and backward, from the
  towers' (detached) outputs; and `sim`, the similarity and loss alone.
- Ratios to linear are taken round by round (paired) and summarised by their median and
  quartiles; the head's share of the step is median(head) / median(step).

    .venv/bin/python benchmarks/pretrain_step.py                      # the recorded run
    .venv/bin/python benchmarks/pretrain_step.py --rounds 3 --batch 32  # quick look
    .venv/bin/python benchmarks/pretrain_step.py --only wpse --rounds 4 # one head, prints only

Writes results/pretrain_step.{json,md} (or --out).
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

HEADS = ("linear", "wpse", "kme")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository root: `pmilab` without installing


def config(batch: int, dim: int = 256, points: int = 4, width: int = 128, layers: int = 4):
    from pmilab.pretrain.config import PretrainConfig

    return lambda sim: PretrainConfig(
        similarity=sim,
        tower="hf-vit",
        text_tower="clip",
        width=width,
        image_layers=layers,
        image_heads=4,
        text_layers=layers,
        text_heads=4,
        patch_size=4,
        image_size=32,
        context=16,
        dim=dim,
        points=points,
        batch_size=batch,
    )


def build(make_cfg, sim: str, device: str = "cpu", vocab: int = 512):
    from pmilab.pretrain.model import build_model
    from pmilab.pretrain.train import optimizer_for

    cfg = make_cfg(sim)
    torch.manual_seed(0)
    model = build_model(cfg.model_config(vocab)).to(device)
    return model, optimizer_for(model, cfg)


def synthetic_batch(n: int, device: str = "cpu", vocab: int = 512, context: int = 16):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, 32, 32, generator=g)
    ids = torch.randint(3, vocab, (n, context), generator=g)
    mask = torch.ones(n, context, dtype=torch.bool)
    mask[n // 2 :, 10:] = False
    return images.to(device), ids.to(device), mask.to(device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_step(model, opt, batch, autocast: bool = False, device: str = "cpu") -> float:
    from pmilab.pretrain.accum import accumulate

    sync(device)
    t = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    accumulate(model, model, [batch], autocast=autocast)
    opt.step()
    sync(device)
    return time.perf_counter() - t


def time_head(model, batch, autocast: bool = False, device: str = "cpu") -> tuple[float, float]:
    """(output heads + similarity + loss, similarity + loss), forward and backward."""
    from pmilab.runtime.distributed import local_infonce
    from pmilab.runtime.precision import encoder_autocast

    images, ids, mask = batch
    with torch.no_grad(), encoder_autocast(images.device.type, autocast):
        img_tok = [t.detach() for t in model.image(images)]
        txt_tok = [t.detach() for t in model.text(ids, mask)]
    for t in img_tok + txt_tok:
        if t.is_floating_point():
            t.requires_grad_(True)
    model.zero_grad(set_to_none=True)
    sync(device)
    t0 = time.perf_counter()
    img = model._finish(model.image_head(*img_tok))
    txt = model._finish(model.text_head(*txt_tok))
    sync(device)
    t1 = time.perf_counter()
    leaves = [x.detach().requires_grad_(True) for x in img + txt]
    loss = local_infonce(model.logit_matrix, tuple(leaves[: len(img)]), tuple(leaves[len(img) :]))
    loss.backward()
    sync(device)
    t2 = time.perf_counter()
    torch.autograd.backward([*img, *txt], [x.grad for x in leaves])
    sync(device)
    t3 = time.perf_counter()
    return (t1 - t0) + (t2 - t1) + (t3 - t2), t2 - t1


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def measure(make_cfg, batch_size: int, rounds: int, heads=HEADS, device="cpu", autocast=False):
    models = {h: build(make_cfg, h, device) for h in heads}
    batch = synthetic_batch(batch_size, device)
    for h in heads:  # warm-up: allocator, first-call dispatch
        time_step(*models[h], batch, autocast, device)
        time_head(models[h][0], batch, autocast, device)
    times = {h: {"step": [], "head": [], "sim": []} for h in heads}
    for r in range(rounds):
        order = heads[r % len(heads) :] + heads[: r % len(heads)]  # rotate who goes first
        for h in order:
            times[h]["step"].append(time_step(*models[h], batch, autocast, device))
            head, sim = time_head(models[h][0], batch, autocast, device)
            times[h]["head"].append(head)
            times[h]["sim"].append(sim)
    params = {h: sum(p.numel() for p in models[h][0].parameters()) for h in heads}
    return times, params


def summarise(times: dict, params: dict) -> dict:
    out = {}
    for h, t in times.items():
        row = {"params": params[h]}
        for k in ("step", "head", "sim"):
            row[f"{k}_s"] = statistics.median(t[k])
        row["head_share"] = row["head_s"] / row["step_s"]
        row["sim_share"] = row["sim_s"] / row["step_s"]
        if "linear" in times:
            ratios = [a / b for a, b in zip(t["step"], times["linear"]["step"], strict=True)]
            row["step_ratio_q1"], row["step_ratio"], row["step_ratio_q3"] = quartiles(ratios)
        out[h] = row
    return out


def machine() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in load],
        "utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def markdown(res: dict) -> str:
    m, a = res["machine"], res["args"]
    lines = [
        "# Pretraining step: head overhead (benchmarks/pretrain_step.py)",
        "",
        f"Towers: transformers ViT (width {a['width']}, {a['layers']} layers, 32 px, patch 4) and "
        f"CLIP text (width {a['width']}, {a['layers']} layers, 16 tokens); batch {a['batch']}, "
        f"d = {a['dim']}, M = {a['points']}; {a['rounds']} interleaved rounds.",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} thread(s), "
        f"load average {m['load_average']} at the end, {m['utc']}.",
        "",
        "| head | params | step (s, median) | step / linear (median [q1, q3] of paired rounds) "
        "| heads + similarity + loss (s) | its share of the step | similarity + loss share |",
        "|---|---|---|---|---|---|---|",
    ]
    for h, r in res["results"].items():
        lines.append(
            f"| {h} | {r['params']:,} | {r['step_s']:.3f} | {r['step_ratio']:.3f} "
            f"[{r['step_ratio_q1']:.3f}, {r['step_ratio_q3']:.3f}] | {r['head_s']:.4f} | "
            f"{100 * r['head_share']:.1f}% | {100 * r['sim_share']:.1f}% |"
        )
    if res.get("whole_process"):
        lines += ["", "Whole-process cross-check (`--only HEAD` against `--only linear`, run in "]
        lines[-1] += "turn A B A B ..., the ratio taken pair by pair; median [min, max]):"
        lines += [""] + [f"- {k}: {v}" for k, v in res["whole_process"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=256, help="pairs per step")
    p.add_argument("--dim", type=int, default=256, help="point / embedding dimension d")
    p.add_argument("--points", type=int, default=4, help="points per input M")
    p.add_argument("--width", type=int, default=128, help="tower width")
    p.add_argument("--layers", type=int, default=4, help="tower layers")
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steadiest on a busy host)"
    )
    p.add_argument(
        "--only", choices=HEADS, default=None, help="time one head and print (whole-process A/B)"
    )
    p.add_argument(
        "--whole-process",
        default=None,
        help="a JSON file of whole-process A/B timings (head vs linear) to record beside the run",
    )
    p.add_argument("--out", type=Path, default=HERE / "results", help="directory for the results")
    args = p.parse_args(argv)
    if min(args.batch, args.dim, args.points, args.rounds, args.threads) < 1:
        p.error("--batch, --dim, --points, --rounds and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    make_cfg = config(args.batch, args.dim, args.points, args.width, args.layers)
    heads = (args.only,) if args.only else HEADS
    times, params = measure(make_cfg, args.batch, args.rounds, heads)
    res = {"args": vars(args) | {"out": str(args.out)}, "machine": machine()}
    res["results"] = summarise(times, params)
    res["times"] = times
    if args.only:  # one head for an external whole-process timer: print, write nothing
        print(json.dumps(res["results"]))
        return 0
    if args.whole_process:
        res["whole_process"] = json.loads(Path(args.whole_process).read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pretrain_step.json").write_text(json.dumps(res, indent=1) + "\n")
    (args.out / "pretrain_step.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`pmilab pretrain`: image-text contrastive pretraining (docs/theory.md T7); works under torchrun."""

from __future__ import annotations

import argparse
from dataclasses import fields

from pmilab.pretrain.train import PretrainConfig

HELP = {
    "data": "shapes (known-PMI, generated once into $PMILAB_CACHE or ~/.cache/pmilab), digits "
    "(sklearn, offline), a CSV with filepath,caption columns, or webdataset tar shards "
    "(a .tar, data-{000..009}.tar, a glob or a directory)",
    "out": "run directory: ckpt.pt, tokenizer.json, config.json, log.csv, summary.json",
    "similarity": "similarity head: linear (CLIP), wpse or kme",
    "tower": "image tower: cnn or vit",
    "dim": "embedding / point dimension d",
    "points": "points per input M (wpse, kme)",
    "width": "tower width",
    "context": "text context length in tokens",
    "image_size": "images are resized (nearest) to this square size",
    "sigma": "initial kernel bandwidth (wpse, kme)",
    "steps": "optimizer steps",
    "batch_size": "pairs per rank per micro-batch (the global batch is this x ranks)",
    "accum": "micro-batches per optimizer step (gradient accumulation)",
    "lr": "peak learning rate (AdamW, linear warmup then cosine to 0)",
    "weight_decay": "AdamW weight decay on weight matrices",
    "warmup": "warmup steps",
    "seed": "seed of the initialisation and of the data order",
    "ckpt_every": "write a checkpoint every N steps (and at the end)",
    "log_every": "append a row to log.csv every N steps",
    "device": "auto (CUDA if present), cpu, cuda or cuda:N",
    "precision": "auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16 or fp64",
    "workers": "DataLoader worker processes",
    "threads": "torch CPU threads (0: torch's default; 1 is fastest on a busy machine)",
    "shapes_train": "training images of the shapes dataset",
    "shapes_test": "held-out images of the shapes dataset",
}
CHOICES = {
    "similarity": ["linear", "wpse", "kme"],
    "tower": ["cnn", "vit"],
    "precision": ["auto", "fp32", "bf16", "fp64"],
}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="train image and text towers with a linear, WPSE or KME similarity",
        description="Image-text contrastive pretraining. Under `torchrun --nproc_per_node K -m "
        "pmilab pretrain ...` it runs data-parallel (DDP; gloo on CPU, nccl on CUDA).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    defaults = PretrainConfig()
    for f in fields(PretrainConfig):
        if f.name in ("resume", "progress"):
            continue
        flag = "--" + f.name.replace("_", "-")
        p.add_argument(
            flag,
            type=type(getattr(defaults, f.name)),
            dest=f.name,
            default=getattr(defaults, f.name),
            choices=CHOICES.get(f.name),
            help=HELP.get(f.name, ""),
        )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/ckpt.pt (starts fresh if there is none yet)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pmilab.pretrain.train import train

    cfg = PretrainConfig(**{f.name: getattr(args, f.name) for f in fields(PretrainConfig)})
    summary = train(cfg)
    if summary.get("world_size", 1) == 1 or _is_main():
        print(
            f"pmilab pretrain: {cfg.similarity}: {summary['steps']} steps, final loss "
            f"{summary['final_loss']:.4f}, {summary['wall_s']:.1f} s -> {cfg.out}"
        )
    return 0


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"

"""`pmilab pretrain`: image-text contrastive pretraining (docs/theory.md T7); works under torchrun
and SLURM (srun). Flags follow open_clip's names where the feature is the same."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from dataclasses import fields
from pathlib import Path
from types import ModuleType

HELP = {
    "data": "shapes (known-PMI, generated once into $PMILAB_CACHE or ~/.cache/pmilab), digits "
    "(sklearn, offline), a CSV/TSV table of image paths and captions, or webdataset tar shards "
    "(a .tar, data-{000..009}.tar, a glob or a directory; streamed)",
    "csv_separator": "column separator of a CSV/TSV --data ('\\t' for tab; a .tsv file defaults to tab)",
    "csv_img_key": "column of the image paths (relative to the table's folder)",
    "csv_caption_key": "column of the captions (open_clip's default TSV uses 'title')",
    "dataset_resampled": "draw shards with replacement forever (webdataset ResampledShards) "
    "instead of epoch by epoch",
    "shapes_train": "training images of the shapes dataset",
    "shapes_test": "held-out images of the shapes dataset",
    "workers": "DataLoader worker processes (shards are split over ranks, then workers)",
    "model": "a named preset ({presets}: ViT-B/16 at 224 px, 12-layer text transformer of width "
    "512, d=512, BPE); flags given explicitly override it",
    "similarity": "similarity head: linear (CLIP), wpse or kme (M points and weights per "
    "input), or package.module:Name or an installed pmilab.similarities entry point (a head "
    "on vectors or point sets: docs/extending.md)",
    "tower": "image tower: cnn, vit (small, built in), hf-vit (transformers ViT) or clip "
    "(transformers CLIP vision)",
    "text_tower": "text tower: transformer (small, built in) or clip (transformers CLIP text)",
    "width": "image tower width",
    "text_width": "text tower width (0: same as --width)",
    "image_layers": "image tower layers (vit, hf-vit, clip)",
    "image_heads": "image tower attention heads (vit, hf-vit, clip)",
    "text_layers": "text tower layers",
    "text_heads": "text tower attention heads",
    "patch_size": "ViT patch size in pixels",
    "dim": "embedding / point dimension d",
    "points": "points per input M (wpse, kme)",
    "context": "text context length in tokens",
    "image_size": "images are resized (nearest) to this square size",
    "sigma": "initial kernel bandwidth (wpse, kme)",
    "pretrained_image": "a local transformers folder (save_pretrained: ViT, CLIP vision or CLIP) "
    "to load the image tower from; nothing is downloaded",
    "pretrained_text": "a local transformers folder (CLIP text or CLIP) to load the text tower "
    "from; pass its tokenizer.json with --tokenizer",
    "grad_checkpointing": "recompute the transformers towers' activations in the backward pass "
    "(less memory, one more tower forward per step)",
    "tokenizer": "word (word-level), bpe (byte-level BPE), each trained on the captions, or a "
    "path to a tokenizer.json",
    "vocab_size": "vocabulary size of a tokenizer trained on the captions",
    "steps": "optimizer steps (on --resume: may only grow, which extends the cosine schedule)",
    "batch_size": "pairs per rank per micro-batch (the global batch is this x ranks x --accum-freq)",
    "accum_freq": "micro-batches per optimizer step; exact: the loss and gradients are those of "
    "one batch of accum-freq x batch-size pairs (features are cached, as in open_clip)",
    "lr": "peak learning rate (AdamW, linear warmup then cosine to 0)",
    "weight_decay": "AdamW weight decay on weight matrices",
    "warmup": "warmup steps (one not shorter than --steps is clamped to a tenth of the run, "
    "with a warning)",
    "seed": "seed of the initialisation and of the data order",
    "out": "run directory: ckpt.pt, tokenizer.json, config.json, log.csv, summary.json",
    "ckpt_every": "write a checkpoint every N steps (and at the end)",
    "keep_checkpoints": "keep the last K checkpoints (OUT/checkpoints/ckpt-STEP.pt when K > 1; "
    "OUT/ckpt.pt is always the latest)",
    "log_every": "append a row to log.csv (and TensorBoard) every N steps",
    "report_to": "also log to 'tensorboard' (event files in OUT/tensorboard)",
    "device": "auto (CUDA if present), cpu, cuda or cuda:N",
    "precision": "auto (bf16 autocast for the towers on CUDA, fp32 on CPU), fp32, bf16 or fp64; "
    "the similarity head and loss never run in bf16",
    "threads": "torch CPU threads (0: torch's default; 1 is fastest on a busy machine)",
}
CHOICES = {
    "tower": ["cnn", "vit", "hf-vit", "clip"],
    "text_tower": ["transformer", "clip"],
    "precision": ["auto", "fp32", "bf16", "fp64"],
    "model": None,  # the names of PRESETS, filled in by add_parser
}
# Second names: the flag's earlier name (--accum), and open_clip's where it differs from ours.
FLAGS = {
    "accum_freq": ["--accum-freq", "--accum"],
    "data": ["--data", "--train-data"],
    "weight_decay": ["--weight-decay", "--wd"],
    "log_every": ["--log-every", "--log-every-n-steps"],
}
SWITCHES = ("dataset_resampled", "grad_checkpointing")
# PretrainConfig fields with a hand-written option below (or none).
OWN_OPTIONS = ("resume", "overwrite", "progress")
CONFIG_PY = Path(__file__).resolve().parents[1] / "pretrain" / "config.py"


def config_module() -> ModuleType:
    """pmilab/pretrain/config.py (PretrainConfig, PRESETS) without importing its package.

    Why: the pmilab.pretrain package imports its evaluation code on import (torch,
    transformers: seconds of CPU), while `pmilab --help` and `pmilab pretrain --help` need only
    the config's fields, defaults and presets, and config.py itself imports nothing heavy. Once
    the package is imported (a run, a test), its own module is used; before, the file is loaded
    once under a private name, so the copy never stands in for the real module elsewhere."""
    real = sys.modules.get("pmilab.pretrain.config")
    if real is not None:
        return real
    name = "pmilab.cli._pretrain_config"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, CONFIG_PY)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses looks its module up while building the class
        spec.loader.exec_module(module)
    return sys.modules[name]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="train image and text towers with a linear, WPSE, KME or plugin similarity",
        description="Image-text contrastive pretraining. Data-parallel under `torchrun "
        "--nproc_per_node K -m pmilab pretrain ...` or `srun` (SLURM_PROCID / SLURM_NTASKS); "
        "gloo on CPU, nccl on CUDA. Exit codes: 0 done, 1 stopped (non-finite loss; the last "
        "checkpoint is kept), 2 bad input (one line on stderr).",
    )
    config = config_module()
    presets = list(config.PRESETS)
    choices = {**CHOICES, "model": presets}
    defaults = config.PretrainConfig()
    for f in fields(config.PretrainConfig):
        if f.name in OWN_OPTIONS:
            continue
        default = getattr(defaults, f.name)
        shown = "none" if default == "" else repr(default)
        text = HELP[f.name].replace("{presets}", ", ".join(presets))  # data's {000..009} stays
        help_text = f"{text} (default: {shown})"
        names = FLAGS.get(f.name, ["--" + f.name.replace("_", "-")])
        if f.name in SWITCHES:
            p.add_argument(*names, dest=f.name, action="store_const", const=True, help=HELP[f.name])
            continue
        p.add_argument(
            *names,
            type=type(default),
            dest=f.name,
            default=None,
            choices=choices.get(f.name),
            metavar=None if f.name in choices else f.name.upper(),
            help=help_text,
        )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/ckpt.pt (starts fresh if there is none yet); refuses changed "
        "data, seed, batch, head, tower or schedule settings",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an --out that holds an earlier run or another command's output "
        "(default: refuse it; --resume continues a pretrain run instead)",
    )
    p.add_argument(
        "--no-progress", dest="progress", action="store_false", help="hide the progress bar"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pmilab.pretrain.config import PretrainConfig
    from pmilab.pretrain.train import TrainingFailed, train
    from pmilab.runtime.distributed import shutdown

    given = {
        f.name: getattr(args, f.name)
        for f in fields(PretrainConfig)
        if getattr(args, f.name) is not None
    }
    cfg = PretrainConfig.from_flags(given)
    try:
        summary = train(cfg)
    except TrainingFailed as e:
        print(f"pmilab pretrain: stopped: {e}", file=sys.stderr)
        return 1
    shutdown()
    if summary.get("world_size", 1) == 1 or _is_main():
        print(
            f"pmilab pretrain: {cfg.similarity}: {summary['steps']} steps, final loss "
            f"{summary['final_loss']:.4f}, {summary['wall_s']:.1f} s -> {cfg.out}"
        )
    return 0


def _is_main() -> bool:
    from pmilab.runtime.distributed import detect

    return detect().main

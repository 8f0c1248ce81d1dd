"""`pmilab pretrain`: image-text contrastive pretraining (docs/theory.md T7); works under torchrun
and SLURM (srun). Flags follow open_clip's names where the feature is the same; `--help` groups
them and lists the open_clip flags accepted."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from types import ModuleType

from pmilab.cli._light import light_module
from pmilab.errors import InputError

HELP = {
    "data": "shapes (known-PMI, generated once into $PMILAB_CACHE or ~/.cache/pmilab), digits "
    "(sklearn, offline), mnist5k or sklearn-digits (real digits, held-out zero-shot templates; "
    "offline), a CSV/TSV table of image paths and captions, or webdataset tar shards "
    "(a .tar, data-{000..009}.tar, a glob or a directory; streamed)",
    "csv_separator": "column separator of a CSV/TSV --data ('\\t' for tab; a .tsv file defaults to tab)",
    "csv_img_key": "column of the image paths (relative to the table's folder)",
    "csv_caption_key": "column of the captions (open_clip's default TSV uses 'title')",
    "dataset_resampled": "draw shards with replacement forever (webdataset ResampledShards) "
    "instead of epoch by epoch",
    "shapes_train": "training images of the shapes dataset",
    "shapes_test": "held-out images of the shapes dataset",
    "workers": "DataLoader worker processes (shards are split over ranks, then workers)",
    "train_num_samples": "samples per epoch (0: a map-style data set's size; shards need it for "
    "anything counted in epochs)",
    "preprocess": "simple (nearest resize, [-1, 1]) or clip (transformers' CLIP image "
    "processor: bicubic resize of the short side, centre crop, CLIP mean and std); none given: "
    "simple for shapes and digits, clip for tables and shards",
    "aug": "none, or rrc: RandomResizedCrop for training (scale (0.9, 1.0), ratio (3/4, 4/3), "
    "bicubic: open_clip's default; seeded; with --preprocess simple the crop is resized "
    "nearest)",
    "model": "a named preset ({presets}: open_clip's shapes, built offline from transformers' "
    "CLIP configs, BPE); flags given explicitly override it",
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
    "image_size": "images are preprocessed to this square size (0: 32, or a pretrained image "
    "tower's own size; another size with a pretrained tower is refused)",
    "sigma": "initial kernel bandwidth (wpse, kme)",
    "pretrained_image": "a local transformers folder (save_pretrained: ViT, CLIP vision or CLIP) "
    "to load the image tower from; nothing is downloaded",
    "pretrained_text": "a local transformers folder (CLIP text or CLIP) to load the text tower "
    "from; pass its tokenizer.json with --tokenizer",
    "pretrained_weights": "an open_clip or OpenAI CLIP state dict (.pt, OpenAI's TorchScript .pt, "
    "or .safetensors) for both CLIP towers, and for a linear head its projections and logit "
    "scale; the file's shapes set the tower fields and --dim. --pretrained FILE says the same",
    "force_quick_gelu": "the --pretrained FILE towers use QuickGELU (OpenAI's models and "
    "open_clip's -quickgelu ones; an OpenAI TorchScript archive always does); without it GELU, "
    "open_clip's default",
    "grad_checkpointing": "recompute the transformers towers' activations in the backward pass "
    "(less memory, one more tower forward per step)",
    "tokenizer": "word (word-level), bpe (byte-level BPE), each trained on the captions, or a "
    "path to a tokenizer.json",
    "vocab_size": "vocabulary size of a tokenizer trained on the captions",
    "steps": "optimizer steps (on --resume: may only grow, which extends the LR schedule)",
    "epochs": "run for this many epochs of --train-num-samples samples instead of --steps",
    "batch_size": "pairs per rank per micro-batch (the global batch is this x ranks x --accum-freq)",
    "accum_freq": "micro-batches per optimizer step; exact: the loss and gradients are those of "
    "one batch of accum-freq x batch-size pairs (features are cached, as in open_clip)",
    "lr": "peak learning rate (AdamW, linear warmup, then --lr-scheduler)",
    "weight_decay": "AdamW weight decay on weight matrices",
    "warmup": "warmup steps (one not shorter than --steps is clamped to a tenth of the run, "
    "with a warning)",
    "lr_scheduler": "cosine (to 0 at the last step), const, or const-cooldown (constant, then "
    "down to --lr-cooldown-end over the last --epochs-cooldown epochs); open_clip's meanings",
    "epochs_cooldown": "const-cooldown: epochs of the cooldown at the end of the run",
    "lr_cooldown_power": "const-cooldown: the decay is (1 - e/E)^power (1: linear)",
    "lr_cooldown_end": "const-cooldown: the learning rate at the end of the cooldown",
    "grad_clip_norm": "clip the global gradient norm to this before each step (0: no clipping)",
    "seed": "seed of the initialisation, of the data order and of the augmentation",
    "val_data": "held-out data evaluated during training, as --data (shapes and digits: their "
    "held-out split): the loss and retrieval R@1/5/10 in val.jsonl and TensorBoard",
    "val_frequency": "evaluate --val-data every N epochs (and at the end of the run)",
    "zeroshot_frequency": "zero-shot top-1 every N epochs and at the end (0: never), on "
    "--val-data when it has named classes, else on the held-out shapes or digits",
    "val_num_samples": "held-out samples evaluated during training at most",
    "out": "run directory: ckpt.pt, tokenizer.json, config.json, log.csv, summary.json "
    "(val.jsonl with evaluation during training)",
    "ckpt_every": "write a checkpoint every N steps (and at the end)",
    "save_frequency": "write a checkpoint every N epochs instead (0: --ckpt-every)",
    "keep_checkpoints": "keep the last K checkpoints (OUT/checkpoints/ckpt-STEP.pt when K > 1; "
    "OUT/ckpt.pt is always the latest)",
    "log_every": "append a row to log.csv (and TensorBoard) every N steps",
    "report_to": "also log to 'tensorboard' (OUT/tensorboard: train/ and val/ scalars, and the "
    "settings as hyperparameters)",
    "device": "auto (CUDA if present), cpu, cuda or cuda:N",
    "precision": "auto (bf16 autocast for the towers on CUDA, fp32 on CPU), fp32, bf16, amp or "
    "fp64. amp is open_clip's: fp16 autocast of the towers with dynamic loss scaling (a step "
    "whose gradients overflow is skipped); bf16 = open_clip's amp_bf16 (also accepted). Weights "
    "stay fp32; the similarity head and the loss never run in fp16 or bf16",
    "threads": "torch CPU threads (0: torch's default; 1 is fastest on a busy machine)",
}
CHOICES = {
    "tower": ["cnn", "vit", "hf-vit", "clip"],
    "text_tower": ["transformer", "clip"],
    "precision": ["auto", "fp32", "bf16", "amp", "fp64", "amp_bf16", "amp_bfloat16"],
    "preprocess": ["simple", "clip"],
    "aug": ["none", "rrc"],
    "lr_scheduler": ["cosine", "const", "const-cooldown"],
    "model": None,  # the names of PRESETS, filled in by add_parser
}
# Second names: the flag's earlier name (--accum), and open_clip's where it differs from ours.
FLAGS = {
    "accum_freq": ["--accum-freq", "--accum"],
    "data": ["--data", "--train-data"],
    "weight_decay": ["--weight-decay", "--wd"],
    "log_every": ["--log-every", "--log-every-n-steps"],
}
SWITCHES = ("dataset_resampled", "grad_checkpointing", "force_quick_gelu")
# PretrainConfig fields with a hand-written option below (or none).
OWN_OPTIONS = ("resume", "overwrite", "progress")
# The --help groups: every PretrainConfig field (but OWN_OPTIONS) in exactly one.
GROUPS = {
    "data": ["data", "csv_separator", "csv_img_key", "csv_caption_key", "dataset_resampled"]
    + ["train_num_samples", "shapes_train", "shapes_test", "workers"],
    "preprocessing": ["preprocess", "aug", "image_size"],
    "model": ["model", "similarity", "tower", "text_tower", "width", "text_width"]
    + ["image_layers", "image_heads", "text_layers", "text_heads", "patch_size", "dim", "points"]
    + ["context", "sigma", "pretrained_image", "pretrained_text", "pretrained_weights"]
    + ["force_quick_gelu", "grad_checkpointing"]
    + ["tokenizer", "vocab_size"],
    "schedule and optimizer": ["steps", "epochs", "batch_size", "accum_freq", "lr"]
    + ["weight_decay", "warmup", "lr_scheduler", "epochs_cooldown", "lr_cooldown_power"]
    + ["lr_cooldown_end", "grad_clip_norm", "seed"],
    "evaluation during training": ["val_data", "val_frequency", "zeroshot_frequency"]
    + ["val_num_samples"],
    "run, checkpoints and logs": ["out", "ckpt_every", "save_frequency", "keep_checkpoints"]
    + ["log_every", "report_to", "device", "precision", "threads"],
}
# open_clip's flags that `pmilab pretrain` takes with the same meaning (listed in --help).
OPEN_CLIP_FLAGS = (
    "--train-data, --val-data, --train-num-samples, --val-num-samples, --dataset-resampled, "
    "--csv-separator, --csv-img-key, --csv-caption-key, --workers, --batch-size, --epochs, "
    "--lr, --wd, --warmup, --lr-scheduler cosine|const|const-cooldown, --epochs-cooldown, "
    "--lr-cooldown-power, --lr-cooldown-end, --grad-clip-norm, --accum-freq, "
    "--precision amp|amp_bf16|fp32, --model ViT-B-32|ViT-B-16|ViT-L-14, --pretrained FILE (an "
    "open_clip / OpenAI .pt or .safetensors state dict) or DIR (a local transformers CLIP "
    "folder), --force-quick-gelu, --grad-checkpointing, --seed, --save-frequency, "
    "--val-frequency, --zeroshot-frequency, --report-to tensorboard, --log-every-n-steps, "
    "--resume latest, --local-loss, --gather-with-grad"
)
CONFIG_PY = Path(__file__).resolve().parents[1] / "pretrain" / "config.py"


def config_module() -> ModuleType:
    """pmilab/pretrain/config.py (PretrainConfig, PRESETS) without importing its package.

    Why: the pmilab.pretrain package imports its evaluation code on import (torch,
    transformers: seconds of CPU), while `pmilab --help` and `pmilab pretrain --help` need only
    the config's fields, defaults and presets, and config.py itself imports nothing heavy. Once
    the package is imported (a run, a test), its own module is used; before, the file is loaded
    once under a private name, so the copy never stands in for the real module elsewhere."""
    return light_module("pmilab.pretrain.config", "pmilab.cli._pretrain_config", CONFIG_PY)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="train image and text towers with a linear, WPSE, KME or plugin similarity",
        description="Image-text contrastive pretraining. Data-parallel under `torchrun "
        "--nproc_per_node K -m pmilab pretrain ...` or `srun` (SLURM_PROCID / SLURM_NTASKS); "
        "gloo on CPU, nccl on CUDA. Settings: the defaults, then --model's preset, then "
        "--config FILE (or, with --resume latest, the run's own config.json), then the flags "
        "given. Exit codes: 0 done, 1 stopped (non-finite loss; the last checkpoint is kept), "
        "2 bad input (one line on stderr).",
    )
    config = config_module()
    presets = list(config.PRESETS)
    choices = {**CHOICES, "model": presets}
    defaults = config.PretrainConfig()
    groups = {name: p.add_argument_group(name) for name in GROUPS}
    declared = {f.name for f in fields(config.PretrainConfig)}
    for group_name, members in GROUPS.items():
        for name in members:
            if name in declared:
                add_field(groups[group_name], name, getattr(defaults, name), choices, presets)
    groups["model"].add_argument(
        "--pretrained",
        metavar="FILE|DIR",
        default=None,
        help="an open_clip / OpenAI state-dict FILE (.pt, .safetensors): --pretrained-weights "
        "FILE; or a local transformers CLIP folder (save_pretrained of a CLIPModel) for both "
        "towers: --pretrained-image DIR --pretrained-text DIR. open_clip's tags ('openai', "
        "'laion2b_...') are not read: nothing is downloaded",
    )
    run_group = groups["run, checkpoints and logs"]
    run_group.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help='a JSON object of these settings (field or flag names: {"lr": 0.001, '
        '"grad_clip_norm": 1.0}), or a run\'s config.json; flags given explicitly win',
    )
    run_group.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        type=resume_value,
        metavar="latest",
        help="continue from OUT/ckpt.pt (starts fresh if there is none yet); refuses changed "
        "data, preprocessing, seed, batch, head, tower or schedule settings. --resume latest "
        "reads every setting from OUT/config.json, so no flag needs retyping (flags given "
        "still win: --steps or --epochs may grow)",
    )
    run_group.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an --out that holds an earlier run or another command's output "
        "(default: refuse it; --resume continues a pretrain run instead)",
    )
    run_group.add_argument(
        "--no-progress", dest="progress", action="store_false", help="hide the progress bar"
    )
    compat = p.add_argument_group(
        "open_clip compatibility",
        f"open_clip flags accepted with the same meaning: {OPEN_CLIP_FLAGS}.",
    )
    for name in ("--local-loss", "--gather-with-grad"):
        compat.add_argument(
            name,
            action="store_true",
            dest="open_clip_" + name.strip("-").replace("-", "_"),
            help="accepted and ignored: pmilab always gathers the features with their gradients "
            "and computes each rank's local slab of the loss (open_clip's --local-loss "
            "--gather-with-grad)",
        )
    p.set_defaults(func=run)


def add_field(group, name: str, default, choices: dict, presets: list[str]) -> None:
    """The option of PretrainConfig field `name` (its flag names, type, choices and help)."""
    shown = "none" if default == "" else repr(default)
    if name == "preprocess":
        shown = "by --data, as above"
    text = HELP[name].replace("{presets}", ", ".join(presets))  # data's {000..009} stays
    names = FLAGS.get(name, ["--" + name.replace("_", "-")])
    if name in SWITCHES:
        group.add_argument(*names, dest=name, action="store_const", const=True, help=text)
        return
    group.add_argument(
        *names,
        type=type(default),
        dest=name,
        default=None,
        choices=choices.get(name),
        metavar=None if name in choices else name.upper(),
        help=f"{text} (default: {shown})",
    )


def resume_value(text: str) -> str:
    if text != "latest":
        raise argparse.ArgumentTypeError(f"takes no value or 'latest', got {text!r}")
    return text


def given_settings(args: argparse.Namespace) -> dict:
    """The PretrainConfig fields the command line gave, with --pretrained, --config and
    --resume latest applied (in that order of precedence: flags, file, saved run)."""
    config = config_module()
    given = {
        f.name: getattr(args, f.name)
        for f in fields(config.PretrainConfig)
        if f.name != "resume" and getattr(args, f.name) is not None
    }
    if "steps" in given and "epochs" in given:
        raise InputError("--steps and --epochs both set the run's length; pass one of them")
    if getattr(args, "pretrained", None) and Path(args.pretrained).is_file():
        given.setdefault("pretrained_weights", args.pretrained)
    elif getattr(args, "pretrained", None):
        if not Path(args.pretrained).is_dir():
            raise InputError(
                f"--pretrained {args.pretrained}: not a folder or a file; it takes an open_clip "
                "/ OpenAI state dict (.pt, .safetensors) or a local transformers CLIP folder "
                "(save_pretrained). open_clip's tags are not read: nothing is downloaded"
            )
        given.setdefault("pretrained_image", args.pretrained)
        given.setdefault("pretrained_text", args.pretrained)
    base: dict = {}
    if args.resume == "latest":
        base = config.saved_config(given.get("out", config.PretrainConfig.out))
        if "epochs" in given or "steps" in given:  # the new length replaces the saved one
            base = {k: v for k, v in base.items() if k not in ("steps", "epochs")}
    if getattr(args, "config", None):
        base = {**base, **config.read_config_file(args.config)}
    return {**base, **given, "resume": bool(args.resume)}


def run(args: argparse.Namespace) -> int:
    from pmilab.pretrain.config import PretrainConfig
    from pmilab.pretrain.train import TrainingFailed, train
    from pmilab.runtime.distributed import shutdown

    cfg = PretrainConfig.from_flags(given_settings(args))
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

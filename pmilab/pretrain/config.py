"""`pmilab pretrain`'s configuration: the fields, the named presets, validation and resume rules.

`PretrainConfig` holds every flag (`pmilab/cli/pretrain.py` builds the parser from its fields).
Named presets (`--model ViT-B-16`) fill the tower fields; flags given explicitly win.
`resume_changes` is the rule `--resume` applies: a change of data, seed, batch, head, towers or
schedule is refused (one line naming the fields); only an extension of `--steps` is allowed.
"""

from __future__ import annotations

import math
import numbers
import typing
import warnings
from dataclasses import asdict, dataclass, fields
from functools import cache
from typing import TYPE_CHECKING

from pmilab.errors import InputError

if TYPE_CHECKING:  # imported where used: `pmilab pretrain --help` reads this file without torch
    from pmilab.pretrain.model import ModelConfig

# open_clip's ViT-B-16: a ViT-B/16 image tower at 224 px, a 12-layer text transformer of width
# 512 (8 heads, 77 tokens), d = 512, and a BPE vocabulary of CLIP's size.
PRESETS: dict[str, dict] = {
    "ViT-B-16": {
        "tower": "clip",
        "text_tower": "clip",
        "width": 768,
        "image_layers": 12,
        "image_heads": 12,
        "patch_size": 16,
        "image_size": 224,
        "text_width": 512,
        "text_layers": 12,
        "text_heads": 8,
        "context": 77,
        "dim": 512,
        "tokenizer": "bpe",
        "vocab_size": 49408,
    },
}


@dataclass
class PretrainConfig:
    # data
    data: str = "shapes"
    csv_separator: str = ","
    csv_img_key: str = "filepath"
    csv_caption_key: str = "caption"
    dataset_resampled: bool = False
    shapes_train: int = 5000
    shapes_test: int = 1000
    workers: int = 0
    # model
    model: str = ""  # a preset name (PRESETS) or "" for the fields below
    similarity: str = "linear"
    tower: str = "cnn"
    text_tower: str = "transformer"
    width: int = 64
    text_width: int = 0  # 0: the image tower's width
    image_layers: int = 2
    image_heads: int = 4
    text_layers: int = 2
    text_heads: int = 4
    patch_size: int = 4
    dim: int = 32
    points: int = 4
    context: int = 16
    image_size: int = 32
    sigma: float = 0.5
    pretrained_image: str = ""
    pretrained_text: str = ""
    grad_checkpointing: bool = False
    tokenizer: str = "word"  # word | bpe | PATH/tokenizer.json
    vocab_size: int = 4096
    # schedule
    steps: int = 300
    batch_size: int = 64  # per rank, per micro-batch
    accum_freq: int = 1  # micro-batches per optimizer step
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 30
    seed: int = 0
    # run
    out: str = "runs/pretrain"
    ckpt_every: int = 100
    keep_checkpoints: int = 1
    log_every: int = 10
    report_to: str = ""  # "" (log.csv only) | tensorboard
    device: str = "auto"
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 | fp64
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    resume: bool = False
    overwrite: bool = False  # write into an --out holding another run (not with resume)
    progress: bool = True

    def __post_init__(self) -> None:
        minimum = {
            "steps": 1,
            "batch_size": 2,
            "accum_freq": 1,
            "ckpt_every": 1,
            "keep_checkpoints": 1,
            "log_every": 1,
            "warmup": 0,
            "workers": 0,
            "threads": 0,
            "dim": 1,
            "points": 1,
            "width": 8,
            "text_width": 0,
            "image_layers": 1,
            "image_heads": 1,
            "text_layers": 1,
            "text_heads": 1,
            "patch_size": 1,
            "context": 2,
            "image_size": 8,
            "vocab_size": 8,
            "shapes_train": 2,
            "shapes_test": 2,
        }
        for name, low in minimum.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise InputError(f"{flag(name)} must be an integer, got {value!r}")
            if value < low:
                raise InputError(f"{flag(name)} must be >= {low}, got {value}")
        check_finite_floats(self)
        if self.lr <= 0:
            raise InputError(f"--lr must be a positive finite number, got {self.lr}")
        if self.sigma <= 0:
            raise InputError(f"--sigma must be a positive finite number, got {self.sigma}")
        if self.weight_decay < 0:
            raise InputError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.resume and self.overwrite:
            raise InputError(
                "--resume continues the run in --out and --overwrite replaces it; pass one of them"
            )
        if self.model and self.model not in PRESETS:
            raise InputError(f"--model must be one of {', '.join(PRESETS)}, got {self.model!r}")
        if self.report_to not in ("", "tensorboard"):
            raise InputError(
                f"--report-to must be 'tensorboard' (or empty), got {self.report_to!r}"
            )
        if self.csv_separator == "\\t":  # a shell passes '\t' as two characters
            self.csv_separator = "\t"
        if len(self.csv_separator) != 1:
            raise InputError(f"--csv-separator must be one character, got {self.csv_separator!r}")

    @classmethod
    def from_flags(cls, given: dict) -> PretrainConfig:
        """Defaults, then the preset named by `model`, then the flags given explicitly."""
        preset = PRESETS.get(given.get("model") or "", {})
        return cls(**{**preset, **given})

    def model_config(self, vocab: int) -> ModelConfig:
        from pmilab.pretrain.model import ModelConfig

        return ModelConfig(
            similarity=self.similarity,
            tower=self.tower,
            text_tower=self.text_tower,
            vocab=vocab,
            context=self.context,
            width=self.width,
            text_width=self.text_width or self.width,
            image_layers=self.image_layers,
            image_heads=self.image_heads,
            text_layers=self.text_layers,
            text_heads=self.text_heads,
            patch_size=self.patch_size,
            dim=self.dim,
            points=self.points,
            image_size=self.image_size,
            sigma=self.sigma,
            pretrained_image=self.pretrained_image,
            pretrained_text=self.pretrained_text,
        )

    def effective_warmup(self) -> int:
        """`warmup`, clamped to a tenth of the run when it is not shorter than the run."""
        return self.warmup if self.warmup < self.steps else self.steps // 10

    def warn_warmup(self) -> None:
        if self.warmup >= self.steps:
            warnings.warn(
                f"--warmup {self.warmup} is not shorter than --steps {self.steps}: the learning "
                f"rate would never leave warmup; clamped to {self.effective_warmup()} steps "
                "(a tenth of the run). Pass a shorter --warmup to choose it yourself.",
                stacklevel=2,
            )


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_finite_floats(cfg: PretrainConfig) -> None:
    """Every float field is a finite number (NaN and inf pass every `<` test, so the bounds
    above would let them through to the optimizer); one sentence naming the flag otherwise."""
    for name, optional in float_fields(type(cfg)).items():
        value = getattr(cfg, name)
        if value is None and optional:
            continue
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (ok and math.isfinite(value)):
            raise InputError(f"{flag(name)} must be a finite number, got {value!r}")


@cache
def float_fields(cls: type) -> dict[str, bool]:
    """The fields declared `float` or `float | None` (name -> None allowed), read from the
    annotations so that a new float field is checked without a new line."""
    hints = typing.get_type_hints(cls)
    return {
        f.name: type(None) in typing.get_args(hints[f.name])
        for f in fields(cls)
        if hints[f.name] is float or float in typing.get_args(hints[f.name])
    }


# What --resume compares, by group (the fields not listed may change: out, workers, threads,
# logging, checkpoint cadence, device, precision, gradient checkpointing).
RESUME_FIELDS = {
    "data": ["data", "csv_separator", "csv_img_key", "csv_caption_key", "dataset_resampled"]
    + ["shapes_train", "shapes_test"],
    "seed": ["seed"],
    "batch": ["batch_size", "accum_freq"],
    "head": ["similarity", "dim", "points", "sigma"],
    "towers": ["model", "tower", "text_tower", "width", "text_width", "image_layers"]
    + ["image_heads", "text_layers", "text_heads", "patch_size", "context", "image_size"]
    + ["pretrained_image", "pretrained_text", "tokenizer", "vocab_size"],
    "schedule": ["lr", "weight_decay", "warmup"],
}


def resume_changes(old: dict, new: PretrainConfig, old_world: int, new_world: int) -> list[str]:
    """'--flag OLD (now NEW)' for every refused change; [] if the resume may go on."""
    cur = asdict(new)
    known = {f.name for f in fields(PretrainConfig)}
    changed = []
    for names in RESUME_FIELDS.values():
        for name in names:
            if name in known and name in old and old[name] != cur[name]:
                changed.append(f"{flag(name)} {old[name]!r} (now {cur[name]!r})")
    if old_world != new_world:
        changed.append(f"world size {old_world} (now {new_world}; the global batch would change)")
    if "steps" in old and new.steps < old["steps"]:
        changed.append(f"--steps {old['steps']} (now {new.steps}; only an extension is allowed)")
    return changed

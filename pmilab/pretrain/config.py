"""`pmilab pretrain`'s configuration: the fields, the named presets, validation and resume rules.

- `ModelFields` is the one owner of the architecture's fields: `PretrainConfig` (every flag) and
  `ModelConfig` (what a checkpoint rebuilds; model.py builds the model from it) both take them
  from it, so a tower or head field is declared once. `pmilab/cli/pretrain.py` builds the
  parser from PretrainConfig's fields.
- Named presets (`--model ViT-B-32 | ViT-B-16 | ViT-L-14`) fill the tower fields with open_clip's
  (and OpenAI's) shapes; flags given explicitly win. `--config FILE` (`read_config_file`) and
  `--resume latest` (`saved_config`) read a JSON object of the same fields: defaults, then the
  preset, then the file (or the run's own config.json), then the flags given.
- `resume_changes` is the rule `--resume` applies: a change of data, preprocessing, seed, batch,
  head, towers or schedule is refused (one line naming the fields); only a longer run (`--steps`,
  or `--epochs`) is allowed.

This file imports nothing heavy (no torch, nothing of pmilab.pretrain): `pmilab pretrain --help`
loads it on its own (cli/pretrain.py `config_module`).
"""

from __future__ import annotations

import json
import math
import numbers
import typing
import warnings
from dataclasses import asdict, dataclass, fields
from functools import cache
from pathlib import Path

from pmilab.errors import InputError

# open_clip's model configs (model_configs/ViT-*.json, the shapes of OpenAI's CLIP): image tower
# width, layers and patch at 224 px (heads = width / 64), a 12-layer causal text transformer over
# 77 tokens (heads = width / 64), the embedding dimension d, and CLIP's BPE vocabulary of 49408.
# hf_towers turns these into transformers' CLIPVisionConfig / CLIPTextConfig (MLP width 4x).
_CLIP_TEXT = {"text_tower": "clip", "context": 77, "tokenizer": "bpe", "vocab_size": 49408}
PRESETS: dict[str, dict] = {
    "ViT-B-32": {
        "tower": "clip",
        "width": 768,
        "image_layers": 12,
        "image_heads": 12,
        "patch_size": 32,
        "image_size": 224,
        **_CLIP_TEXT,
        "text_width": 512,
        "text_layers": 12,
        "text_heads": 8,
        "dim": 512,
    },
    "ViT-B-16": {
        "tower": "clip",
        "width": 768,
        "image_layers": 12,
        "image_heads": 12,
        "patch_size": 16,
        "image_size": 224,
        **_CLIP_TEXT,
        "text_width": 512,
        "text_layers": 12,
        "text_heads": 8,
        "dim": 512,
    },
    "ViT-L-14": {
        "tower": "clip",
        "width": 1024,
        "image_layers": 24,
        "image_heads": 16,
        "patch_size": 14,
        "image_size": 224,
        **_CLIP_TEXT,
        "text_width": 768,
        "text_layers": 12,
        "text_heads": 12,
        "dim": 768,
    },
}
# A preset's image-tower fields: a pretrained image tower's own config fixes them instead.
PRESET_IMAGE_FIELDS = ("tower", "width", "image_layers", "image_heads", "patch_size", "image_size")
DEFAULT_IMAGE_SIZE = 32  # image_size 0: this, or a pretrained image tower's own size

PREPROCESS = ("simple", "clip")
AUGMENTATIONS = ("none", "rrc")
SCHEDULERS = ("cosine", "const", "const-cooldown")
# open_clip's --precision names with the same meaning here: autocast of the towers with fp32
# weights; `amp` is fp16 autocast with a gradient scaler (runtime.precision), `amp_bf16` and
# `amp_bfloat16` bf16 autocast. The similarity head and the loss never run in fp16 or bf16.
PRECISION_ALIASES = {"amp_bf16": "bf16", "amp_bfloat16": "bf16"}
PRECISIONS = ("auto", "fp32", "bf16", "amp", "fp64", *PRECISION_ALIASES)
# Built-in data sets whose images keep today's preprocessing by default (nearest resize to
# [-1, 1]): the synthetic shapes (known PMI, T7), sklearn's 8x8 digits and the small grey
# digits of real_images.py (mnist5k, sklearn-digits: whole digits, no crop, no CLIP statistics).
SIMPLE_DATA = ("shapes", "digits", "mnist5k", "sklearn-digits")


@dataclass
class ModelFields:
    """The architecture: towers, output heads and similarity head (one owner of these fields)."""

    similarity: str = "linear"
    tower: str = "cnn"  # image tower: cnn | vit (small, towers.py) | hf-vit | clip (transformers)
    text_tower: str = "transformer"  # transformer (small, towers.py) | clip (transformers)
    width: int = 64  # image tower width
    text_width: int = 0  # 0: the image tower's width
    image_layers: int = 2
    image_heads: int = 4
    text_layers: int = 2
    text_heads: int = 4
    patch_size: int = 4
    dim: int = 32  # point / embedding dimension
    points: int = 4  # M, for wpse / kme
    context: int = 16
    image_size: int = 0  # 0: 32, or a pretrained image tower's own size
    sigma: float = 0.5  # kernel bandwidth of wpse / kme (kme learns it)
    pretrained_image: str = ""  # a local from_pretrained folder (read once, at the first build)
    pretrained_text: str = ""
    # an open_clip / OpenAI state dict file for both CLIP towers and a vector head's projections
    # and logit scale (weights_openclip.py; read once, at the first build)
    pretrained_weights: str = ""
    force_quick_gelu: bool = False  # the file's towers use QuickGELU (an OpenAI archive always)

    def resolve_image_size(self) -> None:
        """image_size 0 means 32 unless a pretrained image tower brings its own size."""
        if self.image_size == 0 and not (self.pretrained_image or self.pretrained_weights):
            self.image_size = DEFAULT_IMAGE_SIZE


IMAGE_TOWERS = ("cnn", "vit", "hf-vit", "clip")
TEXT_TOWERS = ("transformer", "clip")


@dataclass
class ModelConfig(ModelFields):
    """The architecture a checkpoint rebuilds (model.py builds it): ModelFields, the vocabulary,
    and the transformers configs of the towers as built. Its checks import the towers and the
    head registry when it is made, not when this file is read."""

    vocab: int = 64
    image_hf: dict | None = None  # the transformers config of the built tower (checkpoints)
    text_hf: dict | None = None

    def __post_init__(self) -> None:
        from pmilab import registry
        from pmilab.pretrain import hf_towers
        from pmilab.pretrain.towers import check_towers

        try:
            registry.check_head(self.similarity)
        except InputError as e:
            raise InputError(f"--similarity: {e}") from None
        if self.pretrained_image and self.tower not in hf_towers.IMAGE_KINDS:
            self.tower = hf_towers.pretrained_kind(self.pretrained_image, text=False)
        if self.pretrained_text:
            self.text_tower = "clip"
        if self.tower not in IMAGE_TOWERS:
            raise InputError(
                f"--tower must be one of {', '.join(IMAGE_TOWERS)}, got {self.tower!r}"
            )
        if self.text_tower not in TEXT_TOWERS:
            raise InputError(
                f"--text-tower must be one of {', '.join(TEXT_TOWERS)}, got {self.text_tower!r}"
            )
        self.text_width = self.text_width or self.width
        self.resolve_image_size()
        check_towers(self)


def model_config(cfg, vocab: int) -> ModelConfig:
    """The ModelConfig of `cfg` (a PretrainConfig) with a tokenizer of `vocab` ids."""
    return ModelConfig(**model_fields(cfg), vocab=vocab)


@dataclass
class PretrainConfig(ModelFields):
    # data
    data: str = "shapes"
    csv_separator: str = ","
    csv_img_key: str = "filepath"
    csv_caption_key: str = "caption"
    dataset_resampled: bool = False
    shapes_train: int = 5000
    shapes_test: int = 1000
    workers: int = 0
    train_num_samples: int = 0  # samples per epoch (0: the dataset's size; shards need it)
    # preprocessing
    preprocess: str = ""  # simple | clip; "": simple for shapes and digits, clip otherwise
    aug: str = "none"  # none | rrc (RandomResizedCrop, training only)
    # model (the architecture's fields are ModelFields')
    model: str = ""  # a preset name (PRESETS) or "" for the fields
    grad_checkpointing: bool = False
    tokenizer: str = "word"  # word | bpe | PATH/tokenizer.json
    vocab_size: int = 4096
    # schedule
    steps: int = 300
    epochs: int = 0  # 0: the run is --steps long; else epochs x (samples per epoch / batch)
    batch_size: int = 64  # per rank, per micro-batch
    accum_freq: int = 1  # micro-batches per optimizer step
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 30
    lr_scheduler: str = "cosine"  # cosine | const | const-cooldown (open_clip's)
    epochs_cooldown: int = 0  # const-cooldown: the last epochs decay to lr_cooldown_end
    lr_cooldown_power: float = 1.0
    lr_cooldown_end: float = 0.0
    grad_clip_norm: float = 0.0  # 0: no clipping
    seed: int = 0
    # evaluation during training
    val_data: str = ""
    val_frequency: int = 1  # epochs between evaluations on --val-data
    zeroshot_frequency: int = 0  # epochs between zero-shot evaluations (0: none)
    val_num_samples: int = 1000
    # run
    out: str = "runs/pretrain"
    ckpt_every: int = 100
    save_frequency: int = 0  # epochs between checkpoints (0: --ckpt-every steps)
    keep_checkpoints: int = 1
    log_every: int = 10
    report_to: str = ""  # "" (log.csv only) | tensorboard
    device: str = "auto"
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 | amp | fp64
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
            "image_size": 0,
            "vocab_size": 8,
            "shapes_train": 2,
            "shapes_test": 2,
            "train_num_samples": 0,
            "epochs": 0,
            "epochs_cooldown": 0,
            "val_frequency": 1,
            "zeroshot_frequency": 0,
            "val_num_samples": 2,
            "save_frequency": 0,
        }
        for name, low in minimum.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise InputError(f"{flag(name)} must be an integer, got {value!r}")
            if value < low:
                raise InputError(f"{flag(name)} must be >= {low}, got {value}")
        if 0 < self.image_size < 8:
            raise InputError(
                f"--image-size must be >= 8 (or 0: the default), got {self.image_size}"
            )
        self.resolve_image_size()
        check_finite_floats(self)
        if self.lr <= 0:
            raise InputError(f"--lr must be a positive finite number, got {self.lr}")
        if self.sigma <= 0:
            raise InputError(f"--sigma must be a positive finite number, got {self.sigma}")
        for name in ("weight_decay", "grad_clip_norm", "lr_cooldown_end"):
            if getattr(self, name) < 0:
                raise InputError(f"{flag(name)} must be >= 0, got {getattr(self, name)}")
        if self.lr_cooldown_power <= 0:
            raise InputError(f"--lr-cooldown-power must be > 0, got {self.lr_cooldown_power}")
        if self.resume and self.overwrite:
            raise InputError(
                "--resume continues the run in --out and --overwrite replaces it; pass one of them"
            )
        self.check_choices()
        if self.csv_separator == "\\t":  # a shell passes '\t' as two characters
            self.csv_separator = "\t"
        if len(self.csv_separator) != 1:
            raise InputError(f"--csv-separator must be one character, got {self.csv_separator!r}")
        if not self.preprocess:
            self.preprocess = "simple" if self.data in SIMPLE_DATA else "clip"
        if self.lr_scheduler == "const-cooldown" and self.epochs_cooldown < 1:
            raise InputError(
                "--lr-scheduler const-cooldown needs --epochs-cooldown N (the last N epochs decay "
                "to --lr-cooldown-end), as in open_clip"
            )

    def check_choices(self) -> None:
        self.precision = PRECISION_ALIASES.get(self.precision, self.precision)
        choices = {
            "model": ("", *PRESETS),
            "report_to": ("", "tensorboard"),
            "preprocess": ("", *PREPROCESS),
            "aug": AUGMENTATIONS,
            "lr_scheduler": SCHEDULERS,
        }  # --precision: runtime.precision checks it (the CLI offers PRECISIONS)
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                shown = ", ".join(a for a in allowed if a)
                raise InputError(
                    f"{flag(name)} must be one of {shown}, got {getattr(self, name)!r}"
                )

    @classmethod
    def from_flags(cls, given: dict) -> PretrainConfig:
        """Defaults, then the preset named by `model`, then the fields given explicitly.

        A pretrained image tower's own config fixes the image tower: the preset's image fields
        are then not applied (the tower's size is used, and an --image-size given explicitly
        must match it: model.py)."""
        preset = dict(PRESETS.get(given.get("model") or "", {}))
        if given.get("pretrained_image"):
            preset = {k: v for k, v in preset.items() if k not in PRESET_IMAGE_FIELDS}
        weights = given.get("pretrained_weights")
        # the file's shapes fix the towers and --dim (a resume needs no file: its checkpoint
        # holds the towers, and --resume latest the fields)
        if weights and (Path(weights).exists() or not given.get("resume")):
            from pmilab.pretrain.weights_openclip import file_fields

            preset = {**preset, **file_fields(weights)}
        return cls(**{**preset, **given})

    def model_config(self, vocab: int) -> ModelConfig:
        return model_config(self, vocab)

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


def model_fields(cfg) -> dict:
    """The ModelFields of `cfg` (a PretrainConfig or a ModelConfig), by name."""
    return {f.name: getattr(cfg, f.name) for f in fields(ModelFields)}


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


# ---------------------------------------------------------------------------------------------
# --config FILE and --resume latest

CONFIG_JSON = "config.json"
# Fields a saved run's config.json does not carry into `--resume latest`: how that run was
# started (its resume/overwrite) is not how the continuation starts.
NOT_CARRIED = ("resume", "overwrite")


def check_field_values(values: dict, where: str) -> dict:
    """`values` (field name -> value, from a JSON file) with names and types checked: one line
    naming the first unknown field or the first value of the wrong type. Dashes in a name are
    read as underscores (a flag's spelling: "grad-clip-norm")."""
    if not isinstance(values, dict):
        raise InputError(f"{where} must hold a JSON object of pretrain settings")
    hints = typing.get_type_hints(PretrainConfig)
    known = {f.name for f in fields(PretrainConfig)}
    out = {}
    for key, value in values.items():
        name = str(key).lstrip("-").replace("-", "_")
        if name not in known:
            raise InputError(f"{where}: unknown setting {key!r} (a PretrainConfig field or flag)")
        want = hints[name]
        if want is float:
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        elif want is int:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        else:
            ok = isinstance(value, want)
        if not ok:
            raise InputError(
                f"{where}: {key!r} must be {want.__name__}, got {value!r} ({type(value).__name__})"
            )
        out[name] = value
    return out


def read_json_object(path: Path, what: str) -> dict:
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{what} {path} is not JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{what} {path} must hold a JSON object of pretrain settings")
    return data


def read_config_file(path: str | Path) -> dict:
    """The settings of a `--config FILE`: a JSON object of PretrainConfig fields (or flag names),
    or a run's own config.json (its "pretrain" object is read)."""
    data = read_json_object(Path(path), "--config")
    if isinstance(data.get("pretrain"), dict):
        data = data["pretrain"]
    return check_field_values(data, f"--config {path}")


def saved_config(out: str | Path) -> dict:
    """The settings of the run in `out` (its config.json), for `--resume latest`."""
    path = Path(out) / CONFIG_JSON
    if not path.is_file():
        raise InputError(
            f"--resume latest: no {CONFIG_JSON} in {out}; it continues the run started there "
            "(pass that run's --out)"
        )
    data = read_json_object(path, "--resume latest:")
    if not isinstance(data.get("pretrain"), dict):
        raise InputError(f"--resume latest: {path} is not the config.json of a pretrain run")
    values = {k: v for k, v in data["pretrain"].items() if k not in NOT_CARRIED}
    known = {f.name for f in fields(PretrainConfig)}
    # a field this pmilab no longer has is dropped; every other one is checked
    return check_field_values({k: v for k, v in values.items() if k in known}, str(path))


# ---------------------------------------------------------------------------------------------
# --resume

# What --resume compares, by group (the fields not listed may change: out, workers, threads,
# logging, checkpoint cadence, evaluation during training, device, precision, gradient
# checkpointing, and the run's length: --steps or --epochs, which may only grow).
RESUME_FIELDS = {
    "data": ["data", "csv_separator", "csv_img_key", "csv_caption_key", "dataset_resampled"]
    + ["shapes_train", "shapes_test", "preprocess", "aug"],
    "seed": ["seed"],
    "batch": ["batch_size", "accum_freq"],
    "head": ["similarity", "dim", "points", "sigma"],
    "towers": ["model", "tower", "text_tower", "width", "text_width", "image_layers"]
    + ["image_heads", "text_layers", "text_heads", "patch_size", "context", "image_size"]
    + ["pretrained_image", "pretrained_text", "tokenizer", "vocab_size"]
    + ["pretrained_weights", "force_quick_gelu"],
    "schedule": ["lr", "weight_decay", "warmup", "lr_scheduler", "epochs_cooldown"]
    + ["lr_cooldown_power", "lr_cooldown_end", "grad_clip_norm", "train_num_samples"],
}
# Defaults of fields an older checkpoint lacks (their behaviour then was the default's).
OLD_DEFAULTS = {"preprocess": "simple"}


def resume_changes(
    old: dict, new: PretrainConfig, old_world: int, new_world: int, steps: bool = True
) -> list[str]:
    """'--flag OLD (now NEW)' for every refused change; [] if the resume may go on.
    `steps=False` leaves the run's length out (train.py checks it once --epochs is resolved)."""
    cur = asdict(new)
    known = {f.name for f in fields(PretrainConfig)}
    default = asdict(PretrainConfig())
    changed = []
    for names in RESUME_FIELDS.values():
        for name in names:
            if name not in known or (name == "image_size" and new.pretrained_image):
                continue  # a pretrained image tower's own config fixes its size
            was = old.get(name, OLD_DEFAULTS.get(name, default[name]))
            if was != cur[name]:
                changed.append(f"{flag(name)} {was!r} (now {cur[name]!r})")
    if old_world != new_world:
        changed.append(f"world size {old_world} (now {new_world}; the global batch would change)")
    if steps and "steps" in old and new.steps < old["steps"]:
        changed.append(f"--steps {old['steps']} (now {new.steps}; only an extension is allowed)")
    return changed

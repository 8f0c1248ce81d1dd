"""`FitConfig`: every knob of `pmilab.training.fit`, validated at the boundary, and the one
settings schema of a fit.

Each field carries its setting in its metadata (`setting`): the help text, the `pmilab fit`
section and flag, the choices, and how a run table writes None. From these alone:
- `pmilab fit`'s options are built (`pmilab.cli.fit`: a flag per field, grouped, with its
  default), and `FitConfig.from_text` reads them;
- the claims write their runs' parameters (`FitConfig.table_params`: plain JSON values, so run
  ids hash them) and the tasks read them back into `fit` keyword arguments
  (`FitConfig.from_table`).
A new field is a new fit flag and a new run parameter with no other edit; a field without
metadata is offered too (in an "other" section, its name as its flag).

Defaults run on a typical 10–50 state table in well under a minute on a laptop CPU.
"""

from __future__ import annotations

import math
import numbers
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from functools import cache
from typing import Any, ClassVar

from pmilab import registry
from pmilab.errors import InputError

SIMILARITIES = registry.HEAD_NAMES  # the built-in heads; any registry spec is accepted
OBJECTIVES = ("symmetric", "one_sided")
# Adam step sizes that work without tuning: free tables move fast, MLPs need smaller steps.
DEFAULT_LR_TABLE = 1e-2
DEFAULT_LR_MLP = 1e-3

# The sections of `pmilab fit --help`, in order (a setting's `group`).
GROUPS = {
    "head": "similarity head",
    "encoders": "encoders (continuous joints: MLPs; discrete joints get free tables)",
    "training": "training",
    "evaluation": "evaluation",
    "runtime": "runtime",
    "other": "other settings",
}
KEY = "pmilab"  # the field-metadata key of a setting


def setting(
    help: str,
    group: str,
    *,
    flag: str | None = None,
    choices: tuple[str, ...] = (),
    metavar: str = "",
    table_none: Any = "none",
    cli: bool = True,
    table: bool = True,
) -> dict:
    """A field's metadata (`field(metadata=setting(...))`): its help text and `pmilab fit`
    section (GROUPS), its flag (default: --field-name) and metavar, the values it accepts
    (shown in the help and checked by `validated`), what stands for None in a run table
    (default "none"; a positive field may say 0: "0 or less means None"), and whether it is a
    fit flag and a run parameter."""
    return {
        KEY: {
            "help": help,
            "group": group,
            "flag": flag,
            "choices": tuple(choices),
            "metavar": metavar,
            "table_none": table_none,
            "cli": cli,
            "table": table,
        }
    }


@dataclass(frozen=True)
class Setting:
    """One field of the schema as the fit flags and the run tables see it.

    kind: "int", "float", "str", "bool" or "widths" (a tuple of ints), read from the field's
    annotation; optional: the annotation admits None."""

    name: str
    kind: str
    optional: bool
    default: Any
    help: str
    group: str
    flag: str
    choices: tuple[str, ...]
    metavar: str
    table_none: Any
    cli: bool
    table: bool

    def shown_default(self) -> str:
        """The default as `--help` shows it (and as the flag would take it)."""
        v = self.default
        if v is None:
            return "none"
        if self.kind == "bool":
            return "on" if v else "off"
        if self.kind == "widths":
            return "x".join(str(h) for h in v) or "none"
        if self.kind == "float":
            return f"{v:g}"
        return str(v)

    def from_text(self, text: str) -> Any:
        """The value of `text` as given on the command line; one InputError line naming the
        flag otherwise (ranges are `FitConfig.validated`'s)."""
        s = str(text).strip()
        if self.optional and s.lower() == "none":
            return None
        if self.kind == "int":
            try:
                return int(s)
            except ValueError:
                raise InputError(f"{self.flag} must be an integer, got {text!r}") from None
        if self.kind == "float":
            try:
                v = float(s)
            except ValueError:
                raise InputError(f"{self.flag} must be a number, got {text!r}") from None
            if not math.isfinite(v):
                raise InputError(f"{self.flag} must be a finite number, got {text!r}")
            return v
        if self.kind == "widths":
            return _widths(s, self.flag)
        return text

    def to_table(self, value: Any) -> Any:
        """`value` as a run table holds it: a plain JSON value (run ids hash it)."""
        if value is None:
            return self.table_none
        if self.kind == "bool":
            return int(bool(value))
        if self.kind == "widths":
            widths = _widths(value, self.name) if isinstance(value, str) else value
            return "x".join(str(int(h)) for h in widths)
        return value

    def from_table(self, value: Any) -> Any:
        """The field's value from a run table's `value` (`to_table`'s inverse); MISSING for ""
        (the field's default), except for widths, where "" is no hidden layer."""
        if self.kind == "widths":
            return _widths(value, self.name) if isinstance(value, str) else tuple(value)
        if value is None or (self.optional and value == self.table_none):
            return None
        if isinstance(value, str) and value == "":
            return MISSING
        if self.optional and self.table_none == 0 and float(value) <= 0:
            return None  # "0 (or less) in the table means no cap"
        if self.kind == "bool":
            return bool(int(value))
        return value


def _widths(value: Any, name: str) -> tuple[int, ...]:
    """'128x128' (or '128,128') -> (128, 128); '' or 'none' -> () (no hidden layer)."""
    if not isinstance(value, str):
        return tuple(value)
    s = value.strip().lower()
    if s in ("", "none"):
        return ()
    try:
        return tuple(int(h) for h in s.replace(",", "x").split("x"))
    except ValueError:
        raise InputError(
            f"{name} must be layer widths such as 128x128 (or none), got {value!r}"
        ) from None


def _kind(hint: Any) -> tuple[str, bool]:
    """(kind, optional) of a field annotation; kind "" for one that is not a setting (dict)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = typing.get_args(hint) if union else (hint,)
    optional = type(None) in args
    rest = [a for a in args if a is not type(None)]
    first = typing.get_origin(rest[0]) or rest[0]
    kinds = {bool: "bool", int: "int", float: "float", str: "str", tuple: "widths"}
    return kinds.get(first, ""), optional


@cache
def settings_of(schema: type) -> tuple[Setting, ...]:
    """Every setting of `schema` (FitConfig or a subclass), in field order."""
    hints = typing.get_type_hints(schema)
    defaults = schema()
    out = []
    for f in fields(schema):
        kind, optional = _kind(hints[f.name])
        meta = f.metadata.get(KEY, {})
        usable = kind != ""
        out.append(
            Setting(
                name=f.name,
                kind=kind,
                optional=optional,
                default=getattr(defaults, f.name),
                help=meta.get("help", ""),
                group=meta.get("group", "other"),
                flag=meta.get("flag") or "--" + f.name.replace("_", "-"),
                choices=meta.get("choices", ()),
                metavar=meta.get("metavar", ""),
                table_none=meta.get("table_none", "none"),
                cli=usable and meta.get("cli", True),
                table=usable and meta.get("table", True),
            )
        )
    return tuple(out)


@dataclass
class FitConfig:
    """What `fit` trains and how (docs/theory.md names the objectives: T1 symmetric, T1a
    one-sided). Each field's help is in its metadata (`setting`): `pmilab fit --help` shows it.

    similarity:  a head spec of `pmilab.registry` (a built-in name, "package.module:Name", an
                 entry point name) or, in the Python API, a head class, factory or instance;
                 config.json records the spec string (`registry.head_spec`).
    threads:     1 is the fastest for the lab's small models (measured 4x faster than 2 threads
                 on a loaded 2-core machine) and keeps numbers identical across machines.
    check_every: the safety checks and the rollback copy cost 20-25% of a small step, so they
                 run every this many steps. A seed that goes non-finite is stopped at the first
                 bad step and keeps the parameters of the last check whose loss was finite (1:
                 of the last finite loss).
    converge_window: off by default; claims whose path is the claim (a fixed budget) leave it off.
    floor_gap:   off by default. On an exact population loss the floor is known, −I(X;Y) (the
                 best any logit table does, T1a), so "converged" can be judged against it
                 instead of against a window: a seed within floor_gap nats of it is done. A
                 plateau (a saddle the loss leaves after thousands of flat steps,
                 results/t2/plateau.md) lies far above the floor, so it never stops a seed
                 there; a head that cannot reach PMI never comes within the gap and runs its
                 whole budget. The gap is in nats, and the PMI error it allows depends on how
                 flat the loss is around the head's optimum, cell by cell: 1e-6 left ~2e-3
                 relative error for KME M = 8 on the K = 4 latent joint but ~0.02 for KME M = 2
                 on the K = 2 one (results/refactor/floor_gap); check it on each cell.
    """

    GROUPS: ClassVar[dict[str, str]] = GROUPS  # the sections of its fit flags

    similarity: str | object = field(
        default="linear",
        metadata=setting(
            f"the head: {registry.HEAD_HINT} (docs/extending.md)", "head", metavar="SPEC"
        ),
    )
    dim: int = field(default=8, metadata=setting("embedding / point dimension d", "head"))
    points: int = field(default=4, metadata=setting("points per input M (wpse, kme)", "head"))
    hidden: tuple[int, ...] = field(
        default=(128, 128),
        metadata=setting("MLP hidden widths, e.g. 128x128 (none: a linear map)", "encoders"),
    )
    features: str = field(
        default="raw",
        metadata=setting(
            "MLP inputs: raw, or quadratic (x and its squares and products: lets a linear head "
            "reach a Gaussian's PMI; pmilab.encoders.MLPEncoder)",
            "encoders",
            choices=("raw", "quadratic"),
        ),
    )
    batch_size: int = field(default=256, metadata=setting("pairs per step", "training"))
    steps: int = field(default=2000, metadata=setting("optimizer steps", "training"))
    lr: float | None = field(
        default=None,
        metadata=setting(
            "AdamW step size (none: 1e-2 for tables, 1e-3 for MLPs); linear warmup, then "
            "cosine decay",
            "training",
        ),
    )
    weight_decay: float = field(default=0.0, metadata=setting("AdamW weight decay", "training"))
    optimizer: str = field(
        default="adamw",
        metadata=setting(
            "adamw, or lbfgs: per-seed L-BFGS for an exact population loss (population, no "
            "weight decay or warmup; a step is one iteration; lr scales the first trial step, "
            "default 1; a seed whose line search finds no decrease has converged: in float32 "
            "that is the loss's rounding, ~1e-7 nats; --dtype float64 goes further)",
            "training",
            choices=("adamw", "lbfgs"),
        ),
    )
    warmup: int = field(default=0, metadata=setting("linear warmup steps", "training"))
    seed: int = field(
        default=0, metadata=setting("seed of initialisation and sampling", "training")
    )
    device: str = field(
        default="auto",
        metadata=setting(
            "auto | cpu | cuda[:N] (auto: CUDA if present)", "runtime", metavar="DEVICE"
        ),
    )
    objective: str = field(
        default="symmetric",
        metadata=setting("InfoNCE: symmetric (CLIP) or one_sided", "training", choices=OBJECTIVES),
    )
    population: bool = field(
        default=False,
        metadata=setting(
            "discrete joints: train on the exact population loss (full batch) instead of samples",
            "training",
        ),
    )
    normalize: bool = field(
        default=True,
        metadata=setting(
            "linear: L2-normalise the embeddings (cosine similarity)",
            "head",
            flag="--normalize-embeddings",  # --normalize divides a table file by its sum
        ),
    )
    bias: bool = field(default=False, metadata=setting("linear: a learnable logit bias", "head"))
    temperature: float = field(
        default=0.07, metadata=setting("initial 1/logit-scale of linear and wpse", "head")
    )
    logit_cap: float | None = field(
        default=100.0,
        metadata=setting(
            "max logit scale of linear and wpse after each step, or none (T5)",
            "head",
            table_none=0,  # a run table writes "no cap" as 0
        ),
    )
    learn_scale: bool = field(
        default=True,
        metadata=setting("learn the logit scale (off: fixed at 1/temperature)", "head"),
    )
    sigma: float = field(
        default=0.5,
        metadata=setting("initial kernel bandwidth (learnable for kme, fixed for wpse)", "head"),
    )
    alpha_linear: float = field(
        default=0.0, metadata=setting("wpse: weight of the linear kernel", "head")
    )
    alpha_kernel: float = field(
        default=1.0, metadata=setting("wpse: weight of the gaussian or imq kernel", "head")
    )
    kernel: str = field(
        default="gaussian", metadata=setting("wpse: gaussian | imq", "head", metavar="KERNEL")
    )
    rff_features: int | None = field(
        default=None,
        metadata=setting("wpse: random Fourier features D, or none (the exact kernel)", "head"),
    )
    eval_samples: int = field(
        default=1024,
        metadata=setting(
            "held-out draws n for the Monte Carlo metrics of continuous joints (an n x n grid)",
            "evaluation",
        ),
    )
    eval_batches: int = field(
        default=8, metadata=setting("held-out batches of --batch-size for mi_infonce", "evaluation")
    )
    dtype: str = field(
        default="float32",
        metadata=setting("parameter precision", "runtime", choices=("float32", "float64")),
    )
    amp: str = field(
        default="auto",
        metadata=setting(
            "auto (bf16 autocast for the encoders on CUDA only), bf16 (also on CPU) or off; the "
            "head, its logsumexp and the loss stay in --dtype",
            "runtime",
            choices=("auto", "bf16", "off"),
        ),
    )
    threads: int | None = field(
        default=1,
        metadata=setting(
            "CPU threads torch uses during the fit, or none (torch's default)", "runtime"
        ),
    )
    check_every: int = field(
        default=50,
        metadata=setting(
            "run the safety checks (finite losses, gradients, parameters) and keep a rollback "
            "copy every N steps (1: every step)",
            "training",
        ),
    )
    converge_window: int | None = field(
        default=None,
        metadata=setting(
            "stop a seed once its loss moved by less than --converge-tol over this many steps "
            "(judged at the checks; recorded as converged_at_step), or none: every step",
            "training",
        ),
    )
    converge_tol: float = field(
        default=1e-7,
        metadata=setting("nats: see --converge-window", "training"),
    )
    floor_gap: float | None = field(
        default=None,
        metadata=setting(
            "exact population loss only: stop a seed once its loss is within this many nats of "
            "the exact floor -I(X;Y) (judged at the checks, on the training loss; recorded as "
            "converged_at_step), or none: every step",
            "training",
        ),
    )
    extra: dict = field(
        default_factory=dict,
        metadata=setting(
            "free-form labels carried into config.json", "other", cli=False, table=False
        ),
    )

    # ---- the schema: fit flags and run-table parameters -----------------------------------

    @classmethod
    def settings(cls) -> tuple[Setting, ...]:
        """Every setting of this schema, in field order (`settings_of`)."""
        return settings_of(cls)

    @classmethod
    def setting_named(cls, name: str) -> Setting:
        """The setting of the field `name`; one InputError line for a name that is not one."""
        for s in cls.settings():
            if s.name == name:
                return s
        raise InputError(f"unknown fit option {name!r}; see FitConfig's fields")

    @classmethod
    def table_params(cls, **values) -> dict:
        """The run-table form of these settings, in the order given: what a claim records as
        a run's parameters (`framework.sweep.RunSpec`: its id hashes them). Booleans are 0/1,
        widths '64x64', None the field's `table_none`; other values as given."""
        out = {}
        for name, v in values.items():
            s = cls.setting_named(name)
            if not s.table:
                raise InputError(f"fit option {name!r} is not a run parameter")
            out[name] = s.to_table(v)
        return out

    @classmethod
    def from_table(cls, params: Mapping[str, Any]) -> dict:
        """The `fit` keyword arguments a run's parameters hold: every key that names a setting,
        read back (`table_params`' inverse; "" leaves the field at its default). Other keys
        (the joint, a task's own parameters) are not the schema's."""
        out = {}
        for s in cls.settings():
            if s.table and s.name in params:
                v = s.from_table(params[s.name])
                if v is not MISSING:
                    out[s.name] = v
        return out

    @classmethod
    def from_text(cls, given: Mapping[str, Any]) -> FitConfig:
        """The config of these command-line values (strings, or booleans of on/off flags),
        the other fields at their defaults; not yet validated."""
        values = {}
        for name, text in given.items():
            s = cls.setting_named(name)
            values[name] = text if s.kind == "bool" else s.from_text(text)
        return cls(**values)

    # ---------------------------------------------------------------------------------------

    @classmethod
    def smoke(cls, **overrides) -> FitConfig:
        """A seconds-long preset for tests and `--quick` runs."""
        base = dict(steps=60, batch_size=64, hidden=(32,), eval_samples=128, eval_batches=2)
        return cls(**{**base, **overrides}).validated()

    def replace(self, **changes) -> FitConfig:
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise InputError(f"unknown fit option(s) {sorted(unknown)}; see FitConfig's fields")
        return replace(self, **changes)

    def as_dict(self) -> dict:
        d = asdict(replace(self, similarity=registry.head_spec(self.similarity)))
        d["hidden"] = list(self.hidden)
        return d

    def validated(self) -> FitConfig:
        """Self, after checking every field; raises InputError with one sentence otherwise."""
        registry.check_head(self.similarity)
        for s in self.settings():
            v = getattr(self, s.name)
            if s.choices and v not in s.choices:
                raise InputError(f"{s.name} must be {_one_of(s.choices)}, got {v!r}")
        for name in ("dim", "points", "batch_size", "steps", "eval_samples", "eval_batches"):
            _positive_int(getattr(self, name), name)
        if self.batch_size < 2:
            raise InputError("batch_size must be >= 2 (InfoNCE needs negatives)")
        _finite_floats(self)
        for name in ("temperature", "sigma"):
            _positive_float(getattr(self, name), name)
        if self.lr is not None:
            _positive_float(self.lr, "lr")
        if self.logit_cap is not None:
            _positive_float(self.logit_cap, "logit_cap")
        if self.rff_features is not None:
            _positive_int(self.rff_features, "rff_features")
        if self.weight_decay < 0:
            raise InputError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if (
            isinstance(self.warmup, bool)
            or not isinstance(self.warmup, numbers.Integral)
            or self.warmup < 0
        ):
            raise InputError(f"warmup must be an integer >= 0 (steps), got {self.warmup!r}")
        if self.threads is not None:
            _positive_int(self.threads, "threads")
        _positive_int(self.check_every, "check_every")
        if self.optimizer == "lbfgs" and not (self.population and self.weight_decay == 0):
            raise InputError(
                "optimizer='lbfgs' minimises an exact population loss: it needs population=True "
                "and weight_decay=0 (a minibatch loss changes every step)"
            )
        if self.optimizer == "lbfgs" and self.warmup:
            raise InputError("optimizer='lbfgs' has no learning-rate schedule: set warmup=0")
        if self.converge_window is not None:
            _positive_int(self.converge_window, "converge_window")
            _positive_float(self.converge_tol, "converge_tol")
        if self.floor_gap is not None:
            _positive_float(self.floor_gap, "floor_gap")
            if not self.population:
                raise InputError(
                    "floor_gap judges the exact population loss against its floor -I(X;Y): it "
                    "needs population=True (a minibatch loss has no known floor)"
                )
        for h in self.hidden:
            _positive_int(h, "hidden width")
        self.hidden = tuple(int(h) for h in self.hidden)
        return self


def _one_of(choices: tuple[str, ...]) -> str:
    """('a', 'b', 'c') -> "'a', 'b' or 'c'"."""
    quoted = [repr(c) for c in choices]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


@cache
def float_fields() -> dict[str, bool]:
    """FitConfig's fields declared `float` or `float | None` (name -> None allowed), read from
    the annotations so that a new float field is checked for NaN and inf without a new line."""
    hints = typing.get_type_hints(FitConfig)
    return {
        f.name: type(None) in typing.get_args(hints[f.name])
        for f in fields(FitConfig)
        if hints[f.name] is float or float in typing.get_args(hints[f.name])
    }


def _finite_floats(cfg: FitConfig) -> None:
    """NaN and inf pass every `<` test of the bounds, so they are refused here, first: a NaN
    weight decay would otherwise stop the run later and blame the learning rate."""
    for name, optional in float_fields().items():
        v = getattr(cfg, name)
        if v is None and optional:
            continue
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise InputError(f"{name} must be a finite number, got {v!r}")


def _positive_int(v, name: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise InputError(f"{name} must be a positive integer, got {v!r}")


def _positive_float(v, name: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
        raise InputError(f"{name} must be a positive finite number, got {v!r}")

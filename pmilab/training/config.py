"""`FitConfig`: every knob of `pmilab.training.fit`, validated at the boundary.

Defaults run on a typical 10–50 state table in well under a minute on a laptop CPU.
"""

from __future__ import annotations

import math
import numbers
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cache

from pmilab import registry
from pmilab.errors import InputError

SIMILARITIES = registry.HEAD_NAMES  # the built-in heads; any registry spec is accepted
OBJECTIVES = ("symmetric", "one_sided")
# Adam step sizes that work without tuning: free tables move fast, MLPs need smaller steps.
DEFAULT_LR_TABLE = 1e-2
DEFAULT_LR_MLP = 1e-3


@dataclass
class FitConfig:
    """What `fit` trains and how (docs/theory.md names the objectives: T1 symmetric, T1a one-sided).

    similarity:    "tabular" (discrete only), "linear" (CLIP), "wpse" or "kme"; or any head spec
                   of `pmilab.registry` ("package.module:Name", an entry point name) or, in the
                   Python API, a head class, factory or instance. config.json records the
                   spec string (`registry.head_spec`).
    dim, points:   embedding / point dimension d and points per input M (WPSE, KME).
    hidden, features: MLP widths and "raw" | "quadratic" inputs (continuous inputs only; see
                   `pmilab.encoders.MLPEncoder` for why "quadratic" helps Linear on Gaussians).
    batch_size, steps, lr, weight_decay, warmup: AdamW with linear warmup then cosine decay;
                   lr=None picks 1e-2 for discrete (table) encoders and 1e-3 for MLPs.
    population:    discrete joints only: full-batch training on the exact population loss L∞.
    objective:     "symmetric" (CLIP) or "one_sided" InfoNCE.
    normalize, bias: the Linear head's options. temperature: initial 1/t for Linear and WPSE.
    logit_cap:     clamp of t after each step for Linear/WPSE (None: no cap; T5).
    learn_scale:   False fixes t at 1/temperature.
    sigma:         initial kernel bandwidth (learnable for KME, fixed for WPSE).
    alpha_linear, alpha_kernel, kernel, rff_features: WPSE options (rff_features None = exact).
    eval_samples:  held-out draws n for the Monte Carlo metrics of continuous joints (n×n grid).
    eval_batches:  held-out batches of `batch_size` for `mi_infonce`.
    dtype:         "float32" or "float64" parameters.
    amp:           "auto" (bf16 autocast for the encoders on CUDA only), "bf16" (also on CPU) or
                   "off". The head, its logsumexp and the loss always stay in `dtype`.
    threads:       CPU threads torch uses during `fit` (restored afterwards). 1 is the fastest
                   for the lab's small models (measured 4x faster than 2 threads on a loaded
                   2-core machine) and keeps numbers identical across machines.
    check_every:   the safety checks (finite losses, gradients and parameters, per seed) and the
                   rollback copy run every this many steps, not every step (they cost 20-25% of
                   a small step). A seed that goes non-finite is stopped at the first bad step and
                   keeps the parameters of the last check whose loss was finite. 1 checks every
                   step (the kept parameters are then those of the last finite loss).
    converge_window, converge_tol: stop a seed once its loss moved by less than `converge_tol`
                   (max - min, nats) over the last `converge_window` steps, judged at the checks;
                   recorded as `converged_at_step`. None (the default): run every step. Claims
                   whose path is the claim (a fixed budget) leave it off.
    """

    similarity: str | object = "linear"
    dim: int = 8
    points: int = 4
    hidden: tuple[int, ...] = (128, 128)
    features: str = "raw"
    batch_size: int = 256
    steps: int = 2000
    lr: float | None = None
    weight_decay: float = 0.0
    warmup: int = 0
    seed: int = 0
    device: str = "auto"
    objective: str = "symmetric"
    population: bool = False
    normalize: bool = True
    bias: bool = False
    temperature: float = 0.07
    logit_cap: float | None = 100.0
    learn_scale: bool = True
    sigma: float = 0.5
    alpha_linear: float = 0.0
    alpha_kernel: float = 1.0
    kernel: str = "gaussian"
    rff_features: int | None = None
    eval_samples: int = 1024
    eval_batches: int = 8
    dtype: str = "float32"
    amp: str = "auto"
    threads: int | None = 1
    check_every: int = 50
    converge_window: int | None = None
    converge_tol: float = 1e-7
    extra: dict = field(default_factory=dict)  # free-form labels carried into config.json

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
        if self.objective not in OBJECTIVES:
            raise InputError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
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
        if self.dtype not in ("float32", "float64"):
            raise InputError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.amp not in ("auto", "bf16", "off"):
            raise InputError(f"amp must be 'auto', 'bf16' or 'off', got {self.amp!r}")
        if self.features not in ("raw", "quadratic"):
            raise InputError(f"features must be 'raw' or 'quadratic', got {self.features!r}")
        if self.threads is not None:
            _positive_int(self.threads, "threads")
        _positive_int(self.check_every, "check_every")
        if self.converge_window is not None:
            _positive_int(self.converge_window, "converge_window")
            _positive_float(self.converge_tol, "converge_tol")
        for h in self.hidden:
            _positive_int(h, "hidden width")
        self.hidden = tuple(int(h) for h in self.hidden)
        return self


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

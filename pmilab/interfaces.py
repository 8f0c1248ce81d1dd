"""Every contract an outside object meets to plug into pmilab, in one module (as bmi's
`interface.py`): a similarity head, a joint distribution, a claim module.

- `Head` and `HeadInputs`: a head's logits, and what it needs from the encoders (a vector of
  size D, M points of size d with weights and how they are prepared, or the raw state indices).
  Encoders, trainers, pretraining and evaluation read `HeadInputs`, never a head's name.
- `JointDistribution`, with its two variants `ContinuousJoint` (`dim_x`, `dim_y`) and
  `DiscreteJoint` (`nx`, `ny`, `table`): samples and the exact PMI. `joint_missing` names what
  a joint lacks for its variant.
- `ClaimModule`: what `pmilab verify` needs of a claim (`experiments.framework.claim`).

The Protocols are structural (`typing.Protocol`): nothing has to inherit from them.
`pmilab.registry` resolves a spec to one of these objects and checks it against them;
docs/extending.md shows one of each written outside the repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pmilab.errors import InputError

if TYPE_CHECKING:  # annotations only: this module stays importable without torch
    from torch import Tensor, nn

# ---- a similarity head ----------------------------------------------------------------------

INPUT_KINDS = ("indices", "vector", "points")
# How a point set's raw weights are prepared before the head sees them:
# - "signed": real weights used as given (WPSE). A builder whose weight outputs start at zero
#   (pretraining's attention pooling) offsets them by 1, so the first logits are not all zero;
# - "log_softmax": normalised log-weights, logsumexp_a w_a = 0 (a probability-weighted set: KME).
WEIGHT_MODES = ("signed", "log_softmax")


@dataclass(frozen=True)
class HeadInputs:
    """What a head needs from each encoder.

    kind:      "indices": the raw state indices of a discrete joint, (B,) int64 (a table head);
               "vector":  one vector (B, dim) per input;
               "points":  `points` points (B, M, dim) and their weights (B, M) per input.
    dim:       D of a vector, or d of a point.
    points:    M (kind "points" only).
    weights:   how point weights are prepared (WEIGHT_MODES; kind "points" only).
    normalize: the head wants unit-norm vectors or points (each L2-normalised by the encoder).
               Pretraining also normalises every point set as its own choice (its kernel
               bandwidth then sits on a fixed scale).
    """

    kind: str
    dim: int = 0
    points: int = 0
    weights: str = ""
    normalize: bool = False

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise InputError(f"HeadInputs kind must be one of {INPUT_KINDS}, got {self.kind!r}")
        sizes = {"vector": ("dim",), "points": ("dim", "points")}.get(self.kind, ())
        for name in sizes:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"HeadInputs {name} must be a positive integer, got {v!r}")
        if self.kind == "points" and self.weights not in WEIGHT_MODES:
            raise InputError(
                f"HeadInputs weights must be one of {WEIGHT_MODES} for points, got {self.weights!r}"
            )

    @classmethod
    def indices(cls) -> HeadInputs:
        return cls("indices")

    @classmethod
    def vector(cls, dim: int, normalize: bool = False) -> HeadInputs:
        return cls("vector", int(dim), normalize=normalize)

    @classmethod
    def point_set(cls, points: int, dim: int, weights: str, normalize: bool = False) -> HeadInputs:
        return cls("points", int(dim), int(points), weights, normalize)

    @property
    def width(self) -> int:
        """Numbers an encoder emits per input: D, M·(d+1), or none (raw indices)."""
        if self.kind == "vector":
            return self.dim
        if self.kind == "points":
            return self.points * (self.dim + 1)
        return 0


@runtime_checkable
class Head(Protocol):
    """A similarity head: an `nn.Module` mapping encoder outputs to logits ℓ(x, y).

    `pmilab.similarity.SimilarityHead` is a base class with the defaults of every method but
    the first three; a head that does not subclass it defines all of them.
    """

    def logit_matrix(self, *encoded: Tensor) -> Tensor:
        """The x side's outputs then the y side's -> (B, C) logits of every x against every y."""
        ...

    def paired_logits(self, *encoded: Tensor) -> Tensor:
        """The same arguments with C == B -> (B,) logits of row i against row i."""
        ...

    def head_inputs(self, dim: int, points: int) -> HeadInputs:
        """What the head needs from each encoder, given the run's `dim` and `points` (a
        classmethod on built-in heads: the builders read it before building anything)."""
        ...

    def no_decay_parameters(self) -> list[nn.Parameter]:
        """Parameters kept out of weight decay (scales, biases, bandwidths)."""
        ...

    def clamp_(self) -> None:
        """Project constrained parameters back after each optimizer step."""
        ...

    def redraw(self, generator: Any = None) -> None:
        """Draw fresh random features before a training step (a no-op for most heads)."""
        ...

    def batch_refusal(self) -> str | None:
        """Why the head cannot train several seeds as one vmapped batch, or None."""
        ...


HEAD_METHODS = (
    "logit_matrix",
    "paired_logits",
    "head_inputs",
    "no_decay_parameters",
    "clamp_",
    "redraw",
    "batch_refusal",
)


# ---- a joint distribution -------------------------------------------------------------------


@runtime_checkable
class JointDistribution(Protocol):
    """What pmilab needs of every joint p(x, y): samples and the exact PMI.

    Every distribution keeps its ground truth next to its sampler (docs/theory.md T1, T6):
    `pmi`, `pmi_matrix` and `mutual_information` are exact wherever a closed form exists, in
    float64; samples of continuous joints are float64 (n, dim), of discrete ones int64 (n,).
    A joint is also a `ContinuousJoint` or a `DiscreteJoint`, as its `discrete` flag says.
    """

    discrete: bool

    def sample(self, n: int, seed: int | None = 0) -> tuple[Tensor, Tensor]:
        """n paired draws (x, y) ~ p(x, y); the same seed gives the same draws."""
        ...

    def pmi(self, x: Tensor, y: Tensor) -> Tensor:
        """(n,) PMI(x_i, y_i) of paired inputs."""
        ...

    def pmi_matrix(self, x: Tensor, y: Tensor) -> Tensor:
        """(n, m) PMI(x_i, y_j) of every x against every y."""
        ...

    def mutual_information(self) -> float:
        """I(X;Y) in nats: exact, or an `Estimate` with a standard error."""
        ...


@runtime_checkable
class ContinuousJoint(JointDistribution, Protocol):
    """A joint of vectors x (n, dim_x), y (n, dim_y); `discrete` is False."""

    dim_x: int
    dim_y: int


@runtime_checkable
class DiscreteJoint(JointDistribution, Protocol):
    """A joint of states x in [0, nx), y in [0, ny) with its exact table; `discrete` is True."""

    nx: int
    ny: int
    table: Tensor  # (nx, ny) float64, sums to 1


JOINT_MEMBERS = ("discrete", "sample", "pmi", "pmi_matrix", "mutual_information")
VARIANT_MEMBERS = {False: ("dim_x", "dim_y"), True: ("nx", "ny", "table")}


def joint_missing(dist: object) -> list[str]:
    """The members `dist` lacks as a joint: those of `JointDistribution`, then those of its
    variant (`ContinuousJoint` or `DiscreteJoint`, by its `discrete` flag)."""
    missing = [m for m in JOINT_MEMBERS if not hasattr(dist, m)]
    if "discrete" in missing:
        return missing
    return missing + [m for m in VARIANT_MEMBERS[bool(dist.discrete)] if not hasattr(dist, m)]


# ---- a claim --------------------------------------------------------------------------------


@runtime_checkable
class ClaimModule(Protocol):
    """What `pmilab verify` needs of a claim module (`experiments.framework.claim`):

    CLAIM: str                                  "T2"
    TITLE: str                                  one line: what the claim says
    config(preset, seeds=None) -> Config        a frozen dataclass; preset in PRESETS
    sweeps(cfg) -> list[Sweep]                  the runs, as plain-text parameters
    evaluate(tables, cfg) -> list[ClaimResult]  the verdicts, from the finished run tables
    """

    CLAIM: str
    TITLE: str

    def config(self, preset: str, seeds: int | None = None) -> Any: ...

    def sweeps(self, cfg: Any) -> list: ...

    def evaluate(self, tables: dict, cfg: Any) -> list: ...

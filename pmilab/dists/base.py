"""The small helpers every distribution shares. The `JointDistribution` Protocol (and its
variants `ContinuousJoint`, `DiscreteJoint`) lives in `pmilab.interfaces`, re-exported here.

Every distribution keeps its ground truth next to its sampler (docs/theory.md T1, T6): `pmi`,
`pmi_matrix` and `mutual_information` are exact wherever a closed form exists. All of them
compute in float64; samples of continuous distributions are float64, of discrete ones int64.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from pmilab.errors import InputError
from pmilab.interfaces import ContinuousJoint, DiscreteJoint, JointDistribution
from pmilab.limits import check_bytes
from pmilab.stats import Estimate, mean_se

__all__ = [
    "ContinuousJoint",
    "DiscreteJoint",
    "Estimate",
    "JointDistribution",
    "monte_carlo",
]


# Bytes of one float64 or int64 entry: what the size estimates below count in.
F64 = 8
# Copies of a joint table that building and validating it holds at once (the table, the masks
# and sums of `validate_table`, the normalised copy).
TABLE_COPIES = 4


def generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded explicitly (seed=None draws a fresh seed). A NaN, infinite or
    fractional seed is refused: `int()` would crash on the first and silently truncate the
    last, so two different seeds would give the same draws."""
    g = torch.Generator()
    if seed is None:
        g.seed()
        return g
    ok = isinstance(seed, numbers.Integral) or (
        isinstance(seed, numbers.Real) and math.isfinite(seed) and float(seed).is_integer()
    )
    if isinstance(seed, bool) or not ok:
        raise InputError(f"seed must be an integer or None, got {seed!r}")
    g.manual_seed(int(seed))
    return g


def check_n(n: int, bytes_per_draw: float) -> int:
    """n as a positive int whose draws fit the memory limit: every `sample` states what one
    of its draws holds, so `sample(10**12)` is one line, not an allocator death."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise InputError(f"sample size must be a positive integer, got {n!r}")
    check_bytes(int(n) * bytes_per_draw, f"sampling {int(n)} draws", "draw fewer, in batches")
    return int(n)


def check_pmi_matrix(n: int, m: int, bytes_per_pair: float, fixed: float = 0.0) -> None:
    """Refuse an (n, m) `pmi_matrix` whose temporaries (`bytes_per_pair` for each of the n·m
    pairs, plus `fixed`) exceed the memory limit."""
    check_bytes(
        n * m * bytes_per_pair + fixed,
        f"a pmi_matrix of {n} x {m} pairs",
        "score fewer points, or blocks of rows",
    )


def check_table(nx: int, ny: int) -> None:
    """Refuse an (nx, ny) joint table too large to build and validate (TABLE_COPIES copies)."""
    check_bytes(TABLE_COPIES * F64 * nx * ny, f"a joint table of {nx} x {ny} states")


def check_finite(v: Tensor, name: str) -> Tensor:
    """Refuse NaN or inf inputs of a continuous joint: its PMI there is NaN, and a NaN metric
    computed from it would pass silently."""
    if not torch.isfinite(v).all():
        raise InputError(f"{name} contains NaN or inf; the PMI is defined at finite points only")
    return v


def as_float64(a, name: str) -> Tensor:
    """A user array as a float64 tensor, rejecting NaN and inf with a message naming `name`."""
    t = torch.as_tensor(a, dtype=torch.float64)
    if not torch.isfinite(t).all():
        raise InputError(f"{name} contains NaN or inf; every entry must be a finite number")
    return t


def check_probability_vector(p: Tensor, name: str, atol: float = 1e-6) -> Tensor:
    """Validate rows of `p` (last axis) as probability vectors."""
    if (p < 0).any():
        raise InputError(f"{name} has negative entries; probabilities must be >= 0")
    s = p.sum(-1)
    if not torch.allclose(s, torch.ones_like(s), atol=atol, rtol=0):
        raise InputError(
            f"{name} must sum to 1 along its last axis (got sums from {s.min():.6g} to "
            f"{s.max():.6g}); normalise it first"
        )
    return p / s.unsqueeze(-1)


def monte_carlo(values: Tensor) -> Estimate:
    """Mean of i.i.d. values with its standard error."""
    return mean_se(values.to(torch.float64))


def check_dims(**dims: int) -> None:
    """Each keyword must be a positive integer (a dimension or a count)."""
    for name, v in dims.items():
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise InputError(f"{name} must be a positive integer, got {v!r}")


def check_xy(x, y, dim_x: int, dim_y: int, paired: bool) -> tuple[Tensor, Tensor]:
    """Continuous inputs as float64 x (n, dim_x), y (m, dim_y); n == m when `paired`."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    if x.ndim != 2 or x.shape[1] != dim_x or y.ndim != 2 or y.shape[1] != dim_y:
        raise InputError(
            f"expected x (n, {dim_x}) and y (m, {dim_y}), got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if paired and x.shape[0] != y.shape[0]:
        raise InputError(f"pmi needs paired inputs, got {x.shape[0]} x and {y.shape[0]} y")
    return check_finite(x, "x"), check_finite(y, "y")

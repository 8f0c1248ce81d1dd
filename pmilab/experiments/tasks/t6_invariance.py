"""T6b's training task: a head trained on a map of a base joint, scored against the base's PMI
at the pre-images (docs/theory.md T6).

For a bijection f (`<base>,transform=affine`, a `pmilab.dists.Transformed`) the PMI of
(f(X), Y) is the base's PMI at the pre-image, so a head trained on f(X) is scored against it.
For a map that is not a bijection that is no longer true: the head sees only f(X), whose PMI
with Y differs from PMI(X, Y), and scored against the base's PMI at the true pre-image it has a
floor that no training removes. T6b's near miss is such a map (`<base>|quantize=h`):

    <base>|quantize=h    x's first coordinate rounded to the grid h Z (x1 -> h round(x1 / h)),
                         every other coordinate and y unchanged; every score is against the
                         base's PMI at the unrounded draw (`Quantized`)

The closed-form floor of the quantised Gaussian (`quantized_gaussian_floor`) sizes it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import norm

from pmilab.errors import InputError
from pmilab.experiments.tasks.catalog import make_dist
from pmilab.experiments.tasks.continuous import INVARIANCE_METRICS, _continuous_metrics
from pmilab.experiments.tasks.fitting import fit_runs

QUANTIZE = "quantize"
# The attribute a `Quantized` draw carries: the unrounded x it came from.
_PREIMAGE = "_t6_preimage"


class Quantized:
    """`base` with x's first coordinate rounded to the grid `step` Z: a map that is not a
    bijection (every x1 in [k step - step/2, k step + step/2) goes to k step).

    `sample` returns the rounded x; each draw keeps its unrounded x, and `pmi` / `pmi_matrix`
    score against the base's PMI there, so they accept only x drawn by this object's `sample`
    (anything else is an InputError: the pre-image of a rounded value is not known).
    Everything else (MI, sizes, dims) is the base's. The base must be continuous.
    """

    def __init__(self, base, step: float) -> None:
        if base.discrete:
            raise InputError("quantize= applies to continuous distributions only")
        if not (math.isfinite(step) and step > 0):
            raise InputError(f"quantize= needs a step > 0, got {step}")
        self.base, self.step = base, float(step)

    def __getattr__(self, name: str):
        return getattr(self.base, name)

    def __repr__(self) -> str:
        return f"Quantized({self.base!r}, step={self.step:g})"

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        q = x.clone()
        q[:, 0] = self.step * torch.round(x[:, 0] / self.step)
        return q

    def sample(self, n: int, seed: int | None = 0):
        x, y = self.base.sample(n, seed)
        q = self.quantize(x)
        setattr(q, _PREIMAGE, x)
        return q, y

    def _preimage(self, q: torch.Tensor) -> torch.Tensor:
        x = getattr(q, _PREIMAGE, None)
        if x is None:
            raise InputError(
                "a Quantized joint scores only its own draws: the pre-image of a rounded x is "
                "not known"
            )
        return x

    def pmi(self, q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.base.pmi(self._preimage(q), y)

    def pmi_matrix(self, q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.base.pmi_matrix(self._preimage(q), y)


def t6_dist(spec: str):
    """The joint of a T6 run: `make_dist(spec)`, or a `Quantized` base for `<base>|quantize=h`."""
    base, bar, suffix = spec.partition("|")
    key, eq, value = suffix.partition("=")
    if bar and key == QUANTIZE and eq:
        try:
            step = float(value)
        except ValueError:
            raise InputError(f"quantize= needs a number, got {value!r}") from None
        return Quantized(make_dist(base), step)
    return make_dist(spec)


def _scored(d):
    """The distribution whose closed forms (sd of PMI) score a run: the base of a Quantized."""
    return d.base if isinstance(d, Quantized) else d


def t6_head(p: dict) -> dict:
    """One T6b run: `t6_heads([p])[0]`."""
    return t6_heads([p])[0]


def t6_heads(ps: list[dict]) -> list[dict]:
    """T6b's runs of one cell (parameters equal but for "seed"), trained as one batched
    computation on `t6_dist(ps[0]["dist"])`, with `continuous.INVARIANCE_METRICS` (the same
    metrics, in the same units, as `continuous.continuous_heads` gives with them)."""
    d = t6_dist(ps[0]["dist"])
    runs = fit_runs(d, ps)
    return [
        _continuous_metrics(run, _scored(d), p, INVARIANCE_METRICS)
        for run, p in zip(runs, ps, strict=True)
    ]


def _log_mass(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """log(Phi(hi) - Phi(lo)) for lo < hi, without cancellation in either tail."""
    up = lo > 0
    a = np.where(up, norm.logsf(lo), norm.logcdf(hi))
    b = np.where(up, norm.logsf(hi), norm.logcdf(lo))
    return a + np.log1p(-np.exp(b - a))


def quantized_gaussian_floor(rho: float, step: float, n: int = 2_000_000, seed: int = 0) -> dict:
    """The error, in nats, of the best head on a quantised Gaussian pair, scored against the
    unrounded PMI: sd of PMI(x, y) - PMI_q(round(x), y) under p(x)p(y) and under p(x, y).

    (x, y) standard normal with correlation rho; PMI_q(b, y) = log P(x in bin b | y) / P(x in
    bin b) is the PMI of (round(x), y), which InfoNCE's optimum on the rounded draws is (up to
    a constant). Monte Carlo over n draws (x, y) of each measure; the bin masses are exact
    normal CDF differences. For a base whose other coordinate pairs are independent of the
    first, this is the error of the whole head (the other pairs' PMI is learnt unchanged).
    """
    rng = np.random.default_rng(seed)
    s = math.sqrt(1 - rho**2)
    x = rng.standard_normal(n)
    ys = {"product": rng.standard_normal(n), "joint": rho * x + s * rng.standard_normal(n)}
    b = np.round(x / step) * step
    lo, hi = b - step / 2, b + step / 2
    out = {}
    for measure, y in ys.items():
        pmi = -0.5 * math.log(1 - rho**2) - (rho**2 * x**2 - 2 * rho * x * y + rho**2 * y**2) / (
            2 * (1 - rho**2)
        )
        pmi_q = _log_mass((lo - rho * y) / s, (hi - rho * y) / s) - _log_mass(lo, hi)
        out[measure] = float(np.std(pmi - pmi_q))
    return out

"""Continuous joints refuse non-finite inputs with one line instead of returning NaN.

PMI is defined at finite points only: before, `pmi(nan, y)` returned NaN silently, and a NaN
metric computed from it looks like any other number in a table. The controls: the same calls
with the bad entry replaced by a finite one return finite PMI.
"""

from __future__ import annotations

import math

import pytest
import torch

from pmilab.dists import BUILTIN_SPECS, parse_spec
from pmilab.errors import InputError

CONTINUOUS = [
    BUILTIN_SPECS["gaussian-1-1-0.75"],
    BUILTIN_SPECS["gaussian-4-4-0.9-0.5"],
    BUILTIN_SPECS["dense-5-5-0.5"],
    BUILTIN_SPECS["mixture-k4-2-2"],
    BUILTIN_SPECS["studentt-2-2-df5"],
    BUILTIN_SPECS["gaussian-2-2-0.8-spiral"],
    "gaussian:dx=3,dy=3,rho=0.5,transform=affine",
    "studentt:dx=2,dy=2,df=5,transform=asinh",
    "mixture:k=3,dx=2,dy=2,transform=halfcube",
]
BAD = [math.nan, math.inf, -math.inf]


def test_every_continuous_builtin_is_covered():
    builtin = {s for s in BUILTIN_SPECS.values() if not parse_spec(s).discrete}
    assert builtin <= set(CONTINUOUS)


def _inputs(d, n: int = 5):
    x, y = d.sample(n, seed=1)
    return x.clone(), y.clone()


@pytest.mark.parametrize("bad", BAD, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("side", ["x", "y"])
@pytest.mark.parametrize("method", ["pmi", "pmi_matrix"])
@pytest.mark.parametrize("spec", CONTINUOUS)
def test_a_non_finite_input_is_one_line(spec, method, side, bad):
    d = parse_spec(spec)
    x, y = _inputs(d)
    (x if side == "x" else y)[2, 0] = bad
    with pytest.raises(InputError, match=f"^{side} contains NaN or inf") as e:
        getattr(d, method)(x, y)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("method", ["pmi", "pmi_matrix"])
@pytest.mark.parametrize("spec", CONTINUOUS)
def test_control_finite_inputs_give_finite_pmi(spec, method):
    d = parse_spec(spec)
    x, y = _inputs(d)
    x[2, 0] = 0.5  # where the bad value was put above
    assert torch.isfinite(getattr(d, method)(x, y)).all()


@pytest.mark.parametrize("seed", [math.nan, math.inf, 1.5, "3", True])
@pytest.mark.parametrize("spec", CONTINUOUS)
def test_sample_refuses_a_seed_that_is_not_an_integer(spec, seed):
    d = parse_spec(spec)
    with pytest.raises(InputError, match="^seed must be an integer or None, got"):
        d.sample(4, seed=seed)


@pytest.mark.parametrize("spec", CONTINUOUS)
def test_sample_refuses_a_count_that_is_not_a_positive_integer(spec):
    d = parse_spec(spec)
    for n in (math.nan, math.inf, 2.5, 0, -3):
        with pytest.raises(InputError, match="^sample size must be a positive integer"):
            d.sample(n)


@pytest.mark.parametrize("spec", CONTINUOUS)
def test_control_an_integral_seed_of_any_type_is_the_same_seed(spec):
    import numpy as np

    d = parse_spec(spec)
    ref = d.sample(4, seed=3)
    for same in (3.0, np.int64(3)):
        got = d.sample(4, seed=same)
        assert all(torch.equal(a, b) for a, b in zip(ref, got, strict=True))

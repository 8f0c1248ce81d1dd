"""Sizes are refused against an estimate of their memory before anything is allocated.

Every case of the issue ("a newcomer's first hour") that reached the allocator is refused here
with one line naming the estimate and the limit. The refusals are made cheap and certain by a
small limit (PMILAB_MAX_MEMORY_GB); the controls raise the limit and see the same sizes pass
the check, and a size that fits is really built. Estimates are checked against an independent
reference: they are at least the bytes the result itself occupies.
"""

from __future__ import annotations

import math
import os
import re

import pytest
import torch

from pmilab.cli import main
from pmilab.dists import parse_spec
from pmilab.dists.base import check_n, check_pmi_matrix, check_table
from pmilab.errors import InputError
from pmilab.limits import (
    DEFAULT_FRACTION,
    GIB,
    MEMORY_LIMIT_ENV,
    check_bytes,
    memory_limit_bytes,
)
from pmilab.training import FitConfig
from pmilab.training.memory import check_fit, fit_bytes

REFUSAL = re.compile(
    r"needs about ([0-9.e+]+) GiB, above the limit of ([0-9.e+-]+) GiB "
    rf"\(set {MEMORY_LIMIT_ENV} to raise it\)"
)
HUGE_GIB = 1e9  # a limit no size here reaches: the control


def refusal(excinfo) -> tuple[float, float]:
    """(estimate, limit) in GiB from a refusal, which must be one line."""
    text = str(excinfo.value)
    assert "\n" not in text
    m = REFUSAL.search(text)
    assert m, text
    return float(m[1]), float(m[2])


def at_least(estimate_gib: float, n_bytes: float) -> bool:
    """The printed estimate (3 significant digits) is no less than n_bytes."""
    return estimate_gib * GIB >= n_bytes * (1 - 5e-3)


@pytest.fixture
def limit(monkeypatch):
    """Set the limit to `gib` GiB for the rest of the test."""

    def set_(gib: float) -> None:
        monkeypatch.setenv(MEMORY_LIMIT_ENV, repr(gib))

    set_(1.0)
    return set_


# ---- the owner: the limit and the check ------------------------------------------------------


def test_the_default_limit_is_a_fraction_of_the_machines_memory(monkeypatch):
    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")  # not /proc/meminfo
    assert memory_limit_bytes() == pytest.approx(DEFAULT_FRACTION * ram, rel=1e-3)


def test_the_variable_raises_or_lowers_the_limit(limit):
    limit(0.5)
    assert memory_limit_bytes() == 0.5 * 2**30
    limit(4096.0)
    assert memory_limit_bytes() == 4096 * 2**30


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "nan", "inf"])
def test_a_bad_limit_is_one_line(monkeypatch, bad):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, bad)
    with pytest.raises(InputError, match=f"{MEMORY_LIMIT_ENV} must be a positive number"):
        memory_limit_bytes()


def test_check_bytes_passes_up_to_the_limit_and_refuses_above(limit):
    limit(1.0)
    check_bytes(GIB, "exactly the limit")  # just fits
    with pytest.raises(InputError, match="^one byte more needs about") as e:
        check_bytes(GIB + 1, "one byte more")
    assert refusal(e) == (1.0, 1.0)
    with pytest.raises(InputError, match="more memory than any machine has"):
        check_bytes(math.inf, "an overflowed size")
    limit(2.0)
    check_bytes(GIB + 1, "one byte more")  # control: the same size under a raised limit


# ---- the cases -----------------------------------------------------------------------


def test_a_huge_latent_table_is_refused_before_it_is_built(limit):
    with pytest.raises(InputError, match="joint table of 200000 x 200000 states") as e:
        parse_spec("latent:nx=200000,ny=200000")
    estimate, cap = refusal(e)
    assert cap == 1.0 and at_least(estimate, 200000**2 * 8)  # at least the float64 table itself
    limit(HUGE_GIB)
    check_table(200000, 200000)  # control: the same size passes a raised limit


def test_a_latent_table_that_fits_is_built(limit):
    limit(1 / 1024)  # 1 MiB: a 100 x 100 table (80 kB, a few copies) fits, 400 x 400 does not
    assert parse_spec("latent:nx=100,ny=100").table.shape == (100, 100)
    with pytest.raises(InputError, match="joint table of 400 x 400"):
        parse_spec("latent:nx=400,ny=400")


SAMPLED = [
    "latent:nx=24,ny=20,k=4",
    "gaussian:dx=4,dy=4,rho=0.9",
    "dense:dx=5,dy=5,corr=0.5",
    "mixture:k=4,dx=2,dy=2",
    "studentt:dx=2,dy=2,df=5",
    "gaussian:dx=2,dy=2,rho=0.8,transform=spiral",
]


def _result_bytes(dist, n: int) -> int:
    """Bytes of n draws as returned: int64 indices, or float64 (dx + dy) numbers."""
    return n * 8 * (2 if dist.discrete else dist.dim_x + dist.dim_y)


@pytest.mark.parametrize("spec", SAMPLED)
def test_sampling_10_to_the_12_is_refused(limit, spec):
    d = parse_spec(spec)
    with pytest.raises(InputError, match=f"sampling {10**12} draws") as e:
        d.sample(10**12)
    estimate, _ = refusal(e)
    assert at_least(estimate, _result_bytes(d, 10**12))
    limit(HUGE_GIB)
    check_n(10**12, d.draw_bytes)  # control


@pytest.mark.parametrize("spec", SAMPLED)
def test_a_sample_that_fits_is_drawn(limit, spec):
    d = parse_spec(spec)
    limit(1 / 1024)
    x, _ = d.sample(1000)
    assert len(x) == 1000
    with pytest.raises(InputError, match="sampling 100000 draws"):
        d.sample(100_000)


def test_a_latent_sample_with_its_latent_counts_the_rows_it_gathers(limit):
    d = parse_spec("latent:nx=2000,ny=2000,k=4")
    limit(0.01)  # 10 MiB: 500 draws gather 500 rows of 2000 probabilities per side
    assert d.sample(5000)[0].shape == (5000,)  # the plain sampler needs no rows
    with pytest.raises(InputError, match="sampling 5000 draws"):
        d.sample_with_latent(5000)


GRIDS = [*SAMPLED, "latent:nx=8,ny=8,k=2"]


def _points(d, n: int):
    if d.discrete:
        return torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)
    return torch.zeros(n, d.dim_x, dtype=torch.float64), torch.zeros(
        n, d.dim_y, dtype=torch.float64
    )


@pytest.mark.parametrize("spec", GRIDS)
def test_a_pmi_matrix_of_1e5_by_1e5_is_refused(limit, spec):
    d = parse_spec(spec)
    x, y = _points(d, 100_000)  # the inputs are small; their n x m grid is 80 GB
    with pytest.raises(InputError, match="pmi_matrix of 100000 x 100000 pairs") as e:
        d.pmi_matrix(x, y)
    estimate, _ = refusal(e)
    assert at_least(estimate, 100_000**2 * 8)  # at least the float64 result
    limit(HUGE_GIB)
    check_pmi_matrix(100_000, 100_000, getattr(d, "pair_bytes", 8))  # control


@pytest.mark.parametrize("spec", GRIDS)
def test_a_pmi_matrix_that_fits_is_computed(limit, spec):
    d = parse_spec(spec)
    limit(0.01)
    x, y = _points(d, 100)
    assert d.pmi_matrix(x, y).shape == (100, 100)
    x, y = _points(d, 2000)
    with pytest.raises(InputError, match="pmi_matrix of 2000 x 2000"):
        d.pmi_matrix(x, y)


def _fit_refusal(capsys, argv: list[str], tmp_path) -> str:
    out = tmp_path / "run"
    rc = main(["fit", *argv, "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("pmilab fit: error: ") and not out.exists()
    return err


def test_fit_with_huge_point_sets_is_refused(limit, capsys, tmp_path):
    argv = ["--dist", "latent:nx=24,ny=20,k=4", "--similarity", "kme"]
    err = _fit_refusal(capsys, [*argv, "--points", "100000", "--dim", "100000"], tmp_path)
    m = REFUSAL.search(err)
    assert m and float(m[2]) == 1.0, err
    # at least the two encoder tables, (nx + ny) M (d + 1) float32 numbers
    assert at_least(float(m[1]), (24 + 20) * 100000 * 100001 * 4)
    limit(HUGE_GIB)  # control: the same sizes pass the check
    cfg = FitConfig(similarity="kme", points=100000, dim=100000).validated()
    check_fit(parse_spec("latent:nx=24,ny=20,k=4"), cfg)


def test_fit_with_a_huge_batch_is_refused(limit, capsys, tmp_path):
    table = tmp_path / "t.npy"
    import numpy as np

    np.save(table, np.full((8, 8), 1 / 64))
    err = _fit_refusal(capsys, ["--dist", str(table), "--batch-size", "100000000"], tmp_path)
    m = REFUSAL.search(err)
    # the batch alone: 10^8 pairs of int64 indices
    assert m and at_least(float(m[1]), 10**8 * 16), err
    limit(HUGE_GIB)
    check_fit(parse_spec(str(table)), FitConfig(batch_size=10**8).validated())  # control


def test_a_fit_that_fits_runs(limit):
    import pmilab

    limit(0.05)  # 50 MiB: a small fit needs well under a MiB of tensors
    d = parse_spec("latent:nx=8,ny=8,k=2")
    cfg = FitConfig.smoke(similarity="kme", steps=5)
    assert fit_bytes(d, cfg) < 0.05 * GIB
    run = pmilab.fit(d, cfg, progress=False)
    assert run.metrics["steps_run"] == 5
    with pytest.raises(InputError, match="batch_size=1000000"):
        pmilab.fit(d, cfg.replace(batch_size=10**6), progress=False)


def test_the_fit_estimate_grows_with_every_size_it_names():
    """The estimate must see each knob of the issue: dim, points and the batch."""
    d = parse_spec("gaussian:dx=2,dy=2,rho=0.5")
    base = FitConfig(similarity="kme").validated()
    b0 = fit_bytes(d, base)
    for change in ({"dim": 64}, {"points": 64}, {"batch_size": 4096}, {"eval_samples": 8192}):
        assert fit_bytes(d, base.replace(**change)) > b0, change


def test_the_fit_estimate_counts_every_replica_of_a_batched_run():
    """R seeds trained as one batch hold R copies of the parameters and of a step; the
    evaluation runs one seed at a time. A batch of seeds that fits alone is refused once R
    copies exceed the limit, and the refusal names the seeds."""
    d = parse_spec("latent:nx=24,ny=20,k=4")
    cfg = FitConfig(similarity="kme", dim=64, points=64, population=True).validated()
    one = fit_bytes(d, cfg, 1)
    assert fit_bytes(d, cfg, 100) >= 99 * one  # control: the one-replica estimate is smaller
    import pmilab.limits as limits

    limit = 10 * one
    check_fit(d, cfg, 5) if fit_bytes(d, cfg, 5) <= limit else None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(limits, "memory_limit_bytes", lambda: limit)
        check_fit(d, cfg, 1)
        with pytest.raises(InputError, match="100 seeds"):
            check_fit(d, cfg, 100)

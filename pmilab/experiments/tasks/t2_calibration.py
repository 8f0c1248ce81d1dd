"""T2's tasks: the usual head metrics plus each run's calibration cases (docs/theory.md T2).

A calibration case is the trained head's own logits plus a random field ẑ of known size, scored
by the same metric function as the head (`metrics.pmi_rmse_product`) on the same table or grid:

- ẑ is drawn from the run's seed (`PERTURB_SEED_OFFSET` + seed), centred and normalised to unit
  RMS under p(x)p(y): on a discrete joint iid N(0, 1) cells weighted by p(x)p(y); on a continuous
  joint a random Fourier field sum_j cos(a_j.x + b_j.y + phi_j) (`FOURIER_FEATURES` of them,
  a_j, b_j ~ N(0, I), phi_j ~ U[0, 2 pi)) on the Monte Carlo evaluation grid;
- it is scaled by s = sd(PMI) sqrt((r + delta)^2 - r^2), r the head's relative error and delta =
  f x tolerance, so the perturbed head's mean squared relative error is (r + delta)^2 (the cross
  term with the head's residual has mean 0 over the field): it is wrong by delta more than the
  head, up to the field's spread.

Columns `rel_plus_half` and `rel_plus_double`: the perturbed head's relative error
(rmse / sd(PMI)) for f = 0.5 and f = 2 (`FACTORS`). The tolerance is the claim's (`tol`, bound
by the sweep with functools.partial: REACH_TOL on a discrete joint, REACH_TOL_MC on a continuous
one); a task never imports a claim module (docs/architecture.md).
"""

from __future__ import annotations

import math

import torch

from pmilab import metrics as M
from pmilab.experiments.tasks.catalog import make_dist
from pmilab.experiments.tasks.continuous import CONTINUOUS_METRICS, _continuous_metrics
from pmilab.experiments.tasks.discrete import DISCRETE_METRICS, _discrete_metrics
from pmilab.experiments.tasks.fitting import fit_runs
from pmilab.theory import optimum as opt
from pmilab.training.evaluate import EVAL_SEED_OFFSET

# Far from the training seeds (< 2**31 here), the probe draws (1_000_003 + seed) and the
# evaluation draws (2**62 + seed).
PERTURB_SEED_OFFSET = 7_000_003
FACTORS = {"rel_plus_half": 0.5, "rel_plus_double": 2.0}
FOURIER_FEATURES = 32
CALIBRATION_METRICS = list(FACTORS)
# how long each seed trained: a convergence stop (`FitConfig.floor_gap`) is recorded per run
STOP_METRICS = ["steps_run", "converged_at_step"]
HEADS_METRICS = DISCRETE_METRICS + STOP_METRICS + CALIBRATION_METRICS
GAUSS_METRICS = CONTINUOUS_METRICS + CALIBRATION_METRICS


def raise_scale(rel: float, delta: float) -> float:
    """s / sd(PMI): the size of a unit-RMS field that takes a head with relative error `rel` to
    a mean squared relative error (rel + delta)^2."""
    return math.sqrt((rel + delta) ** 2 - rel**2)


def perturbed_errors(
    logits: torch.Tensor,
    pmi: torch.Tensor,
    field: torch.Tensor,
    sd: float,
    tol: float,
    weights: torch.Tensor | None = None,
) -> dict[str, float]:
    """{column: relative error of logits + s * field} for each factor in FACTORS; `field` is
    centred and normalised here (weighted by `weights`, or uniformly on a Monte Carlo grid)."""
    f = field.to(torch.float64)
    if weights is not None:
        w = weights.to(torch.float64) / weights.sum()
        f = f - (w * f).sum()
        f = f / (w * f**2).sum().sqrt()
    else:
        f = f - f.mean()
        f = f / (f**2).mean().sqrt()
    rel = float(M.pmi_rmse_product(logits, pmi, weights)) / sd
    out = {}
    for name, factor in FACTORS.items():
        s = raise_scale(rel, factor * tol) * sd
        out[name] = float(M.pmi_rmse_product(logits + s * f, pmi, weights)) / sd
    return out


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(PERTURB_SEED_OFFSET + int(seed))


def table_calibration(run, seed: int, tol: float) -> dict[str, float]:
    """The calibration columns of a head on a discrete joint (exact, weights p(x)p(y))."""
    d = run.dist
    table, pmi = run.logit_table(), d.pmi_table()
    w = d.px[:, None] * d.py[None, :]
    z = torch.randn(pmi.shape, generator=_generator(seed), dtype=torch.float64)
    sd = opt.product_std(pmi, d.px, d.py)  # the unit of the run table's relative errors
    return perturbed_errors(table, pmi, z, sd, tol, w)


def fourier_field(x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
    """(n, m) grid of sum_j cos(a_j.x_i + b_j.y_k + phi_j), computed as cos A cos B - sin A sin B."""
    g = _generator(seed)
    x, y = x.to(torch.float64).reshape(len(x), -1), y.to(torch.float64).reshape(len(y), -1)
    a = torch.randn(x.shape[1], FOURIER_FEATURES, generator=g, dtype=torch.float64)
    b = torch.randn(y.shape[1], FOURIER_FEATURES, generator=g, dtype=torch.float64)
    phi = 2 * math.pi * torch.rand(FOURIER_FEATURES, generator=g, dtype=torch.float64)
    ax, by = x @ a + phi, y @ b
    return ax.cos() @ by.cos().T - ax.sin() @ by.sin().T


def grid_calibration(run, sd: float, tol: float) -> dict[str, float]:
    """The calibration columns of a head on a continuous joint, on the grid its Monte Carlo
    metrics use (`training.evaluate.continuous_metrics`: the same seeds, the same draws)."""
    d, n, seed = run.dist, run.config.eval_samples, run.config.seed
    x, _ = d.sample(n, seed=EVAL_SEED_OFFSET + seed)
    _, y = d.sample(n, seed=EVAL_SEED_OFFSET + seed + 1)
    grid, pmi = run.logit_matrix(x, y), d.pmi_matrix(x, y)
    return perturbed_errors(grid, pmi, fourier_field(x, y, seed), sd, tol)


def heads_run(p: dict, tol: float) -> dict:
    """One run on a discrete joint: `discrete.discrete_head`'s metrics plus the calibration
    columns for tolerance `tol`."""
    return heads_cell([p], tol)[0]


def heads_cell(ps: list[dict], tol: float) -> list[dict]:
    """`heads_run` for each seed of a cell, trained as one batched computation."""
    runs = fit_runs(make_dist(ps[0]["dist"]), ps)
    out = []
    for run, p in zip(runs, ps, strict=True):
        m = _discrete_metrics(run, p)
        m.update(table_calibration(run, int(p["seed"]), tol))
        m.update({k: float(run.metrics.get(k, math.nan)) for k in STOP_METRICS})
        out.append({k: m[k] for k in HEADS_METRICS})
    return out


def gauss_run(p: dict, tol: float) -> dict:
    """One run on a continuous joint: `continuous.continuous_head`'s metrics plus the
    calibration columns for tolerance `tol`."""
    return gauss_cell([p], tol)[0]


def gauss_cell(ps: list[dict], tol: float) -> list[dict]:
    """`gauss_run` for each seed of a cell, trained as one batched computation."""
    d = make_dist(ps[0]["dist"])
    runs = fit_runs(d, ps)
    out = []
    for run, p in zip(runs, ps, strict=True):
        m = _continuous_metrics(run, d, p, CONTINUOUS_METRICS)
        m.update(grid_calibration(run, m["product_std"], tol))
        out.append({k: m[k] for k in GAUSS_METRICS})
    return out

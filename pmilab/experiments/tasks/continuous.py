"""Tasks on continuous joints: Monte Carlo PMI errors with standard errors (T1b, T2d, T6)."""

from __future__ import annotations

import math

from pmilab import metrics as M
from pmilab.dists import Gaussian, Transformed
from pmilab.experiments.tasks.catalog import ShuffledPairs, make_dist
from pmilab.experiments.tasks.fitting import NAN, PROBE_SEED_OFFSET, fit_run, fit_runs
from pmilab.theory import optimum as opt

CONTINUOUS_METRICS = [
    "pmi_rmse_product",
    "pmi_rmse_product_se",
    "pmi_rmse_joint",
    "pmi_rmse_joint_se",
    "pmi_corr",
    "pmi_delta",
    "mi_infonce",
    "mi_infonce_se",
    "mutual_information",
    "product_std",
    "product_std_se",
    "bilinear_floor",
    "final_loss",
    "stopped_at",
]

# T6's invariance runs also record the product-measure error on the more likely half of the
# pairs (metrics.pmi_rmse_product_above), to show where the error lies, and sd(PMI) under
# p(x, y) (`joint_std`), the unit of the joint-measure relative error.
INVARIANCE_METRICS = CONTINUOUS_METRICS + ["pmi_rmse_product_above", "joint_std", "joint_std_se"]


def canonical_gaussian(d):
    """The canonical Gaussian (rho=...) whose PMI `d` scores against, or None: `d` itself, or
    the base of a `Transformed` (bijections leave PMI and its law unchanged) or of a
    `ShuffledPairs` control (scored against its base's PMI)."""
    while isinstance(d, Transformed | ShuffledPairs):
        d = d.base
    return d if isinstance(d, Gaussian) and d.rho is not None else None


def continuous_head(p: dict, metrics: list[str] = CONTINUOUS_METRICS) -> dict:
    """Train a head on a continuous joint; Monte Carlo PMI errors with standard errors."""
    d = make_dist(p["dist"])
    return _continuous_metrics(fit_run(d, p), d, p, metrics)


def continuous_heads(ps: list[dict], metrics: list[str] = CONTINUOUS_METRICS) -> list[dict]:
    """`continuous_head` for each seed of a cell, trained as one batched computation."""
    d = make_dist(ps[0]["dist"])
    runs = fit_runs(d, ps)
    return [_continuous_metrics(run, d, p, metrics) for run, p in zip(runs, ps, strict=True)]


def _encoder_kwargs(p: dict) -> dict:
    """A continuous run's encoder and evaluation settings as `fit` arguments. `fit_run` and
    `fit_runs` read them from the parameters already (`fitting.fit_kwargs`); a caller may
    still pass them, and they then win over the parameters."""
    hidden = tuple(int(h) for h in str(p.get("hidden", "")).split("x") if h)
    return {
        "hidden": hidden,
        "features": p.get("features", "raw"),
        "eval_samples": int(p["eval_samples"]),
    }


def _continuous_metrics(run, d, p: dict, metrics: list[str]) -> dict:
    """One run's metrics: `d` is the distribution as the task built it (`run.dist` may be
    its resolved form)."""
    m = run.metrics
    out = {k: float(m[k]) for k in metrics if k in m}
    gauss = canonical_gaussian(d)
    if gauss is not None:  # closed forms (docs/theory.md T6)
        out["product_std"], out["product_std_se"] = opt.gaussian_product_std(gauss.rho), 0.0
        out["bilinear_floor"] = opt.gaussian_bilinear_floor(gauss.rho)
        out["joint_std"], out["joint_std_se"] = math.sqrt(gauss.pmi_variance()), 0.0
    else:
        out["product_std"], out["product_std_se"] = _mc_product_std(d, int(p["seed"]))
        if "joint_std" in metrics:
            out["joint_std"], out["joint_std_se"] = _mc_joint_std(d, int(p["seed"]))
    out["stopped_at"] = NAN if run.stopped_at is None else float(run.stopped_at)
    return {k: out.get(k, NAN) for k in metrics}


def _mc_joint_std(d, seed: int, n: int = 100_000) -> tuple[float, float]:
    """sd of PMI under p(x, y) on n paired draws of the joint (of the base, for a shuffled-pairs
    control), with its delta-method se."""
    joint = d.base if isinstance(d, ShuffledPairs) else d
    x, y = joint.sample(n, seed=PROBE_SEED_OFFSET + 2 * seed + 7)
    v = joint.pmi(x, y)
    sq = (v - v.mean()) ** 2
    sd = float(sq.mean().sqrt())
    return sd, float(sq.std() / math.sqrt(n)) / (2 * sd)


def _mc_product_std(d, seed: int, n: int = 1500) -> tuple[float, float]:
    """sd of PMI under p(x)p(y) on an n×n grid of independent draws, with its delta-method se."""
    x, _ = d.sample(n, seed=PROBE_SEED_OFFSET + 2 * seed)
    _, y = d.sample(n, seed=PROBE_SEED_OFFSET + 2 * seed + 1)
    g = d.pmi_matrix(x, y)
    sq = (g - g.mean()) ** 2
    sd = float(sq.mean().sqrt())
    se = float(M._mc_se(sq)) / (2 * sd)
    return sd, se

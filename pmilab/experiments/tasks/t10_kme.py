"""T10's task: a KME head on a joint with a continuous latent (`ring:...`), its Monte Carlo PMI
errors, its calibration cases and its bandwidth (docs/theory.md T10).

A run is `continuous`'s metrics (rel = pmi_rmse_product / product_std, Monte Carlo), plus
- `rel_plus_half`, `rel_plus_double`: the trained head's logits on the evaluation grid plus a
  random field that raises its relative error by 0.5x / 2x the tolerance (`t2_calibration`'s
  `grid_calibration`, the same cases as T2d's);
- `sigma_final`: the head's bandwidth at the end of training (learned, or the fixed value;
  the run parameter `sigma` is its initial value);
- `spacing`: the mean distance from each of an input's M points to its nearest other point,
  over the x and y point sets of held-out draws (NaN at M = 1), and `sigma_over_spacing`:
  THEORY.md's "kernel bandwidth against the spacing of the points". MLP encoders can rescale
  their points, so only the ratio is meaningful.

The bandwidth is fixed (not learned) by naming the head `FIXED_KME`, this module's
`FixedBandwidthKME` (a `pmilab.similarity.KME` with learn_sigma=False), through the registry's
import-path heads.
"""

from __future__ import annotations

import math

import torch

from pmilab.experiments.tasks.catalog import make_dist
from pmilab.experiments.tasks.continuous import CONTINUOUS_METRICS, _continuous_metrics
from pmilab.experiments.tasks.fitting import NAN, PROBE_SEED_OFFSET, fit_runs
from pmilab.experiments.tasks.t2_calibration import CALIBRATION_METRICS, grid_calibration
from pmilab.similarity.kme import KME

BANDWIDTH_METRICS = ["sigma_final", "spacing", "sigma_over_spacing"]
T10_METRICS = CONTINUOUS_METRICS + CALIBRATION_METRICS + BANDWIDTH_METRICS
FIXED_KME = "pmilab.experiments.tasks.t10_kme:FixedBandwidthKME"
SPACING_SAMPLES = 512  # held-out draws whose point sets measure the spacing


class FixedBandwidthKME(KME):
    """The KME head with its bandwidth fixed at `sigma` (T10c)."""

    def __init__(self, sigma: float = 0.5) -> None:
        super().__init__(sigma=sigma, learn_sigma=False)


def point_spacing(run, d, seed: int) -> float:
    """Mean nearest-neighbour distance within a point set, over the x and y sets of
    SPACING_SAMPLES held-out draws; NaN with one point."""
    x, y = d.sample(SPACING_SAMPLES, seed=PROBE_SEED_OFFSET + 2 * seed + 11)
    model = run.model
    gaps = []
    with torch.no_grad():
        for enc, v in ((model.enc_x, x), (model.enc_y, y)):
            pts = model._encode(enc, run._input(v, "x"))[0]  # (n, M, d)
            if pts.ndim != 3 or pts.shape[1] < 2:
                return NAN
            dist = torch.cdist(pts, pts)
            dist = dist + torch.diag(torch.full((pts.shape[1],), math.inf, device=dist.device))
            gaps.append(dist.min(-1).values.mean())
    return float(torch.stack(gaps).mean())


def t10_cell(ps: list[dict], tol: float) -> list[dict]:
    """T10's runs of one cell (parameters equal but for "seed"), trained as one batched
    computation, with `T10_METRICS`. `tol`: the calibration cases' tolerance (the claim's
    REACH_TOL_MC, bound with functools.partial: a task never imports a claim)."""
    d = make_dist(ps[0]["dist"])
    runs = fit_runs(d, ps)
    out = []
    for run, p in zip(runs, ps, strict=True):
        m = _continuous_metrics(run, d, p, CONTINUOUS_METRICS)
        m.update(grid_calibration(run, m["product_std"], tol))
        sigma = float(run.model.head.sigma.detach())
        spacing = point_spacing(run, d, int(p["seed"]))
        m.update(sigma_final=sigma, spacing=spacing, sigma_over_spacing=sigma / spacing)
        out.append({k: m[k] for k in T10_METRICS})
    return out


def t10_run(p: dict, tol: float) -> dict:
    """One T10 run: `t10_cell([p], tol)[0]`."""
    return t10_cell([p], tol)[0]

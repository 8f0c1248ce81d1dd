"""T1d's task: the InfoNCE MI estimate log N − loss_N against its bounds, per batch size N.

Per run (one seed) and batch size N, on about `pairs` held-out positive pairs in batches of N:
- `mi_head_N`: the trained head's estimate (mean over batches) and its SE across batches;
  `max_head_N` its largest value on one batch; `mi_pmi_N` the exact PMI critic's;
- `bound_N` = log N − B_N (B_N = `theory.optimum.infonce_loss_bound`, exact);
- `mi_shuf_N`: the head on broken pairs (each batch's y's rolled by one place), a control;
- with `cal_tol` > 0, T1d's calibration pair: `mi_cal_near_N`, `mi_cal_half_N`, the estimate
  of the head's table with the rows of a random set of x states (drawn per seed) set to a
  constant, so that those rows carry no information and their one-sided loss is exactly log N.
  The set's p(x) mass is the one closest to 2 (near) and 0.5 (half) times `cal_tol`
  (`cal_mass_near`, `cal_mass_half`): it lowers the estimate by that fraction of itself, so it
  raises the relative shortfall (log N − estimate) / log N by mass · (1 − shortfall).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pmilab.experiments.tasks.catalog import make_dist
from pmilab.experiments.tasks.fitting import PROBE_SEED_OFFSET, fit_run, fit_runs
from pmilab.stats import mean_se
from pmilab.theory import optimum as opt

CAL_NEAR = 2.0  # the near miss: wrong by 2x the tolerance, must FAIL
CAL_HALF = 0.5  # within tolerance: wrong by 0.5x, must PASS
CAL_SEED_OFFSET = PROBE_SEED_OFFSET + 7727  # the blanked rows' draw, apart from every other


def saturation_metrics(sizes: list[int]) -> list[str]:
    cols = [
        "mutual_information",
        "pmi_delta",
        "pmi_rmse_product",
        "product_std",
        "cal_mass_near",
        "cal_mass_half",
    ]
    for n in sizes:
        cols += [
            f"mi_head_N{n}",
            f"mi_head_se_N{n}",
            f"mi_pmi_N{n}",
            f"mi_pmi_se_N{n}",
            f"bound_N{n}",
            f"max_head_N{n}",
            f"mi_shuf_N{n}",
            f"mi_shuf_se_N{n}",
            f"mi_cal_near_N{n}",
            f"mi_cal_half_N{n}",
        ]
    return cols


def mi_saturation(p: dict) -> dict:
    """T1d: log N − one-sided InfoNCE of a trained tabular head and of the exact PMI critic on
    held-out batches of each size N, beside the lower bound log N − B_N (and − 2Δ for the head)."""
    d = make_dist(p["dist"])
    return _saturation(fit_run(d, p), d, p)


def mi_saturations(ps: list[dict]) -> list[dict]:
    """`mi_saturation` for each seed of a cell, trained as one batched computation."""
    d = make_dist(ps[0]["dist"])
    return [_saturation(run, d, p) for run, p in zip(fit_runs(d, ps), ps, strict=True)]


def blank_rows(px: torch.Tensor, mass: float, seed: int) -> tuple[torch.Tensor, float]:
    """(rows, their p(x) mass): a random prefix (drawn from `seed`) of a permutation of the x
    states whose mass is the closest to `mass` (at least one state)."""
    g = torch.Generator().manual_seed(CAL_SEED_OFFSET + int(seed))
    perm = torch.randperm(px.numel(), generator=g)
    cum = px.to(torch.float64)[perm].cumsum(0)
    k = int(torch.argmin((cum - mass).abs())) + 1
    return perm[:k], float(cum[k - 1])


def _saturation(run, d, p: dict) -> dict:
    table, pmi = run.logit_table().to(torch.float64), d.pmi_table().to(torch.float64)
    sizes = [int(s) for s in str(p["sizes"]).split("/")]
    out = {
        "mutual_information": float(d.mutual_information()),
        "pmi_delta": float(run.metrics["pmi_delta"]),
        "pmi_rmse_product": float(run.metrics["pmi_rmse_product"]),
        "product_std": opt.product_std(pmi, d.px, d.py),
    }
    tol, seed = float(p.get("cal_tol") or 0), int(p["seed"])
    cal = {}
    if tol > 0:
        for name, k in (("near", CAL_NEAR), ("half", CAL_HALF)):
            rows, mass = blank_rows(d.px, k * tol, seed)
            t = table.clone()
            t[rows] = 0.0  # a constant row: its one-sided loss is log N, its estimate 0
            cal[name], out[f"cal_mass_{name}"] = t, mass
    pairs = int(p["pairs"])
    for n in sizes:
        k = max(8, pairs // n)  # batches: about `pairs` positive pairs per size
        x, y = d.sample(n * k, seed=PROBE_SEED_OFFSET + seed * 7919 + n)
        x, y = x.view(k, n), y.view(k, n)
        head, crit = estimates(table, x, y), estimates(pmi, x, y)
        # control: the same head on broken pairs (each batch's y's rolled by one place)
        shuf = estimates(table, x, y.roll(1, dims=1))
        est_head, est_pmi, est_shuf = mean_se(head), mean_se(crit), mean_se(shuf)
        out[f"mi_head_N{n}"], out[f"mi_head_se_N{n}"] = float(est_head), est_head.se
        out[f"mi_pmi_N{n}"], out[f"mi_pmi_se_N{n}"] = float(est_pmi), est_pmi.se
        out[f"mi_shuf_N{n}"], out[f"mi_shuf_se_N{n}"] = float(est_shuf), est_shuf.se
        out[f"max_head_N{n}"] = float(head.max())
        out[f"bound_N{n}"] = math.log(n) - opt.infonce_loss_bound(d.table, n)
        for name, t in cal.items():
            out[f"mi_cal_{name}_N{n}"] = float(estimates(t, x, y).mean())
    return {k: out.get(k, math.nan) for k in saturation_metrics(sizes)}


def estimates(table: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(k,) log N − one-sided InfoNCE of k batches: x, y (k, N) state indices, logits
    table[x_i, y_j]; per batch, `losses.infonce_mi_estimate(table[x_b][:, y_b])`, vectorised
    over the batches (about 1M logits at a time)."""
    k, n = x.shape
    out, step = [], max(1, 2**20 // n**2)
    for s in range(0, k, step):
        lg = table[x[s : s + step, :, None], y[s : s + step, None, :]]  # (b, N, N)
        target = torch.arange(n).expand(lg.shape[0], n)
        # cross_entropy takes classes on dim 1: (b, j, i) for x_i -> y_j
        loss = F.cross_entropy(lg.transpose(1, 2), target, reduction="none").mean(1)
        out.append(math.log(n) - loss)
    return torch.cat(out)

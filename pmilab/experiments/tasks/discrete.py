"""Tasks on discrete joints: exact PMI errors, rank, floors and T3's probe (T5's tasks: `t5_heads`)."""

from __future__ import annotations

import numpy as np
import torch

from pmilab import registry
from pmilab.experiments.tasks.catalog import make_dist
from pmilab.experiments.tasks.fitting import NAN, PROBE_SEED_OFFSET, fit_run, fit_runs
from pmilab.experiments.tasks.probe import head_t3_quantities
from pmilab.losses import symmetric_infonce
from pmilab.theory import optimum as opt

DISCRETE_METRICS = [
    "pmi_rmse_product",
    "pmi_rmse_joint",
    "pmi_delta",
    "pmi_corr",
    "excess_loss",
    "excess_loss_one_sided",
    "mi_infonce",
    "mutual_information",
    "product_std",
    "pmi_half_range",
    "row_offset_sd",
    "rank",
    "rank_floor",
    "cap_floor",
    "logit_scale",
    "final_loss",
    "stopped_at",
    "cond_entropy",
    "epsilon",
    "epsilon_ens",
    "constructed_excess",
    "ensemble_excess",
    "probe_excess",
    "probe_slack",
    "probe_n",
    "probe_dim",
    "risk_bound",
    "probe_tightness",
]


def discrete_head(p: dict) -> dict:
    """Train a head on a discrete joint; exact PMI errors, rank, floors and (probe_n > 0) T3."""
    return _discrete_metrics(fit_run(make_dist(p["dist"]), p), p)


def discrete_heads(ps: list[dict]) -> list[dict]:
    """`discrete_head` for each seed of a cell, trained as one batched computation."""
    runs = fit_runs(make_dist(ps[0]["dist"]), ps)
    return [_discrete_metrics(run, p) for run, p in zip(runs, ps, strict=True)]


def _batched_symmetric(table: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(k,) symmetric InfoNCE of k batches: x, y (k, N) state indices, logits table[x_i, y_j].

    No task uses it since T5c moved to `t5_heads.batch_terms`; kept for
    tests/experiments/test_claims_smoke.py."""
    out, step = [], max(1, 2**20 // x.shape[1] ** 2)  # ~1M logits at a time
    for s in range(0, x.shape[0], step):
        lg = table[x[s : s + step, :, None], y[s : s + step, None, :]]  # (b, N, N)
        out.append(symmetric_infonce(lg))
    return torch.cat(out)


def _discrete_metrics(run, p: dict) -> dict:
    d = run.dist
    m = run.metrics
    pmi, table = d.pmi_table(), run.logit_table()
    px, py = d.px, d.py
    r = (table - pmi).numpy()
    offsets = r @ py.numpy()  # (nx,) E_{p(y)}[ℓ − PMI | x]: the c(x) of a one-sided optimum
    cmean = float(px.numpy() @ offsets)
    out = {k: float(m.get(k, NAN)) for k in DISCRETE_METRICS if k in m}
    out.update(
        product_std=opt.product_std(pmi, px, py),
        pmi_half_range=opt.pmi_half_range(pmi),
        row_offset_sd=float(np.sqrt(px.numpy() @ (offsets - cmean) ** 2)),
        rank=opt.numerical_rank(table, rtol=1e-5),  # float32 training: 1e-5 is above roundoff
        rank_floor=opt.rank_floor(pmi, px, py, int(p["dim"]))
        if registry.is_builtin(p["similarity"], "linear")  # a rank-d bilinear table
        else NAN,
        cap_floor=opt.cap_floor(pmi, px, py, float(p["logit_cap"]))
        if float(p.get("logit_cap") or 0) > 0
        else NAN,
        logit_scale=_logit_scale(run),
        stopped_at=NAN if run.stopped_at is None else float(run.stopped_at),
    )
    n_probe = int(p.get("probe_n") or 0)
    if n_probe:
        out.update(head_t3_quantities(run, n_probe, PROBE_SEED_OFFSET + int(p["seed"])))
        out["probe_n"] = n_probe
    return {k: out.get(k, NAN) for k in DISCRETE_METRICS}


def _logit_scale(run) -> float:
    scale = getattr(run.model.head, "scale", None)
    if scale is None:
        return NAN
    with torch.no_grad():
        return float(scale())

"""Task functions the sweep runner executes: `task(params: dict) -> metrics dict`.

Each trains (or samples) from plain-text parameters only, with explicit seeds, so a run is
reproducible from its row of the results table. The metric names of every task are listed in
the `*_METRICS` constants (the sweep's table columns); inapplicable ones are NaN.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pmilab import metrics as M
from pmilab.experiments.catalog import make_dist
from pmilab.experiments.probe import t3_quantities
from pmilab.theory import optimum as opt

NAN = float("nan")
PROBE_SEED_OFFSET = 1_000_003  # held-out probe draws never reuse a training seed

FIT_KEYS = (
    "similarity",
    "dim",
    "points",
    "normalize",
    "bias",
    "logit_cap",
    "objective",
    "population",
    "batch_size",
    "steps",
    "lr",
    "seed",
)

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
]

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
# pairs (metrics.pmi_rmse_product_above), to show where the error lies.
INVARIANCE_METRICS = CONTINUOUS_METRICS + ["pmi_rmse_product_above"]

MC_METRICS = ["mi_exact", "mi_exact_se", "pmi_mean", "pmi_mean_se", "z"]


def _fit_kwargs(p: dict) -> dict:
    kw = {k: p[k] for k in FIT_KEYS if k in p and p[k] != ""}
    for k in ("normalize", "bias", "population"):
        if k in kw:
            kw[k] = bool(int(kw[k]))
    if "logit_cap" in kw and (kw["logit_cap"] is None or float(kw["logit_cap"]) <= 0):
        kw["logit_cap"] = None  # 0 in the table means "no cap"
    return kw


def _fit(dist, p: dict, **extra):
    from pmilab.training import fit

    return fit(dist, progress=False, device="cpu", threads=1, **_fit_kwargs(p), **extra)


def discrete_head(p: dict) -> dict:
    """Train a head on a discrete joint; exact PMI errors, rank, floors and (probe_n > 0) T3."""
    return _discrete_metrics(_fit(make_dist(p["dist"]), p), p)


BATCH_METRICS = DISCRETE_METRICS + ["lossn_head", "lossn_pmi", "lossn_diff", "lossn_diff_se"]


def batch_head(p: dict) -> dict:
    """`discrete_head` plus T1b at the training batch size N: the expected symmetric loss_N of
    the trained head against that of ℓ = PMI on the same held-out batches (paired difference,
    with its standard error across batches). T1b: PMI + C minimises E[loss_N], so the head can
    not beat PMI beyond Monte Carlo noise."""
    d = make_dist(p["dist"])
    run = _fit(d, p)
    out = _discrete_metrics(run, p)
    n = int(p["batch_size"])
    k = max(64, int(p["eval_pairs"]) // n)
    x, y = d.sample(n * k, seed=PROBE_SEED_OFFSET + int(p["seed"]))
    x, y = x.view(k, n), y.view(k, n)
    table, pmi = run.logit_table(), d.pmi_table()
    head, crit = _batched_symmetric(table, x, y), _batched_symmetric(pmi, x, y)
    diff = head - crit
    out.update(
        lossn_head=float(head.mean()),
        lossn_pmi=float(crit.mean()),
        lossn_diff=float(diff.mean()),
        lossn_diff_se=float(diff.std() / math.sqrt(k)),
    )
    return out


def _batched_symmetric(table: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(k,) symmetric InfoNCE of k batches: x, y (k, N) state indices, logits table[x_i, y_j]."""
    out, step = [], max(1, 2**20 // x.shape[1] ** 2)  # ~1M logits at a time
    for s in range(0, x.shape[0], step):
        lg = table[x[s : s + step, :, None], y[s : s + step, None, :]]  # (b, N, N)
        diag = lg.diagonal(dim1=1, dim2=2)  # (b, N) positives
        row = (torch.logsumexp(lg, 2) - diag).mean(1)
        col = (torch.logsumexp(lg, 1) - diag).mean(1)
        out.append(0.5 * (row + col))
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
        if p["similarity"] == "linear"
        else NAN,
        cap_floor=opt.cap_floor(pmi, px, py, float(p["logit_cap"]))
        if float(p.get("logit_cap") or 0) > 0
        else NAN,
        logit_scale=_logit_scale(run),
        stopped_at=NAN if run.stopped_at is None else float(run.stopped_at),
    )
    n_probe = int(p.get("probe_n") or 0)
    if n_probe:
        out.update(t3_quantities(run, n_probe, PROBE_SEED_OFFSET + int(p["seed"])))
        out["probe_n"] = n_probe
    return {k: out.get(k, NAN) for k in DISCRETE_METRICS}


def _logit_scale(run) -> float:
    scale = getattr(run.model.head, "scale", None)
    if scale is None:
        return NAN
    with torch.no_grad():
        return float(scale())


def continuous_head(p: dict, metrics: list[str] = CONTINUOUS_METRICS) -> dict:
    """Train a head on a continuous joint; Monte Carlo PMI errors with standard errors."""
    d = make_dist(p["dist"])
    hidden = tuple(int(h) for h in str(p.get("hidden", "")).split("x") if h)
    run = _fit(
        d, p, hidden=hidden, features=p.get("features", "raw"), eval_samples=int(p["eval_samples"])
    )
    m = run.metrics
    out = {k: float(m[k]) for k in metrics if k in m}
    rho = getattr(d, "rho", None)
    if rho is not None and type(d).__name__ == "Gaussian":
        out["product_std"], out["product_std_se"] = opt.gaussian_product_std(rho), 0.0
        out["bilinear_floor"] = opt.gaussian_bilinear_floor(rho)
    else:
        out["product_std"], out["product_std_se"] = _mc_product_std(d, int(p["seed"]))
    out["stopped_at"] = NAN if run.stopped_at is None else float(run.stopped_at)
    return {k: out.get(k, NAN) for k in metrics}


def invariance_head(p: dict) -> dict:
    """`continuous_head` plus `pmi_rmse_product_above` (T6)."""
    return continuous_head(p, INVARIANCE_METRICS)


def _mc_product_std(d, seed: int, n: int = 1500) -> tuple[float, float]:
    """sd of PMI under p(x)p(y) on an n×n grid of independent draws, with its delta-method se."""
    x, _ = d.sample(n, seed=PROBE_SEED_OFFSET + 2 * seed)
    _, y = d.sample(n, seed=PROBE_SEED_OFFSET + 2 * seed + 1)
    g = d.pmi_matrix(x, y)
    sq = (g - g.mean()) ** 2
    sd = float(sq.mean().sqrt())
    se = float(M._mc_se(sq)) / (2 * sd)
    return sd, se


def mc_check(p: dict) -> dict:
    """E_p[PMI] by Monte Carlo against the exact I(X;Y) (T6): z = (MC − exact) / combined SE."""
    from pmilab.dists import builtin

    d = builtin()[p["dist"]]
    x, y = d.sample(int(p["n"]), seed=int(p["seed"]))
    v = d.pmi(x, y)
    mean, se = float(v.mean()), float(v.std() / math.sqrt(v.numel()))
    mi = d.mutual_information()
    mi_se = float(getattr(mi, "se", 0.0))
    z = (mean - float(mi)) / math.sqrt(se**2 + mi_se**2)
    return {
        "mi_exact": float(mi),
        "mi_exact_se": mi_se,
        "pmi_mean": mean,
        "pmi_mean_se": se,
        "z": z,
    }


def saturation_metrics(sizes: list[int]) -> list[str]:
    cols = ["mutual_information", "pmi_delta", "pmi_rmse_product", "product_std"]
    for n in sizes:
        cols += [
            f"mi_head_N{n}",
            f"mi_head_se_N{n}",
            f"mi_pmi_N{n}",
            f"mi_pmi_se_N{n}",
            f"bound_N{n}",
            f"max_head_N{n}",
        ]
    return cols


def mi_saturation(p: dict) -> dict:
    """T1c: log N − one-sided InfoNCE of a trained tabular head and of the exact PMI critic on
    held-out batches of each size N, beside the lower bound log N − B_N (and − 2Δ for the head)."""
    d = make_dist(p["dist"])
    run = _fit(d, p)
    table, pmi = run.logit_table(), d.pmi_table()
    sizes = [int(s) for s in str(p["sizes"]).split("/")]
    out = {
        "mutual_information": float(d.mutual_information()),
        "pmi_delta": float(run.metrics["pmi_delta"]),
        "pmi_rmse_product": float(run.metrics["pmi_rmse_product"]),
        "product_std": opt.product_std(pmi, d.px, d.py),
    }
    pairs = int(p["pairs"])
    for n in sizes:
        k = max(8, pairs // n)  # batches: about `pairs` positive pairs per size
        x, y = d.sample(n * k, seed=PROBE_SEED_OFFSET + int(p["seed"]) * 7919 + n)
        x, y = x.view(k, n), y.view(k, n)
        head = torch.stack([_estimates(table[x[b]][:, y[b]]) for b in range(k)])
        crit = torch.stack([_estimates(pmi[x[b]][:, y[b]]) for b in range(k)])
        out[f"mi_head_N{n}"], out[f"mi_head_se_N{n}"] = _mean_se(head)
        out[f"mi_pmi_N{n}"], out[f"mi_pmi_se_N{n}"] = _mean_se(crit)
        out[f"max_head_N{n}"] = float(head.max())
        out[f"bound_N{n}"] = math.log(n) - opt.infonce_loss_bound(d.table, n)
    return out


def _estimates(logits: torch.Tensor) -> torch.Tensor:
    from pmilab.losses import infonce_mi_estimate

    return infonce_mi_estimate(logits.to(torch.float64))


def _mean_se(v: torch.Tensor) -> tuple[float, float]:
    return float(v.mean()), float(v.std() / math.sqrt(v.numel()))

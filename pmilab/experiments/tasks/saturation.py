"""T1d's task: the InfoNCE MI estimate log N − loss_N against its bounds, per batch size N."""

from __future__ import annotations

import math

import torch

from pmilab.experiments.tasks.catalog import make_dist
from pmilab.experiments.tasks.fitting import PROBE_SEED_OFFSET, fit_run
from pmilab.stats import mean_se
from pmilab.theory import optimum as opt


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
            f"mi_shuf_N{n}",
            f"mi_shuf_se_N{n}",
        ]
    return cols


def mi_saturation(p: dict) -> dict:
    """T1d: log N − one-sided InfoNCE of a trained tabular head and of the exact PMI critic on
    held-out batches of each size N, beside the lower bound log N − B_N (and − 2Δ for the head)."""
    d = make_dist(p["dist"])
    run = fit_run(d, p)
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
        # control: the same head on broken pairs (each batch's y's rolled by one place)
        shuf = torch.stack([_estimates(table[x[b]][:, y[b].roll(1)]) for b in range(k)])
        est_head, est_pmi, est_shuf = mean_se(head), mean_se(crit), mean_se(shuf)
        out[f"mi_head_N{n}"], out[f"mi_head_se_N{n}"] = float(est_head), est_head.se
        out[f"mi_pmi_N{n}"], out[f"mi_pmi_se_N{n}"] = float(est_pmi), est_pmi.se
        out[f"mi_shuf_N{n}"], out[f"mi_shuf_se_N{n}"] = float(est_shuf), est_shuf.se
        out[f"max_head_N{n}"] = float(head.max())
        out[f"bound_N{n}"] = math.log(n) - opt.infonce_loss_bound(d.table, n)
    return out


def _estimates(logits: torch.Tensor) -> torch.Tensor:
    from pmilab.losses import infonce_mi_estimate

    return infonce_mi_estimate(logits.to(torch.float64))

"""Score a trained model against the exact PMI with the docs/theory.md metrics.

Discrete joints: exact on the whole table (weights p(x)p(y) or p(x, y)), plus `mi_infonce` on
held-out batches. Continuous joints: Monte Carlo on held-out draws (docs/theory.md): n paired draws
for the joint quantities and the n×n grid of x against an independent draw of y for the
product ones, each with `<name>_se`.
"""

from __future__ import annotations

import math

import torch

from pmilab import metrics as M
from pmilab.training.run import Run

# Held-out draws use seeds far from the training stream (training draws from seeds < 2**62).
EVAL_SEED_OFFSET = 2**62
# Logits count as constant when their range over the evaluated pairs is within this fraction
# of their magnitude (at least 1): 8 float32 ulps (eps = 1.2e-7), i.e. equal up to rounding.
CONSTANT_RTOL = 1e-6


def _constant(v: torch.Tensor) -> bool:
    return float(v.max() - v.min()) <= CONSTANT_RTOL * max(1.0, float(v.abs().max()))


def constant_logits(logits: torch.Tensor, pmi: torch.Tensor) -> bool:
    """True when the learned logits are constant (zero variance up to float32 rounding) on the
    evaluated pairs while the exact PMI is not: a degenerate run (e.g. a collapsed logit scale),
    whose pmi_corr is undefined. Pairs with PMI = -inf (p(x, y) = 0) are left out."""
    keep = torch.isfinite(pmi)
    lg, pm = logits[keep].to(torch.float64), pmi[keep].to(torch.float64)
    if lg.numel() < 2 or not torch.isfinite(lg).all():
        return False
    return _constant(lg) and not _constant(pm)


def _mi_infonce(run: Run, seed: int) -> M.Estimate:
    n, k = run.config.batch_size, run.config.eval_batches
    x, y = run.dist.sample(n * k, seed=seed)
    if run.dist.discrete:  # same value, no N×N matrices
        return M.mi_infonce_table(run.logit_table(), x.view(k, n), y.view(k, n))
    mats = torch.stack(
        [run.logit_matrix(x[i * n : (i + 1) * n], y[i * n : (i + 1) * n]) for i in range(k)]
    )
    return M.mi_infonce(mats)


def discrete_metrics(run: Run) -> dict:
    d = run.dist
    table = run.logit_table()  # (nx, ny) float64
    pmi = d.pmi_table()
    product = d.px[:, None] * d.py[None, :]
    mi = _mi_infonce(run, EVAL_SEED_OFFSET + run.config.seed)
    within, offset = M.pmi_row_offset(table, pmi, d.px, d.py)
    return {
        "pmi_rmse_product": float(M.pmi_rmse_product(table, pmi, product)),
        "pmi_rmse_joint": float(M.pmi_rmse_joint(table, pmi, d.table)),
        "pmi_delta": float(M.pmi_delta(table, pmi, product)),
        "pmi_corr": float(M.pmi_corr(table, pmi, product)),
        "pmi_within_row_rmse": float(within),
        "pmi_row_offset_sd": float(offset),
        "excess_loss": float(M.excess_loss(table, d.table)),
        "excess_loss_one_sided": float(M.excess_loss(table, d.table, "one_sided")),
        "mi_infonce": float(mi),
        "mi_infonce_se": mi.se,
        "mutual_information": float(d.mutual_information()),
        "log_batch": math.log(run.config.batch_size),
        "constant_logits": constant_logits(table, pmi),
    }


def continuous_metrics(run: Run) -> dict:
    d, n = run.dist, run.config.eval_samples
    seed = EVAL_SEED_OFFSET + run.config.seed
    x, y = d.sample(n, seed=seed)
    _, y_ind = d.sample(
        n, seed=seed + 1
    )  # independent y: the grid x × y_ind is product-distributed
    paired, pmi_paired = run.logits(x, y), d.pmi(x, y)
    grid, pmi_grid = run.logit_matrix(x, y_ind), d.pmi_matrix(x, y_ind)
    out = {}
    for name, value in (
        ("pmi_rmse_product", M.pmi_rmse_product(grid, pmi_grid)),
        ("pmi_rmse_joint", M.pmi_rmse_joint(paired, pmi_paired)),
        ("pmi_corr", M.pmi_corr(grid, pmi_grid)),
        ("mi_infonce", _mi_infonce(run, seed + 2)),
    ):
        out[name], out[f"{name}_se"] = float(value), value.se
    out["pmi_delta"] = float(M.pmi_delta(grid, pmi_grid))
    out["pmi_rmse_product_above"] = float(M.pmi_rmse_product_above(grid, pmi_grid))
    mi = d.mutual_information()
    out["mutual_information"] = float(mi)
    out["mutual_information_se"] = float(getattr(mi, "se", 0.0))
    out["log_batch"] = math.log(run.config.batch_size)
    out["constant_logits"] = constant_logits(grid, pmi_grid)
    return out


def evaluate(run: Run) -> dict:
    """docs/theory.md metrics of a run (exact for discrete joints, Monte Carlo otherwise)."""
    return discrete_metrics(run) if run.dist.discrete else continuous_metrics(run)

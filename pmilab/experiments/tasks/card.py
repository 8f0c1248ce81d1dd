"""The report card's tasks (`pmilab check`, `pmilab.experiments.check`): any head, named by its
spec in the run parameter `similarity` (every worker resolves it), trained as the heads sweep
trains its heads (`claims/heads.py`), with the columns the card judges.

- `card_cell(ps, tol)`: on a latent joint, `t2_calibration.heads_cell`'s columns (the exact
  PMI errors and T3's quantities of `discrete._discrete_metrics`, and T2's calibration columns
  `rel_plus_half`, `rel_plus_double`), the contract columns, and, where the run parameter
  `lossn_sizes` names batch sizes N ("4/16"), the held-out loss_N gap to PMI's at each N,
  scored by T5c's own evaluation (`t5_heads._lossn_metrics`: the same held-out batches, its
  calibration candidates α·PMI with α − 1 = `lossn_near` / `lossn_half`, and PMI plus noise);
- `card_gauss_cell(ps, tol)`: on a continuous joint, `t2_calibration.gauss_cell`'s columns
  plus the contract columns.

The contract columns, measured on the trained model on `CONTRACT_PAIRS` draws of the joint:
`paired_gap`, max_i |paired_logits(x_i, y_i) − logit_matrix(x, y)_ii| / (1 + |logit_matrix_ii|)
(a head whose two forms disagree scores pairs in training differently from how it is
evaluated), and `nonfinite`, the number of non-finite logits among both.
"""

from __future__ import annotations

import math

import torch

from pmilab.experiments.tasks.catalog import make_dist
from pmilab.experiments.tasks.continuous import CONTINUOUS_METRICS, _continuous_metrics
from pmilab.experiments.tasks.discrete import _discrete_metrics
from pmilab.experiments.tasks.fitting import NAN, PROBE_SEED_OFFSET, fit_runs
from pmilab.experiments.tasks.t2_calibration import (
    GAUSS_METRICS,
    HEADS_METRICS,
    grid_calibration,
    table_calibration,
)
from pmilab.experiments.tasks.t5_heads import _lossn_metrics

CONTRACT_SEED = PROBE_SEED_OFFSET + 43  # apart from the other tasks' draws (t5_heads: + 17 .. 31)
CONTRACT_PAIRS = 64
CONTRACT_METRICS = ["paired_gap", "nonfinite"]
# The loss_N candidates of T5c's evaluation: the head, α·PMI (near miss, half-size) and PMI
# plus noise; each gives `<key>_diff` and `<key>_diff_se` at every N.
LOSSN_KEYS = ("lossn", "lossn_near", "lossn_half", "lossn_noise")
CARD_GAUSS_METRICS = GAUSS_METRICS + CONTRACT_METRICS


def batch_sizes(p: dict) -> list[int]:
    """The N's of a run's `lossn_sizes` ("4/16" -> [4, 16]; "" -> none)."""
    return [int(s) for s in str(p.get("lossn_sizes") or "").split("/") if s]


def lossn_columns(sizes: list[int]) -> list[str]:
    return [f"{key}_diff{se}_N{n}" for n in sizes for key in LOSSN_KEYS for se in ("", "_se")]


def card_metrics(sizes: list[int]) -> list[str]:
    """The columns of `card_cell` for the card's batch sizes N."""
    return HEADS_METRICS + CONTRACT_METRICS + lossn_columns(sizes)


def contract_metrics(run, seed: int) -> dict[str, float]:
    """`paired_gap` and `nonfinite` of a trained run (module docstring)."""
    x, y = run.dist.sample(CONTRACT_PAIRS, seed=CONTRACT_SEED + int(seed))
    matrix, paired = run.logit_matrix(x, y), run.logits(x, y)
    diag = matrix.diagonal()
    bad = int((~torch.isfinite(matrix)).sum()) + int((~torch.isfinite(paired)).sum())
    if bad or paired.shape != diag.shape:
        return {"paired_gap": NAN, "nonfinite": float(bad)}
    gap = float(((paired - diag).abs() / (1.0 + diag.abs())).max())
    return {"paired_gap": gap, "nonfinite": 0.0}


def lossn_gaps(table: torch.Tensor, d, p: dict) -> dict[str, float]:
    """The head's held-out loss_N gap to PMI's at every N of `lossn_sizes`, with T5c's
    calibration and control candidates (`t5_heads._lossn_metrics`)."""
    out: dict[str, float] = {}
    for n in batch_sizes(p):
        if not bool(torch.isfinite(table).all()):
            out.update({c: NAN for c in lossn_columns([n])})
            continue
        q = {"batch_size": n, "seed": p["seed"], "eval_pairs": p["eval_pairs"], "steps": 0,
             "scale_near": p["lossn_near"], "scale_half": p["lossn_half"]}  # fmt: skip
        m = _lossn_metrics(table, d, q, 0)
        for key in LOSSN_KEYS:
            out[f"{key}_diff_N{n}"] = m[f"{key}_diff"]
            out[f"{key}_diff_se_N{n}"] = m[f"{key}_diff_se"]
    return out


def card_run(p: dict, tol: float) -> dict:
    """One run of the card on a latent joint (`card_cell` with one seed)."""
    return card_cell([p], tol)[0]


def card_cell(ps: list[dict], tol: float) -> list[dict]:
    """The seeds of one cell on a latent joint, trained as one batched computation: per seed
    `heads_cell`'s columns, the contract columns and the loss_N gaps."""
    d = make_dist(ps[0]["dist"])
    cols = card_metrics(batch_sizes(ps[0]))
    out = []
    for run, p in zip(fit_runs(d, ps), ps, strict=True):
        m = _discrete_metrics(run, p)
        table = run.logit_table()
        if bool(torch.isfinite(table).all()):
            m.update(table_calibration(run, int(p["seed"]), tol))
        m.update(contract_metrics(run, int(p["seed"])))
        m.update(lossn_gaps(table, d, p))
        out.append({k: float(m.get(k, NAN)) for k in cols})
    return out


def card_gauss_run(p: dict, tol: float) -> dict:
    """One run of the card on a continuous joint (`card_gauss_cell` with one seed)."""
    return card_gauss_cell([p], tol)[0]


def card_gauss_cell(ps: list[dict], tol: float) -> list[dict]:
    """`gauss_cell`'s columns plus the contract columns, per seed of a continuous cell."""
    d = make_dist(ps[0]["dist"])
    out = []
    for run, p in zip(fit_runs(d, ps), ps, strict=True):
        m = _continuous_metrics(run, d, p, CONTINUOUS_METRICS)
        if all(math.isfinite(m[k]) for k in ("pmi_rmse_product", "product_std")):
            m.update(grid_calibration(run, m["product_std"], tol))
        m.update(contract_metrics(run, int(p["seed"])))
        out.append({k: float(m.get(k, NAN)) for k in CARD_GAUSS_METRICS})
    return out

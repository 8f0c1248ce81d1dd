"""T1's head tasks: the shared discrete and continuous head tasks plus T1's calibration cases.

A calibration case is the claim's own measurement on a logit table (or grid) wrong by a known
amount (docs/theory.md T1, "Calibration pairs"), computed by the same metric functions as the
head's own value, on the same run and seed:

- discrete (T1a, T1c), on a run with `cal_tol` > 0 (the symmetric tabular head):
  - `t1_rel`: pmi_rmse_product / sd(PMI) of the head's table (T1a's measured value);
  - `t1_off`: the sd under p(x) of the row offsets c(x) = E_{p(y)}[ℓ − PMI | x], over sd(PMI)
    (T1c's measured value), by `metrics.pmi_row_offset`;
  - `cal_rel_near`, `cal_rel_half`: `t1_rel` of the table plus a white-noise field
    z(x, y) ~ N(0, 1), i.i.d. per cell and drawn per seed, scaled to CAL_NEAR (2) and CAL_HALF
    (0.5) times `cal_tol` · sd(PMI);
  - `cal_off_near`, `cal_off_half`: `t1_off` of the table plus row offsets c(x) ~ N(0, 1),
    i.i.d. per row and drawn per seed, scaled the same way.
- continuous (T1b), on a run with `cal_tol` > 0: `cal_rel_near`, `cal_rel_half`: the Monte Carlo
  pmi_rmse_product / sd(PMI) of the exact PMI plus white noise (per grid cell, drawn per seed,
  2 and 0.5 times `cal_tol` · sd(PMI)), on a held-out grid drawn as the run's own metric draws
  it (same seeds).

The noise's scale is its expected size in the rule's unit; the size a seed realises varies
with the draw (about 3% on the 24×20 table, 15% for the 24 row offsets), so the pair has a
real spread across seeds.
"""

from __future__ import annotations

import zlib

import torch

from pmilab import metrics as M
from pmilab.experiments.tasks.catalog import ShuffledPairs, make_dist
from pmilab.experiments.tasks.continuous import CONTINUOUS_METRICS, _continuous_metrics
from pmilab.experiments.tasks.discrete import DISCRETE_METRICS, _discrete_metrics
from pmilab.experiments.tasks.fitting import NAN, PROBE_SEED_OFFSET, fit_run, fit_runs
from pmilab.theory import optimum as opt
from pmilab.training.evaluate import EVAL_SEED_OFFSET

CAL_NEAR = 2.0  # the near miss: wrong by 2x the tolerance, must FAIL
CAL_HALF = 0.5  # within tolerance: wrong by 0.5x, must PASS
# the noise streams: far from training (seeds) and from the probe / evaluation draws
CAL_SEED_OFFSET = PROBE_SEED_OFFSET + 4241

T1_DISCRETE_METRICS = DISCRETE_METRICS + [
    "t1_rel",
    "t1_off",
    "cal_rel_near",
    "cal_rel_half",
    "cal_off_near",
    "cal_off_half",
]
T1_CONTINUOUS_METRICS = CONTINUOUS_METRICS + ["cal_rel_near", "cal_rel_half"]


def _generator(seed: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(CAL_SEED_OFFSET + 1009 * stream + int(seed))


def head_table(run) -> torch.Tensor:
    """The head's (nx, ny) logit table: the one place T1 reads it (a test plants a bias here)."""
    return run.logit_table()


def table_errors(table: torch.Tensor, d) -> tuple[float, float]:
    """(rmse / sd(PMI), row-offset sd / sd(PMI)) of a logit table on the discrete joint `d`:
    T1a's and T1c's measured values, for a head's table and for a perturbed one alike."""
    pmi = d.pmi_table()
    product = d.px[:, None] * d.py[None, :]
    sd = opt.product_std(pmi, d.px, d.py)
    rmse = float(M.pmi_rmse_product(table, pmi, product))
    _, offset = M.pmi_row_offset(table, pmi, d.px, d.py)
    return rmse / sd, float(offset) / sd


def _discrete_t1(run, p: dict) -> dict:
    out = _discrete_metrics(run, p)
    d = run.dist
    table = head_table(run)
    out["t1_rel"], out["t1_off"] = table_errors(table, d)
    tol = float(p.get("cal_tol") or 0)
    if tol > 0:
        sd = opt.product_std(d.pmi_table(), d.px, d.py)
        seed = int(p["seed"])
        field = torch.randn(table.shape, generator=_generator(seed, 1), dtype=torch.float64)
        rows = torch.randn(table.shape[0], generator=_generator(seed, 2), dtype=torch.float64)
        for name, k in (("near", CAL_NEAR), ("half", CAL_HALF)):
            out[f"cal_rel_{name}"] = table_errors(table + k * tol * sd * field, d)[0]
            out[f"cal_off_{name}"] = table_errors(table + k * tol * sd * rows[:, None], d)[1]
    return {k: out.get(k, NAN) for k in T1_DISCRETE_METRICS}


def t1_discrete_head(p: dict) -> dict:
    """`discrete_head` plus T1's measured values and calibration cases."""
    return _discrete_t1(fit_run(make_dist(p["dist"]), p), p)


def t1_discrete_heads(ps: list[dict]) -> list[dict]:
    """`t1_discrete_head` for each seed of a cell, trained as one batched computation."""
    runs = fit_runs(make_dist(ps[0]["dist"]), ps)
    return [_discrete_t1(run, p) for run, p in zip(runs, ps, strict=True)]


def _continuous_t1(run, d, p: dict) -> dict:
    out = _continuous_metrics(run, d, p, CONTINUOUS_METRICS)
    tol = float(p.get("cal_tol") or 0)
    if tol > 0 and not isinstance(d, ShuffledPairs):
        n, seed = int(p["eval_samples"]), int(p["seed"])
        # a held-out grid drawn as the run's own pmi_rmse_product draws it (training.evaluate)
        x, _ = d.sample(n, seed=EVAL_SEED_OFFSET + seed)
        _, y_ind = d.sample(n, seed=EVAL_SEED_OFFSET + seed + 1)
        pmi = d.pmi_matrix(x, y_ind).to(torch.float64)
        # a stream per joint, so that the joints' calibration cases are independent draws
        stream = 3 + zlib.crc32(str(p["dist"]).encode()) % 100_000
        z = torch.randn(pmi.shape, generator=_generator(seed, stream), dtype=torch.float64)
        sd = out["product_std"]
        for name, k in (("near", CAL_NEAR), ("half", CAL_HALF)):
            out[f"cal_rel_{name}"] = float(M.pmi_rmse_product(pmi + k * tol * sd * z, pmi)) / sd
    return {k: out.get(k, NAN) for k in T1_CONTINUOUS_METRICS}


def t1_continuous_head(p: dict) -> dict:
    """`continuous_head` plus T1b's calibration cases."""
    d = make_dist(p["dist"])
    return _continuous_t1(fit_run(d, p), d, p)


def t1_continuous_heads(ps: list[dict]) -> list[dict]:
    """`t1_continuous_head` for each seed of a cell, trained as one batched computation."""
    d = make_dist(ps[0]["dist"])
    runs = fit_runs(d, ps)
    return [_continuous_t1(run, d, p) for run, p in zip(runs, ps, strict=True)]

"""T7's rules and task pieces (docs/theory.md T7). The claim end to end at smoke size, its
control rows FAILing included, runs in test_claims_smoke.py with every other claim."""

import math

import numpy as np
import pandas as pd
import pytest

from pmilab.experiments.claims.t7 import crossing, floor_rule, reach_rule
from pmilab.experiments.claims.tolerances import REACH_TOL_MC, Z_TOL
from pmilab.experiments.tasks.pixels import (
    latent_table_kme,
    pixel_head,
    pixel_metrics,
    record_steps,
)


def test_floor_rule_allows_monte_carlo_noise_only():
    z, ok = floor_rule([1.0, 0.5], [0.01, 0.01], [0.9, 0.5])
    assert ok and z.tolist() == pytest.approx([10.0, 0.0])
    _, ok = floor_rule([0.5 - (Z_TOL - 0.5) * 0.01], [0.01], [0.5])  # within 4 SE: noise
    assert ok
    z, ok = floor_rule([0.5 - (Z_TOL + 0.5) * 0.01], [0.01], [0.5])  # beyond: a violation
    assert not ok and z[0] < -Z_TOL
    _, ok = floor_rule([0.0], [0.0], [0.3])  # an exact head below the floor
    assert not ok


def test_reach_rule_needs_the_tolerance_and_the_floor():
    def runs(rel, se, floor):
        return pd.DataFrame(
            {
                "pmi_rmse_product": rel,
                "pmi_rmse_product_se": se,
                "product_std": 1.0,
                "rank_floor_k": floor,
            }
        )

    assert reach_rule(runs([0.1, 0.14], [0.01, 0.01], 0.27), 0.0)[1]
    assert not reach_rule(runs([0.1, 0.16], [0.01, 0.01], 0.27), 0.0)[1]  # one seed outside
    # within the tolerance but not significantly below the floor: FAIL
    assert not reach_rule(runs([0.14], [0.01], 0.16), 0.0)[1]
    # a linear head at d = K is >= its floor > tolerance: FAIL by construction
    assert not reach_rule(runs([0.3], [0.001], 0.27), 0.0)[1]
    assert REACH_TOL_MC == 0.15


def test_crossing_is_the_first_window_significantly_below_log_n_minus_i():
    tr = pd.DataFrame(
        {
            "seed": 0,
            "step": [100, 200, 300, 400],
            "epochs": [1.0, 2.0, 3.0, 4.0],
            "rel": [0.8, 0.7, 0.9, 2.0],
            "train_loss": [4.6, 4.49, 4.3, 3.0],
            "train_loss_se": [0.01, 0.01, 0.01, 0.01],
            "loss_floor": 4.5,
        }
    )
    c = crossing(tr).iloc[0]
    # 4.49 is below 4.5 by 1 SE only: noise; 4.3 is 20 SE below
    assert (c.cross_step, c.cross_epochs, c.cross_rel) == (300, 3.0, 0.9)
    assert (c.best_step, c.best_rel, c.final_rel) == (200, 0.7, 2.0)
    never = crossing(tr.assign(train_loss=4.6)).iloc[0]
    assert math.isnan(never.cross_step)


def test_latent_table_kme_reaches_the_exact_pmi():
    out = latent_table_kme({"seed": 0, "eps": 0.01, "image_size": 16, "eval_n": 128})
    assert out["pmi_rmse_product"] / out["product_std"] < 1e-5
    assert out["rank_floor_k"] / out["product_std"] == pytest.approx(0.2677, abs=1e-4)


@pytest.mark.parametrize("data", ["fresh", "fixed"])
def test_pixel_head_is_deterministic_and_returns_its_columns(data):
    p = {
        "data": data,
        "n_train": 40 if data == "fixed" else 0,
        "similarity": "kme",
        "dim": 4,
        "points": 4,
        "eps": 0.01,
        "image_size": 16,
        "width": 16,
        "batch_size": 16,
        "steps": 6,
        "lr": 2e-3,
        "warmup": 2,
        "weight_decay": 0.05,
        "seed": 0,
        "records": 3,
        "eval_n": 32,
    }
    a, b = pixel_head(p), pixel_head(p)
    assert list(a) == pixel_metrics(6, 3) and record_steps(6, 3) == [2, 4, 6]
    assert np.array_equal(np.array(list(a.values())), np.array(list(b.values())), equal_nan=True)
    assert a["pmi_rmse_product"] == a["pmi_rmse_product_s6"] and a["k"] == 4
    assert math.isnan(a["rank_floor"])  # a KME run has no linear floor at its own d
    assert (a["epochs"] == 6 * 16 / 40) if data == "fixed" else math.isnan(a["epochs"])

"""T7's task pieces (docs/theory.md T7). Its verdict rules, calibration pairs and a planted
logit error at smoke size are in test_t7_verdicts.py; the claim end to end at smoke size runs in
test_claims_smoke.py with every other claim."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from pmilab import metrics
from pmilab.experiments.claims.t7 import crossing
from pmilab.experiments.tasks.pixels import (
    TABLE_METRICS,
    calibration_sizes,
    latent_table_kme,
    perturbation_field,
    pixel_head,
    pixel_metrics,
    record_steps,
)
from pmilab.pretrain.shapes import LatentShapesJoint
from pmilab.theory import optimum as opt


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


TABLE = {
    "seed": 0,
    "eps": 0.01,
    "image_size": 16,
    "eval_n": 128,
    "reach_tol": 0.15,
    "floor_tol": 0.05,
}


def test_latent_table_kme_reaches_the_exact_pmi_and_plants_known_errors():
    out = latent_table_kme(TABLE)
    assert list(out) == TABLE_METRICS
    sd = out["product_std"]
    assert out["pmi_rmse_product"] / sd < 1e-5
    assert out["rank_floor_k"] / sd == pytest.approx(0.2677, abs=1e-4)
    sizes = calibration_sizes(0.15, 0.05, out["rank_floor_k"] / sd)
    assert sizes == pytest.approx(
        {"reach_near": 0.30, "reach_half": 0.075, "floor_near": 0.1677, "floor_half": 0.2427},
        abs=1e-4,
    )
    for case, a in sizes.items():
        assert out[f"planted_{case}"] == a
        # the held-out grid samples the planted field: its estimate is a up to grid noise
        assert out[f"pmi_rmse_product_{case}"] / sd == pytest.approx(a, rel=0.05)
    again = latent_table_kme({**TABLE, "seed": 1})
    assert again["pmi_rmse_product_reach_near"] != out["pmi_rmse_product_reach_near"]


def test_perturbation_field_has_exactly_unit_size_under_the_product_measure():
    lat = LatentShapesJoint(eps=0.01).latent()
    px, py = (
        torch.as_tensor(lat.px, dtype=torch.float64),
        torch.as_tensor(lat.py, dtype=torch.float64),
    )
    f = perturbation_field(px, py, 3)
    w = torch.outer(px, py) / (px.sum() * py.sum())
    assert float((w * f).sum()) == pytest.approx(0.0, abs=1e-12)
    assert float((w * f * f).sum()) == pytest.approx(1.0, abs=1e-12)
    assert torch.equal(f, perturbation_field(px, py, 3)) and not torch.equal(
        f, perturbation_field(px, py, 4)
    )
    # PMI + C + a F has population pmi_rmse_product exactly a (the exact, weighted metric)
    pmi = LatentShapesJoint(eps=0.01).pmi_table().double()

    rmse = metrics.pmi_rmse_product(pmi + 1.7 + 0.3 * f, pmi, torch.outer(px, py))
    assert float(rmse) == pytest.approx(0.3, abs=1e-12)
    assert opt.product_std(pmi, px, py) > 0


def tiny_params(data: str, sim: str = "kme", seed: int = 0, eval_n: int = 32) -> dict:
    """A seconds-long pixel run (`tasks.pixels.pixel_head`): 6 steps of 16 tiny images."""
    return {
        "data": data,
        "n_train": 40 if data == "fixed" else 0,
        "similarity": sim,
        "dim": 4,
        "points": 4 if sim == "kme" else 1,
        "eps": 0.01,
        "image_size": 16,
        "width": 16,
        "batch_size": 16,
        "steps": 6,
        "lr": 2e-3,
        "warmup": 2,
        "weight_decay": 0.05,
        "seed": seed,
        "records": 3,
        "eval_n": eval_n,
    }


@pytest.mark.parametrize("data", ["fresh", "fixed"])
def test_pixel_head_is_deterministic_and_returns_its_columns(data):
    p = tiny_params(data)
    a, b = pixel_head(p), pixel_head(p)
    assert list(a) == pixel_metrics(6, 3) and record_steps(6, 3) == [2, 4, 6]
    assert np.array_equal(np.array(list(a.values())), np.array(list(b.values())), equal_nan=True)
    assert a["pmi_rmse_product"] == a["pmi_rmse_product_s6"] and a["k"] == 4
    assert math.isnan(a["rank_floor"])  # a KME run has no linear floor at its own d
    assert (a["epochs"] == 6 * 16 / 40) if data == "fixed" else math.isnan(a["epochs"])

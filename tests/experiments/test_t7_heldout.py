"""T7's held-out grid is drawn once per run (`tasks.pixels.heldout_draws`) and scores exactly as
the per-record draws it replaced (results/engine/t7_step.md): the same pixels, tokens and
latents, and the same numbers out of a whole `pixel_head` run."""

import numpy as np
import pytest
import torch

from pmilab.experiments.tasks import pixels
from pmilab.pretrain.shapes import LatentShapesJoint
from pmilab.pretrain.shapes_stream import ShapesStream
from tests.experiments.test_t7 import tiny_params


def fresh_draws(data, n, seed):
    """What `heldout_logits` drew at every record before."""
    images, z = data.heldout_images(n, seed + pixels.EVAL_SEED_OFFSET)
    ids, _, y = data.heldout_captions(n, seed + pixels.EVAL_SEED_OFFSET)
    return images, z, ids, y


def test_heldout_draws_are_the_per_record_draws_made_once():
    data = ShapesStream(LatentShapesJoint(eps=0.01), 8, seed=0)
    got = pixels.heldout_draws(data, 64, 3)
    for a, b in zip(got, fresh_draws(data, 64, 3), strict=True):
        assert torch.equal(a, b) if torch.is_tensor(a) else np.array_equal(a, b)
    assert pixels.heldout_draws(data, 64, 3) is got  # drawn once
    other = pixels.heldout_draws(data, 64, 4)  # another seed: another grid
    assert not np.array_equal(other[1], got[1]) or not torch.equal(other[0], got[0])


def params(data: str, sim: str) -> dict:
    return tiny_params(data, sim, seed=1, eval_n=48)


@pytest.mark.parametrize("data, sim", [("fresh", "kme"), ("fixed", "linear")])
def test_a_run_scores_as_with_fresh_draws_at_every_record(monkeypatch, data, sim):
    """Every column of a run, bit for bit, against the same run re-drawing its held-out grid
    at each record; a grid from another seed (a wrong cache key) changes the scores."""
    p = params(data, sim)
    cached = pixels.pixel_head(p)
    monkeypatch.setattr(pixels, "heldout_draws", fresh_draws)
    redrawn = pixels.pixel_head(p)
    assert list(cached) == list(redrawn)
    assert np.array_equal(
        np.array(list(cached.values())), np.array(list(redrawn.values())), equal_nan=True
    )
    monkeypatch.setattr(pixels, "heldout_draws", lambda d, n, s: fresh_draws(d, n, s + 1))
    wrong = pixels.pixel_head(p)
    assert wrong["pmi_rmse_product"] != cached["pmi_rmse_product"]

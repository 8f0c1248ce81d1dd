"""No head name outside the registry (issue 24): claims and figures select a named head's rows
with `registry.builtin_mask`, and the tasks and the scheduler read a head's declaration
(`HeadInputs`), so a plugin head gets the behaviour of what it declares, not of its name.

The heads below live in this module, named by import path (`tests.experiments.test_head_names:
...`), as a user's would be."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from pmilab import registry
from pmilab.dists import random_latent_class
from pmilab.experiments.claims import heads
from pmilab.experiments.framework.sweep import MLP_FACTOR, POINT_SET_FACTOR, run_cost
from pmilab.experiments.tasks.probe import feature_kind
from pmilab.interfaces import HeadInputs
from pmilab.similarity import KME, WPSE, Linear
from pmilab.training.config import FitConfig

HERE = "tests.experiments.test_head_names"


class MeanEmbedding(KME):
    """A plugin head on log-softmax-weighted point sets (what KME declares), not named kme."""


class SignedSets(WPSE):
    """A plugin head on signed point sets (what WPSE declares)."""


class Bilinear(Linear):
    """A plugin vector head: not the built-in linear head, whatever it inherits."""

    @classmethod
    def head_inputs(cls, dim: int, points: int) -> HeadInputs:
        return HeadInputs.vector(dim)


def test_is_builtin_names_a_builtin_head_by_name_class_or_instance():
    assert registry.is_builtin("kme", "kme") and registry.is_builtin(" kme ", "wpse", "kme")
    assert registry.is_builtin(KME, "kme") and registry.is_builtin(KME(), "kme")
    assert not registry.is_builtin("kme", "linear")
    assert not registry.is_builtin(MeanEmbedding, "kme")  # a subclass is another head
    assert not registry.is_builtin(f"{HERE}:MeanEmbedding", "kme")
    assert not registry.is_builtin("random_linear", "linear")
    assert not registry.is_builtin(float("nan"), "linear")  # a missing cell of a table
    with pytest.raises(ValueError, match="not built-in head names"):
        registry.is_builtin("kme", "cosine")


def test_builtin_mask_selects_the_rows_of_the_named_heads():
    col = pd.Series(["tabular", "kme", "wpse", f"{HERE}:MeanEmbedding", "linear", "kme"])
    assert registry.builtin_mask(col, "kme").tolist() == [0, 1, 0, 0, 0, 1]
    assert registry.builtin_mask(col, "tabular", "wpse").tolist() == [1, 0, 1, 0, 0, 0]
    assert registry.builtin_mask(col.iloc[:0], "kme").dtype == bool  # empty: still a mask
    with pytest.raises(ValueError):
        registry.builtin_mask(col.iloc[:0], "mixture")


def test_the_scheduler_costs_a_head_by_what_it_declares():
    base = {"steps": 100, "dim": 2, "points": 4}
    for sim, factor in [
        ("kme", POINT_SET_FACTOR),
        ("wpse", POINT_SET_FACTOR),
        (f"{HERE}:MeanEmbedding", POINT_SET_FACTOR),
        (f"{HERE}:SignedSets", POINT_SET_FACTOR),
        ("linear", 1.0),
        ("tabular", 1.0),
        (f"{HERE}:Bilinear", 1.0),
        ("random_linear", 1.0),  # T3's label: not a head spec
    ]:
        assert run_cost({**base, "similarity": sim}) == 100 * factor, sim
    assert run_cost({**base, "similarity": f"{HERE}:MeanEmbedding", "hidden": "8"}) == (
        100 * POINT_SET_FACTOR * MLP_FACTOR
    )


def test_the_heads_sweep_gives_point_set_heads_their_budget():
    cfg = heads.heads_config("smoke")
    assert cfg.point_steps != cfg.steps
    for sim, want in [
        ("kme", cfg.point_steps),
        ("wpse", cfg.point_steps),
        ("linear", cfg.steps),
        ("tabular", cfg.steps),
        (f"{HERE}:MeanEmbedding", cfg.point_steps),
        (f"{HERE}:Bilinear", cfg.steps),
    ]:
        assert heads.steps_for(cfg, sim, 2, 4) == want, sim


@pytest.mark.parametrize(
    "sim, kind",
    [
        ("linear", "embedding"),
        ("kme", "mean_embedding"),
        ("wpse", "profile"),
        ("tabular", "profile"),
        (f"{HERE}:MeanEmbedding", "mean_embedding"),
        (f"{HERE}:SignedSets", "profile"),
        (f"{HERE}:Bilinear", "profile"),  # T3's embedding features are the bilinear head's
    ],
)
def test_the_probe_sees_what_the_head_declares(sim, kind):
    d = random_latent_class(6, 5, 2, seed=0)
    run = SimpleNamespace(config=FitConfig(similarity=sim, dim=2, points=3), dist=d)
    assert feature_kind(run) == kind

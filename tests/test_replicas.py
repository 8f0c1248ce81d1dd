"""Many seeds as one computation: `fit(seeds=[...])` against `fit(seed=s)`, run by run.

The reference is the one-replica run of the same engine, whose numbers are those of the
trainer before the replicate dimension existed (results/refactor/ records the comparison).
Every comparison is bit for bit (`torch.equal`, ==): on CPU each replicate's operations are
its own (vmap batches the same kernels; AdamW is elementwise).
"""

from __future__ import annotations

import math

import pytest
import torch

import pmilab as pl
from pmilab import InputError
from pmilab.training import fit
from tests.planted import poison_optimizer

LATENT = "latent:nx=6,ny=5,k=2,seed=0"
GAUSS = "gaussian:dx=2,dy=2,rho=0.8"
HEADS = {
    "tabular": dict(similarity="tabular"),
    "linear": dict(similarity="linear", dim=2, normalize=False, bias=True),
    "wpse": dict(similarity="wpse", dim=2, points=2),
    "kme": dict(similarity="kme", dim=2, points=3),
}
INPUTS = {
    "population": (LATENT, dict(population=True, lr=0.1, steps=40)),
    # 6x5 cells <= 8^2: the batch is scored on the table (losses.table_infonce)
    "table": (LATENT, dict(batch_size=8, steps=40, weight_decay=0.1, warmup=5)),
    # 6x5 cells > 4^2: the N x N logit matrix of each batch
    "minibatch": (LATENT, dict(batch_size=4, steps=40)),
    "continuous": (GAUSS, dict(batch_size=16, steps=25, hidden=(8,), eval_samples=32)),
}
SEEDS = [0, 3, 7]


def _same_run(a, b) -> list[str]:
    """What differs between two runs: parameters and buffers, history, metrics (bit for bit)."""
    diffs = []
    sa, sb = a.model.state_dict(), b.model.state_dict()
    diffs += [k for k in sa if not torch.equal(sa[k], sb[k])]
    if a.history != b.history:
        diffs.append("history")
    for k, v in a.metrics.items():
        w = b.metrics.get(k)
        both_nan = isinstance(v, float) and isinstance(w, float) and math.isnan(v) and math.isnan(w)
        same = both_nan or v == w
        if not same:
            diffs.append(k)
    return diffs


@pytest.mark.parametrize("inputs", list(INPUTS))
@pytest.mark.parametrize("head", list(HEADS))
def test_batched_seeds_equal_sequential_runs_bit_for_bit(head, inputs):
    spec, kw = INPUTS[inputs]
    if head == "tabular" and spec == GAUSS:
        pytest.skip("the tabular head needs a discrete joint")
    kw = {**HEADS[head], **kw}
    runs = fit(spec, seeds=SEEDS, progress=False, **kw)
    assert [r.config.seed for r in runs] == SEEDS
    for s, run in zip(SEEDS, runs, strict=True):
        alone = fit(spec, seed=s, progress=False, **kw)
        assert _same_run(alone, run) == [], (head, inputs, s)
        assert len(run.history) == kw["steps"] and run.stopped_at is None


def test_float64_batched_equals_sequential():
    kw = dict(similarity="kme", dim=2, points=2, dtype="float64", batch_size=8, steps=30)
    runs = fit(LATENT, seeds=[1, 2], progress=False, **kw)
    for s, run in zip([1, 2], runs, strict=True):
        assert _same_run(fit(LATENT, seed=s, progress=False, **kw), run) == []


def test_the_comparison_sees_a_different_seed_and_a_different_step_size():
    """Control: the comparison above is not blind. Replica 0 against seed 3's run, and against
    seed 0 with lr 1% higher, both differ in parameters and history."""
    kw = {**HEADS["kme"], **INPUTS["population"][1]}
    runs = fit(LATENT, seeds=[0, 3], progress=False, **kw)
    other_seed = fit(LATENT, seed=3, progress=False, **kw)
    near_lr = fit(LATENT, seed=0, progress=False, **{**kw, "lr": kw["lr"] * 1.01})
    for wrong in (other_seed, near_lr):
        diffs = _same_run(wrong, runs[0])
        assert "history" in diffs and any(k.startswith("enc_x") for k in diffs)


@pytest.mark.parametrize("check_every", [1, 10])
def test_a_diverging_replica_stops_alone_and_the_others_are_untouched(monkeypatch, check_every):
    """Seed 3 gets inf parameters from the 13th update (step 12). It stops, named with its
    step, keeps finite parameters that give its last kept loss; seeds 0 and 7 are bit for bit
    the runs without it."""
    kw = dict(similarity="linear", dim=2, normalize=False, population=True, lr=0.1, steps=40)
    clean = fit(LATENT, seeds=[0, 7], progress=False, check_every=check_every, **kw)
    poison_optimizer(monkeypatch, at_call=13, replica=1)
    with pytest.warns(RuntimeWarning, match="training stopped at step") as rec:
        runs = fit(LATENT, seeds=SEEDS, progress=False, check_every=check_every, **kw)
    assert len(rec) == 1  # only the poisoned seed warns
    bad = runs[1]
    # checks every step: the update of step 12 is named; every 10: the first bad loss (step 13)
    assert bad.stopped_at == (12 if check_every == 1 else 13)
    assert bad.metrics["stopped_at_step"] == bad.stopped_at
    assert f"training stopped at step {bad.stopped_at}" in bad.message
    assert all(torch.isfinite(p).all() for p in bad.model.parameters())
    kept = len(bad.history)
    assert kept == (13 if check_every == 1 else 10)  # the loss the kept parameters produced
    from pmilab.losses import population_loss

    d = pl.dists.parse_spec(LATENT)
    with torch.no_grad():
        table = bad.model.logit_matrix(torch.arange(6), torch.arange(5))
    # the recorded loss was computed under vmap, this one without: equal up to float32 rounding
    # (bit-equal on some CPUs, 1e-7 apart on others), while neighbouring steps differ by far more
    loss = population_loss(table, d.table.float()).item()
    assert loss == pytest.approx(bad.history[-1], rel=1e-6)
    assert abs(bad.history[-1] - bad.history[-2]) > 1e-4 * abs(loss)
    for run, ref in ((runs[0], clean[0]), (runs[2], clean[1])):
        assert _same_run(ref, run) == [] and run.stopped_at is None and not run.message


def test_a_huge_learning_rate_stops_every_replica_with_its_own_step():
    kw = dict(similarity="linear", dim=2, normalize=False, population=True, lr=1e30, steps=30)
    with pytest.warns(RuntimeWarning):
        runs = fit(LATENT, seeds=[0, 1], progress=False, **kw)
    for s, run in zip([0, 1], runs, strict=True):
        with pytest.warns(RuntimeWarning):
            alone = fit(LATENT, seed=s, progress=False, **kw)
        assert run.stopped_at == alone.stopped_at is not None
        assert _same_run(alone, run) == []


def test_convergence_stops_a_replica_at_the_first_check_where_the_rule_holds():
    """The rule, recomputed from a full run's history: the first check step c (c + 1 a
    multiple of check_every) whose last `w` losses span less than tol. The converged run's
    history is the full run's up to c, and the rule is recorded per run."""
    kw = dict(similarity="tabular", population=True, lr=0.1, steps=400, check_every=20)
    w, tol = 40, 1e-6
    full = fit(LATENT, seeds=[0, 1], progress=False, **kw)
    conv = fit(LATENT, seeds=[0, 1], progress=False, converge_window=w, converge_tol=tol, **kw)
    for f, c in zip(full, conv, strict=True):
        h = f.history
        checks = [s for s in range(len(h)) if (s + 1) % 20 == 0 and s + 1 >= w]
        first = next(
            s for s in checks if max(h[s + 1 - w : s + 1]) - min(h[s + 1 - w : s + 1]) < tol
        )
        assert first < 399  # the control: it does stop early on this run
        assert c.metrics["converged_at_step"] == first
        assert c.history == h[: first + 1] and c.metrics["steps_run"] == first + 1
        assert c.stopped_at is None and not c.message
        assert c.config.converge_window == w


def test_a_head_that_cannot_batch_says_why_in_one_line():
    kw = dict(similarity="wpse", dim=2, points=2, rff_features=16, steps=5, batch_size=8)
    with pytest.raises(InputError, match="redraws its random features") as e:
        fit(LATENT, seeds=[0, 1], progress=False, **kw)
    assert "\n" not in str(e.value)
    fit(LATENT, seeds=[0], progress=False, **kw)  # one replica needs no batching


@pytest.mark.parametrize(
    "seeds, match",
    [
        ([], "at least one seed"),
        ([1, 1], "distinct"),
        ([0, -1], "non-negative integer"),
        ([0, 1.5], "non-negative integer"),
        (3, "list of integers"),
        ("01", "list of integers"),
    ],
)
def test_bad_seeds_are_one_line(seeds, match):
    with pytest.raises(InputError, match=match):
        fit(LATENT, seeds=seeds, similarity="tabular", steps=2, progress=False)


def test_seed_and_seeds_together_are_refused():
    with pytest.raises(InputError, match="either seed=s or seeds"):
        fit(LATENT, seed=0, seeds=[1], similarity="tabular", steps=2, progress=False)


def test_batched_runs_save_one_folder_per_seed_and_refuse_an_earlier_run(tmp_path):
    kw = dict(similarity="tabular", steps=3, progress=False)
    fit(LATENT, seeds=[0, 2], out=tmp_path / "runs", **kw)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["seed0", "seed2"]
    assert (tmp_path / "runs" / "seed2" / "metrics.json").exists()
    with pytest.raises(InputError, match="holds an earlier run"):
        fit(LATENT, seeds=[5, 2], out=tmp_path / "runs", **kw)
    assert not (tmp_path / "runs" / "seed5").exists()  # refused before anything was written


def test_floor_gap_stops_each_replica_at_its_first_check_within_the_exact_floor():
    """The rule, recomputed from a full run's history against the exact floor -I(X;Y) from the
    joint table in float64 (independent of the trainer): the first check step c whose loss is
    within `gap` of it. Each seed stops alone, the others run on untouched (seed 1 of a batch
    equals seed 1 trained alone), and a head that cannot reach PMI (linear, d = 1, on a K = 4
    latent joint) never comes within the gap and runs its whole budget (the control)."""
    from pmilab.dists import parse_spec

    joint = parse_spec(LATENT).table.double()
    px, py = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    mi = float((joint * (joint / (px * py)).log()).sum())
    kw = dict(similarity="tabular", population=True, lr=0.1, steps=400, check_every=20)
    gap = 1e-6
    full = fit(LATENT, seeds=[0, 1], progress=False, **kw)
    stop = fit(LATENT, seeds=[0, 1], progress=False, floor_gap=gap, **kw)
    for f, c in zip(full, stop, strict=True):
        h = f.history
        first = next(s for s in range(19, len(h), 20) if h[s] + mi < gap)
        assert first < 399  # it does stop early on this run
        assert c.metrics["converged_at_step"] == first
        assert c.history == h[: first + 1] and c.metrics["steps_run"] == first + 1
        assert c.stopped_at is None and not c.message and c.config.floor_gap == gap
        assert h[first - 20] + mi >= gap  # the check before did not hold
    alone = fit(LATENT, seed=1, progress=False, floor_gap=gap, **kw)
    assert _same_run(alone, stop[1]) == []
    far = fit(LATENT, seeds=[0], progress=False, floor_gap=gap, **dict(kw, similarity="linear"))
    assert far[0].metrics["steps_run"] == 400 and "converged_at_step" not in far[0].metrics
    assert min(far[0].history) + mi > 10 * gap  # never near the floor: rank, not training


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"floor_gap": 1e-6, "population": False}, "needs population=True"),
        ({"floor_gap": -1e-6, "population": True}, "floor_gap must be a positive"),
        ({"floor_gap": float("nan"), "population": True}, "floor_gap must be a finite number"),
    ],
)
def test_floor_gap_refuses_what_has_no_floor(changes, match):
    with pytest.raises(InputError, match=match) as e:
        fit(LATENT, seeds=[0], progress=False, steps=5, **changes)
    assert "\n" not in str(e.value)

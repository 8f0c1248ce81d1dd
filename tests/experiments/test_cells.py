"""Cells (runs equal but for "seed", trained as one unit) and the cross-sweep schedule: grouping,
rows equal to single runs, resume of a partial cell, longest-first order, claims evaluated as
soon as their own sweeps are complete."""

from __future__ import annotations

import math
from concurrent.futures import Executor, Future
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from pmilab.experiments import verify
from pmilab.experiments.framework.sweep import (
    RunSpec,
    Sweep,
    cells_of,
    load_table,
    longest_first,
    make_id,
    run_cells,
    run_cost,
    run_sweep,
    run_sweeps,
)
from pmilab.experiments.tasks.discrete import DISCRETE_METRICS, discrete_head, discrete_heads
from tests.experiments.toy_task import square

TIMING = ["seconds", "cpu_seconds"]
CALLS: list[list[tuple[float, int]]] = []  # (x, seed) of each cell the toy cell task ran
EVENTS: list[str] = []  # what ran, in order, in the claim-schedule test


def square_cell(ps: list[dict]) -> list[dict]:
    """A batched `square`: y of all seeds at once from the same per-seed noise."""
    CALLS.append([(float(p["x"]), int(p["seed"])) for p in ps])
    x = np.array([float(p["x"]) for p in ps])
    noise = np.array([np.random.default_rng(int(p["seed"])).normal() for p in ps])
    ys = x * x + noise * 1e-3
    return [{"y": float(y), "third": float(v) / 3.0} for y, v in zip(ys, x, strict=True)]


def reversed_cell(ps: list[dict]) -> list[dict]:
    """A wrong cell task: each seed gets another seed's metrics."""
    return square_cell(ps)[::-1]


def toy_runs(xs=(0, 1, 2), seeds=(0, 1, 2, 3), steps: int = 10) -> list[RunSpec]:
    return [
        RunSpec(make_id("toy", f"x{x}", f"seed{s}"), {"x": x * 0.5, "steps": steps, "seed": s})
        for x in xs
        for s in seeds
    ]


def toy_sweep(runs=None, cell_task=square_cell, name: str = "toy") -> Sweep:
    return Sweep(name, square, toy_runs() if runs is None else runs, ["y", "third"], "", cell_task)


def values(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=TIMING).reset_index(drop=True)


@pytest.fixture(autouse=True)
def _clear():
    CALLS.clear()
    EVENTS.clear()


def test_cells_group_only_runs_that_differ_in_seed():
    runs = toy_runs(xs=(0, 1), seeds=(0, 1))
    runs.append(RunSpec("odd", {"x": 0.0, "steps": 11, "seed": 2}))  # x=0 but other steps
    cells = cells_of(toy_sweep(runs), runs)
    got = [[r.run_id for r in c.specs] for c in cells]
    assert got == [
        ["toy-x0-seed0", "toy-x0-seed1"],
        ["toy-x1-seed0", "toy-x1-seed1"],
        ["odd"],
    ]
    # control: a sweep without a cell task runs every run alone
    assert [len(c.specs) for c in cells_of(toy_sweep(runs, cell_task=None), runs)] == [1] * 5


def test_cell_rows_equal_single_run_rows_and_share_the_cell_time(tmp_path):
    single, cell = toy_sweep(cell_task=None), toy_sweep()
    run_sweep(single, tmp_path / "single", progress=False)
    st = run_sweep(cell, tmp_path / "cell", progress=False)
    assert st.ran == 12 and [len(c) for c in CALLS] == [4, 4, 4]
    a, b = load_table(single, tmp_path / "single"), load_table(cell, tmp_path / "cell")
    pd.testing.assert_frame_equal(values(b), values(a))
    assert (b.groupby("x").seconds.nunique() == 1).all()  # each seed: the cell's time / 4
    # control: a cell task that mixes up its seeds does not give the single-run rows
    bad = toy_sweep(cell_task=reversed_cell)
    run_sweep(bad, tmp_path / "bad", progress=False)
    assert not values(load_table(bad, tmp_path / "bad")).equals(values(a))


def test_cells_through_a_worker_pool_and_shards_give_the_single_run_table(tmp_path):
    single, cell = toy_sweep(cell_task=None), toy_sweep()
    run_sweep(single, tmp_path / "ref", progress=False)
    out = tmp_path / "sharded"
    s0 = run_sweep(cell, out, jobs=2, shard=(0, 3), progress=False)  # runs 0, 3, 6, 9: 3 cells
    assert s0.ran == 4 and s0.left_to_other_shards == 8
    run_sweep(cell, out, jobs=2, shard=(1, 3), progress=False)
    run_sweep(cell, out, shard=(2, 3), progress=False)
    assert sorted(p.name for p in out.iterdir()) == [f"toy.shard{i}of3.csv" for i in range(3)]
    pd.testing.assert_frame_equal(
        values(load_table(cell, out)), values(load_table(single, tmp_path / "ref"))
    )


def test_resume_after_a_partial_cell_runs_only_the_missing_seeds(tmp_path):
    full = toy_sweep()
    part = toy_sweep([r for r in full.runs if r.params["seed"] < 2 and r.params["x"] == 0])
    run_sweep(part, tmp_path / "r", progress=False)  # "killed" after 2 seeds of one cell
    CALLS.clear()
    st = run_sweep(full, tmp_path / "r", progress=False)
    assert st.done_before == 2 and st.ran == 10
    assert sorted(CALLS) == [
        [(0.0, 2), (0.0, 3)],
        [(0.5, 0), (0.5, 1), (0.5, 2), (0.5, 3)],
        [(1.0, 0), (1.0, 1), (1.0, 2), (1.0, 3)],
    ]
    run_sweep(toy_sweep(cell_task=None), tmp_path / "ref", progress=False)
    pd.testing.assert_frame_equal(
        values(load_table(full, tmp_path / "r")), values(load_table(full, tmp_path / "ref"))
    )
    assert run_sweep(full, tmp_path / "r", progress=False).ran == 0


class RecordingExecutor(Executor):
    """Runs each submitted call at once, remembering the order of submission."""

    def __init__(self) -> None:
        self.order: list[list[dict]] = []

    def submit(self, fn, /, *args, **kwargs):
        self.order.append(args[1])
        fut: Future = Future()
        fut.set_result(fn(*args, **kwargs))
        return fut


def test_cells_are_scheduled_longest_first():
    assert run_cost({"steps": 100, "similarity": "kme"}) > run_cost(
        {"steps": 100, "similarity": "linear"}
    )
    assert run_cost({"steps": 100, "hidden": "64x64"}) > run_cost({"steps": 100, "hidden": ""})
    runs = [
        *toy_runs(xs=(0,), seeds=(0,), steps=10),  # cost 10
        *toy_runs(xs=(1,), seeds=(0, 1), steps=30),  # cost 60
        *toy_runs(xs=(2,), seeds=(0, 1, 2), steps=10),  # cost 30
    ]
    sw = toy_sweep(runs)
    cells = cells_of(sw, runs)
    assert [c.cost() for c in cells] == [10, 60, 30]  # control: not already in order
    assert [c.cost() for c in longest_first(cells)] == [60, 30, 10]
    ex, seen = RecordingExecutor(), []
    run_cells(cells, ex, lambda cell, *rest: seen.append(cell.cost()))
    assert [[p["x"] for p in ps][0] for ps in ex.order] == [0.5, 1.0, 0.0]
    assert seen == [60, 30, 10]
    by_x = Sweep(sw.name, square, runs, sw.metrics, cell_task=square_cell, cost=lambda p: -p["x"])
    assert [c.specs[0].params["x"] for c in longest_first(cells_of(by_x, runs))] == [0, 0.5, 1]


def logged_cell(ps: list[dict]) -> list[dict]:
    EVENTS.append(f"run {ps[0]['tag']}")
    return [{"y": float(p["seed"])} for p in ps]


def toy_claim(name: str, sweeps: list[Sweep]) -> SimpleNamespace:
    def evaluate(tables, cfg):
        EVENTS.append(f"eval {name}")
        return [len(t) for t in tables.values()]

    return SimpleNamespace(
        CLAIM=name,
        TITLE=name,
        config=lambda preset, seeds=None: None,
        sweeps=lambda cfg: sweeps,
        evaluate=evaluate,
    )


def tagged_sweep(name: str, cells: list[tuple[int, int]]) -> Sweep:
    """cells: (steps, seeds) each; every run is tagged with the sweep's name."""
    runs = [
        RunSpec(make_id(name, k, f"seed{s}"), {"tag": name, "k": k, "steps": steps, "seed": s})
        for k, (steps, n) in enumerate(cells)
        for s in range(n)
    ]
    return Sweep(name, square, runs, ["y"], "", logged_cell)


def test_a_claim_is_evaluated_as_soon_as_its_own_sweeps_are_complete(tmp_path):
    a = tagged_sweep("a", [(100, 1)])  # the longest cell: runs first
    b = tagged_sweep("b", [(50, 1), (40, 1)])
    shared = tagged_sweep("s", [(1, 2)])
    claims = [toy_claim("A", [a]), toy_claim("B", [b, shared]), toy_claim("C", [shared])]
    lines: list[str] = []
    out = verify.run_modules(claims, "smoke", tmp_path, progress=False, log=lines.append)
    # A's verdict comes while both of b's cells are still queued; B waits for b and s
    assert EVENTS == ["run a", "eval A", "run b", "run b", "run s", "eval B", "eval C"]
    assert [ln.split(" (")[0] for ln in lines] == [
        "A: 1 runs, 0 reused",
        "B: 4 runs, 0 reused",
        "C: 0 runs, 2 reused",  # the shared sweep ran once, counted for B
    ]
    assert [cr.results for cr in out] == [[1], [2, 2], [2]]
    assert all(cr.missing == 0 for cr in out)
    EVENTS.clear()  # rerun: nothing trains, every claim is evaluated at once, in order
    again = verify.run_modules(claims, "smoke", tmp_path, progress=False)
    assert EVENTS == ["eval A", "eval B", "eval C"] and sum(cr.ran for cr in again) == 0


def test_sweeps_listed_twice_are_refused(tmp_path):
    sw = toy_sweep()
    with pytest.raises(ValueError, match="twice"):
        run_sweeps([sw, sw], tmp_path, progress=False)


def test_a_real_discrete_cell_equals_discrete_head_per_seed(tmp_path):
    """Three seeds of a KME head on a latent 6x5 table trained as one cell (batched `fit`):
    every metric equals `discrete_head` run alone on that seed."""
    base = {
        "dist": "latent:nx=6,ny=5,k=3,seed=0",
        "similarity": "kme",
        "dim": 2,
        "points": 3,
        "normalize": 0,
        "bias": 1,
        "logit_cap": 0,
        "objective": "symmetric",
        "population": 1,
        "batch_size": 64,
        "steps": 50,
        "lr": 0.1,
        "probe_n": 500,
    }
    ps = [{**base, "seed": s} for s in (0, 1, 2)]
    cell = discrete_heads(ps)
    alone = [discrete_head(p) for p in ps]

    def same(x: dict, y: dict) -> bool:
        return all(x[k] == y[k] or (math.isnan(x[k]) and math.isnan(y[k])) for k in x)

    for c, a in zip(cell, alone, strict=True):
        assert set(c) == set(DISCRETE_METRICS) and same(c, a)
    assert not same(cell[1], alone[0])  # control: another seed's metrics differ
    # and through a sweep: the same table as the sweep without a cell task
    runs = [RunSpec(make_id("d", f"seed{p['seed']}"), p) for p in ps]
    batched = Sweep("d", discrete_head, runs, DISCRETE_METRICS, "", discrete_heads)
    plain = Sweep("d", discrete_head, runs, DISCRETE_METRICS)
    run_sweep(batched, tmp_path / "b", progress=False)
    run_sweep(plain, tmp_path / "p", progress=False)
    pd.testing.assert_frame_equal(
        values(load_table(batched, tmp_path / "b")), values(load_table(plain, tmp_path / "p"))
    )


def test_fit_runs_refuses_runs_that_differ_beyond_the_seed():
    from pmilab.experiments.tasks.fitting import fit_runs

    p = {"dist": "latent:nx=6,ny=5,k=3,seed=0", "similarity": "tabular", "steps": 5, "seed": 0}
    with pytest.raises(ValueError, match="but for 'seed'"):
        fit_runs(None, [p, {**p, "seed": 1, "steps": 6}])


def test_one_heartbeat_counts_the_runs_of_concurrent_sweeps(tmp_path, capsys):
    """Bars off, several sweeps in one schedule: one heartbeat line per beat (not one per
    sweep), counting every sweep's runs, from 0 up to the total."""
    a, b = toy_sweep(name="ta"), toy_sweep(name="tb", cell_task=None)
    run_sweeps([a, b], tmp_path, progress=False, heartbeat=0.01, desc="ta,tb")
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "runs done" in ln]
    assert lines and all(ln.startswith("ta,tb: ") for ln in lines)
    counts = [int(ln.split(": ")[1].split("/")[0]) for ln in lines]
    totals = {int(ln.split("/")[1].split(" ")[0]) for ln in lines}
    assert counts[0] == 0 and counts == sorted(counts)
    assert totals == {len(a.runs) + len(b.runs)}

"""T4 as a claim: the rate fit recovers planted exponents, the tasks are deterministic, and the
stand-alone table tool (results/t4/table.py) writes its markdown from the same task."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pmilab.experiments.claims.t4 import (
    clip_ratios,
    fit_rate,
    flat_in_n,
    flat_in_p,
    helps_check,
    precision_check,
    rate_check,
)
from pmilab.experiments.tasks.linear_mmcl import (
    REFERENCE,
    gd_trace,
    rate_cell,
    rate_params,
    trace_long,
    trace_steps,
)
from pmilab.theory.clip_gd import ClipGDConfig

ROOT = Path(__file__).resolve().parents[2]


def _table_tool():
    spec = importlib.util.spec_from_file_location("t4_table", ROOT / "results" / "t4" / "table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fit_rate_recovers_planted_exponents_and_drops_saturated_cells():
    rng = np.random.default_rng(0)
    rows = []
    for n in (100, 300, 1000, 3000):
        for p in (0.0, 0.5, 0.8):
            for rep in range(4):
                val = 3.0 * n**-0.5 / (1 - p) ** 1.0 * np.exp(0.01 * rng.standard_normal())
                rows.append({"n": n, "p_n": p, "rep": rep, "sin_theta_svd": min(val, 1.4)})
    fit = fit_rate(pd.DataFrame(rows))
    assert fit["b"] == pytest.approx(-0.5, abs=0.02)
    assert fit["c"] == pytest.approx(1.0, abs=0.03)
    assert np.exp(fit["a"]) == pytest.approx(3.0, rel=0.05)
    assert all(3.0 * n**-0.5 / (1 - p) <= 1.0 + 0.05 for n, p in fit["cells"])
    assert (100, 0.8) not in fit["cells"]


def test_rate_cells_are_deterministic_and_ordered_as_the_theory_says():
    cells = {(n, p): rate_cell(rate_params(n, p, rep=0, cell=c)) for c, (n, p) in
             enumerate([(100, 0.0), (100, 0.5), (300, 0.0)])}  # fmt: skip
    again = rate_cell(rate_params(100, 0.5, rep=0, cell=1))
    assert again == cells[(100, 0.5)]
    assert rate_cell(rate_params(100, 0.5, rep=1, cell=1)) != again  # another draw
    s = {k: v["sin_theta_svd"] for k, v in cells.items()}
    # sampling error shrinks like n^{-1/2} and grows with mismatch
    assert s[(300, 0.0)] < s[(100, 0.0)] < s[(100, 0.5)]
    assert np.isnan(cells[(100, 0.0)]["sin_theta_clip"])  # no clip config: no GD column


def test_gd_trace_columns_follow_its_record_steps():
    cfg = ClipGDConfig(steps=25, tol=0.0)
    from pmilab.experiments.tasks.linear_mmcl import clip_params

    p = {"n": 60, "p_n": 0.0, "r": 3, "rep": 0, "record_every": 10, **clip_params(cfg)}
    out = gd_trace(p)
    assert trace_steps(25, 10) == [10, 20, 25]
    assert set(out) == {f"{f}_s{s}" for s in (10, 20, 25) for f in
                        ("sin_theta_to_svd", "svd_residual", "sin_theta_to_truth", "grad_norm")}  # fmt: skip
    long = trace_long(pd.DataFrame([{**p, **out}]))
    assert (
        list(long.step) == [10, 20, 25] and long.svd_residual.iloc[-1] < long.svd_residual.iloc[0]
    )


def test_table_tool_markdown_against_the_reference(tmp_path):
    tool = _table_tool()
    grid = pd.DataFrame(
        [
            {"n": n, "p_n": p, "rep": k, "sin_theta_svd": v + 0.01 * k}
            for (n, p), v in REFERENCE.items()
            for k in range(3)
        ]
    )
    path = tmp_path / "table.md"
    tool.write_table_markdown(grid, path, seconds=1.0)
    text = path.read_text()
    assert "| 3000 |" in text and "ref 0.97" in text
    # the planted grid sits 0.01 above the reference on average: every z is small and positive
    assert "cells with |z| > 2: 0" in text


def _planted(b: float = -0.5, c: float = 1.0, reps: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for n in (100, 300, 1000, 3000):
        for p in (0.0, 0.5, 0.8):
            for rep in range(reps):
                val = 3.0 * n**b / (1 - p) ** c * np.exp(0.01 * rng.standard_normal())
                rows.append({"n": n, "p_n": p, "rep": rep, "sin_theta_svd": min(val, 1.4)})
    return pd.DataFrame(rows)


def test_rate_controls_are_flat_series_that_the_same_check_rejects():
    df = _planted()
    fit, b_ok, c_ok = rate_check(df)
    assert b_ok and c_ok
    flat_n = flat_in_n(df)
    # every cell holds the n = 100 value of its (p_n, rep)
    for r in flat_n.itertuples():
        src = df[(df.n == 100) & (df.p_n == r.p_n) & (df.rep == r.rep)].sin_theta_svd.item()
        assert r.sin_theta_svd == src
    fit_n, b_ctl, _ = rate_check(flat_n)
    assert fit_n["b"] == pytest.approx(0.0, abs=1e-12) and not b_ctl
    flat_p = flat_in_p(df)
    assert (flat_p.groupby(["n", "rep"]).sin_theta_svd.nunique() == 1).all()
    fit_p, _, c_ctl = rate_check(flat_p)
    assert fit_p["c"] == pytest.approx(0.0, abs=1e-12) and not c_ctl
    # the neighbouring rates the tolerances are meant to reject (docs/theory.md T4)
    assert not rate_check(_planted(b=-1 / 3))[1] and not rate_check(_planted(b=-1.0))[1]
    assert not rate_check(_planted(c=0.5))[2] and not rate_check(_planted(c=2.0))[2]


def test_unpaired_checks_see_the_direction_of_the_rank_contrast():
    assert helps_check(0.2, 0.3) and not helps_check(0.3, 0.2)  # swapped: the control
    assert not helps_check(0.51, 0.6)  # r = 30 above 0.5
    assert not helps_check(0.3, 0.3)  # no contrast
    assert precision_check(0.3, 0.9) and not precision_check(0.9, 0.3)
    assert not precision_check(0.975, 1.0)  # mutual argmax at full size: T4e FAILs


def test_clip_ratios_per_n():
    rows = [
        {"n": n, "p_n": p, "rep": k, "sin_theta_clip": v * (1 + k), "sin_theta_svd": v / 2}
        for n, base in ((300, 0.4), (1000, 0.2))
        for p, v in ((0.0, base), (0.5, 2.8 * base))
        for k in range(2)
    ]
    r = clip_ratios(pd.DataFrame(rows)).set_index("n")
    assert r.clip_ratio.tolist() == pytest.approx([2.8, 2.8]) and r.svd_ratio[300] == pytest.approx(
        2.8
    )
    assert r.clip_0[300] == pytest.approx(0.4 * 1.5)

"""The recorded power analysis: pilot rows -> seed counts -> the configs verify runs with."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from pmilab import verdicts as V
from pmilab.experiments import power
from pmilab.experiments.framework import design
from pmilab.experiments.framework.claim import calibration, finding, judged_row


def _rows(sd: float, n: int = 5):
    rng = np.random.default_rng(0)
    z = rng.standard_normal(n)
    v = 0.02 + sd * (z - z.mean()) / z.std(ddof=1)  # sample sd exactly `sd`
    return [
        judged_row("T9a", "reach", V.judge(v, 0.05, "below"), "<= 0.05"),
        calibration("T9a", "near miss", V.judge(v + 0.08, 0.05, "below"), "<= 0.05", "FAIL"),
        judged_row("T9b", "exact", V.exact(0.01, 0.05), "<= 0.05", "implementation"),
        finding("T9c", "f", 1.0, "d"),
    ]


def test_pilot_design_is_seeds_for_power_at_the_upper_sd_and_the_holm_level():
    """RULE_VERSION 2: each row is sized at its pilot sd's 80% upper confidence bound and at the
    level its decisive sub-case was judged at (here one sub-case: the nominal 0.05)."""
    recs = design.pilot_design(_rows(0.03))
    assert [r["row"] for r in recs] == ["T9a|evidence|", "T9a|calibration|FAIL"]
    upper = V.sd_upper(0.03, 5, 0.8)
    for r in recs:
        assert r["pilot_sd"] == pytest.approx(0.03, rel=1e-12) and r["tolerance"] == 0.05
        assert r["design_sd"] == pytest.approx(upper, rel=1e-12) and r["alpha"] == 0.05
        assert r["chosen_n"] == V.seeds_for_power(upper, 0.05)
    # the defining property: chosen_n reaches the power at the upper sd, chosen_n - 1 does not
    n = recs[0]["chosen_n"]
    p = [V.power_at(k, upper, 2 * 0.05, 0.05, verdict="FAIL") for k in (n - 1, n)]
    assert p[0] < 0.8 <= p[1]


def test_a_holm_adjusted_row_is_sized_at_its_adjusted_level():
    """A row whose decisive sub-case came out of a family of 3 (Holm: alpha / 3 for the first
    ranked) needs more seeds than at the nominal level, and the record says which level."""
    rng = np.random.default_rng(1)
    subcases = [V.judge(0.12 + 0.02 * rng.standard_normal(4), 0.05, "below") for _ in range(3)]
    row = decisive_row = V.decisive(V.holm_verdicts(subcases))
    assert min(row.alpha, row.alpha_fail) < 0.05  # the family adjusted it
    rec = design.pilot_design([calibration("T9a", "near", decisive_row, "<= 0.05", "FAIL")])[0]
    assert rec["alpha"] == pytest.approx(min(row.alpha, row.alpha_fail))
    nominal = V.seeds_for_power(rec["design_sd"], 0.05, 0.05)
    assert rec["chosen_n"] == V.seeds_for_power(rec["design_sd"], 0.05, rec["alpha"])
    assert rec["chosen_n"] >= nominal


def test_claim_counts_take_the_neediest_row_and_shared_sweeps_agree():
    rows = [
        {"row": "a", "chosen_n": 7},
        {"row": "b", "chosen_n": 12},
        {"row": "c", "chosen_n": None},
    ]
    assert power.claim_seeds(rows, 4, None) == (12, "b needs 12")
    n, why = power.claim_seeds(rows, 4, 10)
    assert n == 10 and "capped" in why
    few = [{"row": "a", "chosen_n": 3}]
    assert power.claim_seeds(few, 4, None, min_seeds=5) == (
        5,
        "a needs 3; raised to the floor of 5 seeds",
    )
    assert power.claim_seeds(few, 4, None) == (3, "a needs 3")
    claims = {
        "T2": {"seeds": 12, "why": ""},
        "T3": {"seeds": 5, "why": ""},
        "T6": {"seeds": 3, "why": ""},
    }
    power.share_counts(claims, {"T2": {"heads"}, "T3": {"heads", "t3"}, "T6": {"t6"}})
    assert [c["seeds"] for c in claims.values()] == [12, 12, 3]


def test_verify_runs_with_the_recorded_count_and_reports_the_planned_power(tmp_path, monkeypatch):
    monkeypatch.setattr(design, "DESIGN_DIR", tmp_path)
    design.read_design.cache_clear()
    recs = design.pilot_design(_rows(0.03))
    record = {"claims": {"T9": {"seeds": 9, "why": "", "rows": recs}}}
    (tmp_path / "smoke.json").write_text(json.dumps(record))
    mod = SimpleNamespace(CLAIM="T9", config=lambda preset, seeds=None: seeds)
    try:
        assert design.claim_config(mod, "smoke") == 9
        assert design.claim_config(mod, "smoke", 3) == 3  # --seeds wins
        rows = design.planned_power(_rows(0.02, n=9), "smoke")
        upper = V.sd_upper(0.03, 5, 0.8)  # the record's design spread
        want = min(
            V.power_at(9, upper, 0.0, 0.05, verdict="PASS"),
            V.power_at(9, upper, 0.1, 0.05, verdict="FAIL"),
        )
        assert rows[0].judged.power == pytest.approx(want) and rows[
            1
        ].judged.power == pytest.approx(want)
        assert math.isnan(rows[2].judged.power) and rows[3].judged is None  # not designed
    finally:
        design.read_design.cache_clear()


def test_pilot_seeds_never_meet_verdict_seeds():
    assert min(design.pilot_seeds(50)) > 1000 and len(set(design.pilot_seeds(50))) == 50

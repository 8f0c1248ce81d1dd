"""Judged rows: what a claims.csv row carries, when a row is as it must be, and the report.

The statistics are pmilab.verdicts' (tested in tests/test_verdicts.py); here the row contract:
every verdict (PASS / FAIL / INCONCLUSIVE) comes from an interval, a calibration row must have
its expected verdict, claims.csv round-trips, and `pmilab verify`'s exit code follows `ok`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pmilab import verdicts as V
from pmilab.experiments.framework.claim import (
    ClaimResult,
    calibration,
    finding,
    judged_row,
)
from pmilab.experiments.framework.report import counts, read_claims, write_report


def _row(values, kind="evidence", expect=""):
    j = V.judge(values, 0.05, "below")
    if kind == "calibration":
        return calibration("T9a", "s", j, "<= 0.05", expect=expect)
    return judged_row("T9a", "s", j, "<= 0.05", kind=kind)


PASSING = [0.01, 0.012, 0.011, 0.009]  # far below 0.05
FAILING = [0.1, 0.11, 0.105, 0.098]  # far above
STRADDLE = [0.02, 0.08, 0.04, 0.07]  # mean 0.0525, SE 0.0138: interval holds 0.05


@pytest.mark.parametrize(
    "values, verdict", [(PASSING, "PASS"), (FAILING, "FAIL"), (STRADDLE, "INCONCLUSIVE")]
)
def test_a_judged_row_carries_the_interval_it_was_read_from(values, verdict):
    r = _row(values)
    v = np.asarray(values)
    se = v.std(ddof=1) / math.sqrt(v.size)
    t = stats.t.ppf(0.95, v.size - 1)
    assert r.verdict == verdict and r.measured == pytest.approx(v.mean())
    d = r.as_dict()
    assert d["n"] == 4 and d["se"] == pytest.approx(se, rel=1e-12)
    assert d["ci_high"] == pytest.approx(v.mean() + t * se, rel=1e-12)
    assert d["ci_low"] == pytest.approx(v.mean() - t * se, rel=1e-12)
    assert d["verdict"] == verdict and d["alpha"] == 0.05
    assert r.passed is {"PASS": True, "FAIL": False, "INCONCLUSIVE": None}[verdict]


@pytest.mark.parametrize(
    "kind, expect, values, ok",
    [
        ("evidence", "", PASSING, True),
        ("evidence", "", FAILING, False),
        ("evidence", "", STRADDLE, True),  # INCONCLUSIVE is reported, not an error
        ("implementation", "", FAILING, False),
        ("control", "", FAILING, True),  # a strawman must FAIL
        ("control", "", STRADDLE, False),  # ... an INCONCLUSIVE control says it may not
        ("calibration", "FAIL", FAILING, True),
        ("calibration", "FAIL", STRADDLE, False),
        ("calibration", "PASS", PASSING, True),
        ("calibration", "PASS", FAILING, False),
    ],
)
def test_ok_is_what_verify_exits_on(kind, expect, values, ok):
    assert _row(values, kind, expect).ok is ok


def test_row_contract_is_enforced():
    j = V.judge(PASSING, 0.05, "below")
    with pytest.raises(ValueError, match="expects"):
        judged_row("T9a", "s", j, "t", kind="calibration")
    with pytest.raises(ValueError, match="disagrees"):
        ClaimResult("T9a", "s", 0.1, "t", False, judged=j)
    with pytest.raises(ValueError, match="verdict"):
        ClaimResult("T9a", "s", 0.1, "t", None)  # neither a verdict nor statistics


def test_sub_cases_are_holm_corrected_and_the_deciding_one_is_the_row():
    # two sub-cases that PASS alone at 0.05 (p 0.03 and 0.04 by construction below) but not both
    # under Holm (0.025 for the smaller): the row is INCONCLUSIVE, carried by the weaker one.
    def values_with_p(p, n=6, thr=0.05, sd=0.01):
        t = stats.t.ppf(p, n - 1)  # the t statistic of the PASS test ("less") with p-value p
        z = np.linspace(-1, 1, n)
        z = (z - z.mean()) / z.std(ddof=1) * sd
        return thr + t * sd / math.sqrt(n) + z

    a, b = V.judge(values_with_p(0.03), 0.05, "below"), V.judge(values_with_p(0.04), 0.05, "below")
    assert a.verdict == b.verdict == "PASS"
    assert a.p_value == pytest.approx(0.03) and b.p_value == pytest.approx(0.04)
    r = judged_row("T9b", "every K", [a, b], "<= 0.05")
    assert r.verdict == "INCONCLUSIVE" and r.judged.estimate == pytest.approx(b.estimate)
    assert r.judged.alpha == pytest.approx(0.05)  # the weaker is tested at alpha/1 after a
    # one clear FAIL decides the claim whatever the others say
    r = judged_row(
        "T9b", "every K", [V.judge(PASSING, 0.05, "below"), V.judge(FAILING, 0.05, "below")], ""
    )
    assert r.verdict == "FAIL" and r.judged.estimate == pytest.approx(np.mean(FAILING))


def test_exact_rows_are_deterministic_and_judged_exactly():
    assert V.exact(0.04, 0.05).verdict == "PASS" and V.exact(0.05, 0.05).verdict == "FAIL"
    assert V.exact(0.06, 0.05, "above").verdict == "PASS"
    assert V.exact(-0.04, 0.05, "equivalence").verdict == "PASS"
    assert V.exact(0.05, 0.05, "equivalence").verdict == "FAIL"
    r = judged_row(
        "T9c", "an exact floor", V.exact(0.074, 0.05, "above"), "> 0.05", "implementation"
    )
    d = r.as_dict()
    assert d["deterministic"] is True and d["n"] == 1 and d["se"] == 0.0
    assert d["ci_low"] == d["ci_high"] == 0.074
    with pytest.raises(ValueError, match="finite"):
        V.exact(math.nan, 0.05)


def test_claims_csv_round_trips_and_the_report_shows_every_column(tmp_path):
    rows = [
        _row(PASSING),
        _row(STRADDLE),
        _row(FAILING, "calibration", "FAIL"),
        _row(PASSING, "calibration", "PASS"),
        _row(FAILING, "control"),
        judged_row("T9c", "exact", V.exact(0.01, 0.05), "<= 0.05", "implementation"),
        finding("T9d", "a number", 1.5, "detail"),
    ]
    write_report(tmp_path, rows, {}, {"preset": "smoke"})
    back = read_claims(tmp_path)
    assert [r.verdict for r in back] == [r.verdict for r in rows]
    assert [r.ok for r in back] == [r.ok for r in rows]
    for a, b in zip(rows, back, strict=True):
        if a.judged is None:
            assert b.judged is None
            continue
        for c in ("estimate", "se", "n", "ci_low", "ci_high", "alpha", "deterministic"):
            assert getattr(b.judged, c) == getattr(a.judged, c), c
    df = pd.read_csv(tmp_path / "claims.csv")
    judged = df[df.kind != "finding"]
    assert (
        judged[["estimate", "se", "n", "ci_low", "ci_high", "alpha", "verdict"]].notna().all().all()
    )
    assert set(df.verdict) == {"PASS", "FAIL", "INCONCLUSIVE", "—"}
    report = (tmp_path / "report.md").read_text()
    assert "## Calibration pairs" in report and "**INCONCLUSIVE**" in report
    assert "FAIL (as it must)" in report and "0.0105 ± " in report
    assert counts(rows) == (
        "claims 1/2 PASS, 1 INCONCLUSIVE; implementation checks 1/1 PASS; "
        "calibration 2/2 as they must; controls 1/1 FAIL as they must; 1 findings"
    )

"""T4's verdict rules (docs/theory.md T4): (a) the rules on hand-built tables against a hand
computation, (b) planted errors of 2x the tolerance FAIL at smoke size and 0.5x PASS, (c) the
calibration rows come out as they must on smoke-size runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from pmilab import verdicts as V
from pmilab.experiments.claims import t4
from pmilab.experiments.framework.sweep import seed_list
from pmilab.experiments.tasks import linear_mmcl as lm
from pmilab.theory.clip_gd import ClipGDConfig


@pytest.fixture(autouse=True)
def _one_thread():
    """The T4 tasks are small: one thread avoids oversubscription on a shared machine."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def _bounds(v, alpha=0.05):
    """Independent reference: (mean, one-sided lower, one-sided upper) Student-t bounds."""
    v = np.asarray(v, float)
    se = v.std(ddof=1) / math.sqrt(v.size)
    h = stats.t.ppf(1 - alpha, v.size - 1) * se
    return v.mean(), v.mean() - h, v.mean() + h


def _row(results, claim, kind, expect=""):
    rows = [r for r in results if r.claim == claim and r.kind == kind and r.expect == expect]
    assert rows, (claim, kind, expect)
    return rows


def _verdict(judged):
    return V.claim_verdict(V.holm_verdicts(judged))


# --------------------------------------------------------------------------- (a) hand-built


def test_helps_rule_hand_worked_pass_fail_inconclusive():
    # PASS: ratio(30) = 0.2 ± 0.02 sd; contrast −0.15 ± 0.04 sd; n = 3, t_{0.95,2} = 2.920
    ratio = pd.DataFrame({10: [0.35, 0.33, 0.37], 30: [0.20, 0.22, 0.18]})
    a, b = t4.helps_judged(ratio, 30, 10)
    assert a.ci_high == pytest.approx(0.2 + 2.919986 * 0.02 / math.sqrt(3), rel=1e-6)
    assert b.ci_high == pytest.approx(-0.15 + 2.919986 * 0.04 / math.sqrt(3), rel=1e-6)
    assert b.ci_high < -t4.CONTRAST_MIN and a.ci_high < t4.HELP_TOL
    assert _verdict([a, b]) == "PASS"
    # FAIL: no help at all (ratio ≈ 1, 2x the tolerance), whatever the contrast says
    ratio = pd.DataFrame({10: [1.0, 1.01, 0.99], 30: [0.98, 0.99, 1.0]})
    a, b = t4.helps_judged(ratio, 30, 10)
    assert a.verdict == "FAIL" and b.verdict == "FAIL" and _verdict([a, b]) == "FAIL"
    # INCONCLUSIVE: ratio(30) 0.45 ± 0.1 on 2 seeds straddles 0.5; the contrast PASSes
    ratio = pd.DataFrame({10: [0.95, 1.05], 30: [0.35, 0.55]})
    a, b = t4.helps_judged(ratio, 30, 10)
    m, lo, hi = _bounds([0.35, 0.55])
    assert lo < t4.HELP_TOL < hi and a.verdict == "INCONCLUSIVE"
    assert b.verdict == "PASS" and _verdict([a, b]) == "INCONCLUSIVE"


def test_drop_rule_hand_worked_pass_fail_inconclusive():
    prec = pd.DataFrame({10: [0.18, 0.17, 0.19], 25: [0.70, 0.71, 0.72], 30: [0.80, 0.82, 0.81]})
    j = t4.drop_judged(prec, 30, 10)  # drop 0.63 ± 0.01 sd: far above 0.3
    m, lo, _ = _bounds(prec[30] - prec[10])
    assert j.verdict == "PASS" and j.ci_low == pytest.approx(lo) and j.estimate == pytest.approx(m)
    assert t4.drop_judged(prec, 30, 25).verdict == "FAIL"  # drop 0.10: the near miss
    assert t4.drop_judged(prec, 10, 30).verdict == "FAIL"  # swapped: the control
    wide = pd.DataFrame({10: [0.1, 0.5], 30: [0.6, 0.7]})  # drops 0.5 and 0.2 on 2 seeds
    assert t4.drop_judged(wide, 30, 10).verdict == "INCONCLUSIVE"


def _planted(b=-0.5, c=1.0, reps=6, noise=0.02, seed=0, ns=(100, 300, 1000), ps=(0, 0.5, 0.8)):
    """Per-repetition sinΘ = 3·n^b/(1−p)^c·exp(noise·N(0,1)), capped at 1.4 (saturation)."""
    rng = np.random.default_rng(seed)
    rows = []
    for rep in range(reps):
        for n in ns:
            for p in ps:
                v = 3.0 * n**b / (1 - p) ** c * math.exp(noise * rng.standard_normal())
                rows.append({"n": n, "p_n": p, "rep": rep, "sin_theta_svd": min(v, 1.4)})
    return pd.DataFrame(rows)


def test_per_repetition_fits_recover_planted_exponents():
    reps, cells = t4.fit_rate_reps(_planted(noise=0.0, reps=2))
    assert reps["b"].tolist() == pytest.approx([-0.5, -0.5], abs=1e-10)
    assert reps["c"].tolist() == pytest.approx([1.0, 1.0], abs=1e-10)
    assert (100, 0.8) not in cells and (1000, 0.0) in cells  # mean 1.4 > 1: dropped
    # each repetition's b equals an independent least-squares fit on that repetition alone
    df = _planted(noise=0.05, reps=3, seed=3)
    reps, cells = t4.fit_rate_reps(df)
    one = df[df.rep == 1].set_index(["n", "p_n"]).loc[cells].reset_index()
    A = np.column_stack([np.ones(len(one)), np.log(one.n), -np.log(1 - one.p_n)])
    ref = np.linalg.lstsq(A, np.log(one.sin_theta_svd), rcond=None)[0]
    assert reps.set_index("rep").loc[1, ["a", "b", "c"]].tolist() == pytest.approx(ref)


def test_rate_rule_pass_fail_inconclusive_on_planted_series():
    jb, jc, _, _ = t4.rate_judged(_planted())
    assert jb.verdict == "PASS" and jc.verdict == "PASS"
    # the rate alternatives the theory names, planted: n^{-1/3} and 1/sqrt(1 − p_n)
    assert t4.rate_judged(_planted(b=-1 / 3))[0].verdict == "FAIL"
    assert t4.rate_judged(_planted(c=0.5))[1].verdict == "FAIL"
    # re-rating a rate-(−1/2, 1) series moves its exponents by exactly (db, dc)
    df = _planted(noise=0.0, reps=2)
    _, _, _, cells = t4.rate_judged(df)
    jb2, jc2, _, _ = t4.rate_judged(t4.rerate(df, db=1 / 6, dc=-0.5), cells)
    assert jb2.estimate == pytest.approx(1 / 6, abs=1e-9)
    assert jc2.estimate == pytest.approx(-0.5, abs=1e-9)
    # two noisy repetitions decide nothing
    jb3, jc3, _, _ = t4.rate_judged(_planted(reps=2, noise=0.3, seed=5))
    assert jb3.verdict == "INCONCLUSIVE" and jc3.verdict == "INCONCLUSIVE"


def _trace_table(final, first, near, half, steps=20, every=10):
    """A `gd_trace`-shaped run table, one row per seed."""
    rows = []
    for k, (f, g, nm, hf) in enumerate(zip(final, first, near, half, strict=True)):
        row = {"rep": k, "n": 300, "p_n": 0.0, "clip_max_steps": steps, "record_every": every}
        for s, v in ((10, g), (20, f)):
            row.update({f"sin_theta_to_svd_s{s}": v, f"svd_residual_s{s}": v / 2})
            row.update({f"sin_theta_to_truth_s{s}": 0.4, f"grad_norm_s{s}": v})
        row.update(calib_near_miss=nm, calib_half=hf, calib_response=3.0)
        rows.append(row)
    return pd.DataFrame(rows)


FIXED = pd.DataFrame([{"kept": "1/2/3", "sin_theta_top_r": 0.0, "grad_norm": 1e-10}])


def test_svd_rule_and_its_calibration_rows_on_a_hand_built_trace():
    runs = _trace_table(
        final=[3e-15, 5e-15, 4e-15],
        first=[1.0, 1.1, 0.9],
        near=[2.0e-6, 2.001e-6, 1.999e-6],
        half=[5.0e-7, 5.001e-7, 4.999e-7],
    )
    res = t4._gd_svd(runs, FIXED)
    assert _row(res, "T4a", "evidence")[0].verdict == "PASS"
    assert _row(res, "T4a", "calibration", "FAIL")[0].verdict == "FAIL"
    assert _row(res, "T4a", "calibration", "PASS")[0].verdict == "PASS"
    assert _row(res, "T4a", "control")[0].verdict == "FAIL"
    assert all(r.ok for r in res)
    # the judged value is the per-seed max of the two distances, judged as a mean
    j = _row(res, "T4a", "evidence")[0].judged
    assert j.estimate == pytest.approx(4e-15) and j.n == 3


def test_gradient_rows_are_exact():
    df = pd.DataFrame([{
        "n_cases": 8, "max_rel_error": 3e-16, "max_rel_error_printed": 0.2,
        "max_rel_error_near_miss": 2e-8, "max_rel_error_half": 5e-9,
    }])  # fmt: skip
    res = t4._gradient(df)
    assert [r.verdict for r in res] == ["PASS", "FAIL", "PASS", "FAIL"]
    assert all(r.judged.deterministic for r in res) and all(r.ok for r in res)


def test_config_takes_a_count_or_explicit_seeds():
    cfg = t4.config("smoke", (10000, 10001))
    for sweep in t4.sweeps(cfg)[:5]:
        reps = {int(r.params["rep"]) for r in sweep.runs}
        assert reps == {10000, 10001}, sweep.name
    cfg = t4.config("smoke", 4)
    assert seed_list(cfg.detect_reps) == [0, 1, 2, 3] and seed_list(cfg.rate_reps) == [0, 1, 2, 3]
    for preset in ("smoke", "quick", "full"):  # the ranks every rule and calibration uses
        c = t4.config(preset)
        need = {t4.R_LOW, t4.R_HIGH, *t4.T4G_HALF}
        need |= {r for (pair, _) in t4.T4E_CALIB.values() for r in pair}
        assert need <= set(c.detect_ranks), preset
        assert {t4.R_LOW, t4.R_HIGH, *t4.T4D_HALF} <= set(c.unpaired_ranks), preset
        for reps in (c.gd_reps, c.rate_reps, c.unpaired_reps, c.detect_reps):
            assert len(seed_list(reps)) >= 2, preset  # every judged row needs >= 2 seeds


# --------------------------------------------------------------------------- (b) planted errors


@pytest.fixture(scope="module")
def smoke_rate():
    """The smoke grid's τ → ∞ estimator cells (n ∈ {100, 300} × p_n ∈ {0, 0.5}), 8 reps."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    cells = [(n, p) for n in (100, 300) for p in (0.0, 0.5)]
    rows = []
    for k in range(8):
        for c, (n, p) in enumerate(cells):
            out = lm.rate_cell(lm.rate_params(n, p, k, c))
            rows.append({"n": n, "p_n": p, "rep": k, **out})
    torch.set_num_threads(prev)
    return pd.DataFrame(rows)


def test_planted_exponent_errors_of_2x_fail_and_half_pass_at_smoke_size(smoke_rate):
    jb, jc, _, cells = t4.rate_judged(smoke_rate)
    assert jb.verdict == "PASS" and jc.verdict == "PASS"

    def judged(db=0.0, dc=0.0):
        return t4.rate_judged(t4.rerate(smoke_rate, db=db, dc=dc), cells)

    assert judged(db=2 * t4.B_TOL)[0].verdict == "FAIL"
    assert judged(db=0.5 * t4.B_TOL)[0].verdict == "PASS"
    assert judged(dc=-2 * t4.C_TOL)[1].verdict == "FAIL"
    assert judged(dc=-0.5 * t4.C_TOL)[1].verdict == "PASS"


def test_planted_error_in_g_fails_t4a_at_smoke_size():
    """GD to its fixed point (n=300, 200 steps), then G1 perturbed so that the check reads 2x
    / 0.5x SVD_TOL: the first FAILs, the second PASSes, the unperturbed G PASSes."""
    gd = ClipGDConfig(tau=1.0, nu=1.0, rho=1.0, lr=0.5, steps=200, tol=0.0)
    rows = []
    for k in range(2):
        p = {"n": 300, "p_n": 0.0, "r": 10, "rep": k, "record_every": 100, **lm.clip_params(gd)}
        rows.append({**p, **lm.gd_trace({**p, "calibrate": 1, "tol": t4.SVD_TOL})})
    res = t4._gd_svd(pd.DataFrame(rows), FIXED)
    assert _row(res, "T4a", "evidence")[0].verdict == "PASS"
    near = _row(res, "T4a", "calibration", "FAIL")[0].judged
    half = _row(res, "T4a", "calibration", "PASS")[0].judged
    assert near.verdict == "FAIL" and near.estimate == pytest.approx(2e-6, rel=1e-3)
    assert half.verdict == "PASS" and half.estimate == pytest.approx(5e-7, rel=1e-3)


# --------------------------------------------------------------------------- (c) calibrations


def test_detector_rows_and_calibrations_at_smoke_size():
    """The paper's detector at N = 1000 on 3 seeds: T4e's calibration pair and control, T4g's
    near miss (a detector that finds nothing: ratio ≈ 1)."""
    rows = []
    for k in range(3):
        for r in (10, 12, 14, 20, 25, 30):
            p = {"r": r, "rep": k, "n": 100, "N": 1000, "d1": 40, "d2": 39, "nu_refit": 2.0}
            rows.append({**p, **lm.detect_run(p)})
    t4e, t4g = t4._detect_claims(pd.DataFrame(rows))
    assert _row(t4e, "T4e", "evidence")[0].verdict == "PASS"
    assert _row(t4e, "T4e", "calibration", "FAIL")[0].verdict == "FAIL"
    assert _row(t4e, "T4e", "calibration", "PASS")[0].verdict == "PASS"
    assert _row(t4e, "T4e", "control")[0].verdict == "FAIL"
    assert _row(t4g, "T4g", "calibration", "FAIL")[0].verdict == "FAIL"
    # the detector keeps exactly N pairs, and the literal eq. 4.2 count is at least N
    assert all(x["n_literal"] >= 1000 and x["n_candidates"] >= 1000 for x in rows)


def test_top_n_detector_by_hand():
    s = torch.tensor([[5.0, 1.0, 0.0], [4.0, 3.0, 2.0], [0.0, 0.5, 1.0]])
    # row argmax: (0,0) 5, (1,0) 4, (2,2) 1; column argmax: (0,0), (1,1) 3, (1,2) 2
    i, j, n_cand, n_lit = lm.top_n_pairs(s)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 0), (1, 0), (1, 1)]
    assert n_cand == 5 and n_lit == 3  # pairs with s >= 3: (0,0), (1,0), (1,1)


def test_gradient_calibration_from_the_task():
    out = lm.gradient_identity({"n_cases": 4, "seed": 0})
    res = t4._gradient(pd.DataFrame([{"n_cases": 4, **out}]))
    assert [r.verdict for r in res] == ["PASS", "FAIL", "PASS", "FAIL"] and all(r.ok for r in res)
    assert out["max_rel_error_near_miss"] == pytest.approx(2e-8, rel=1e-6)

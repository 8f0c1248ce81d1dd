"""pmilab/verdicts.py against independent references.

References: hand arithmetic with t quantiles printed from a table (t_{0.95,4} = 2.131847,
t_{0.975,4} = 2.776445, t_{0.95,9} = 1.833113), the closed form of the t_4 cdf, a hand-worked
Holm list, and a numpy Monte Carlo of the rules for the power. Every check has a control that
the check fails at the size of a real error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import stats

from pmilab import verdicts as V

T95_4, T975_4, T95_9 = 2.131847, 2.776445, 1.833113
A = [1.0, 2.0, 3.0, 4.0, 5.0]  # mean 3, squared deviations 4+1+0+1+4 = 10, var 10/4
SE_A = math.sqrt(2.5 / 5)  # sqrt(0.5)
B = [float(i) for i in range(10)]  # mean 4.5, squared deviations 82.5, var 82.5/9
SE_B = math.sqrt(82.5 / 9 / 10)
TABLE = 1e-5  # the table's 6 decimals times an SE of order 1


# --------------------------------------------------------------------------- mean_ci


def test_mean_ci_by_hand():
    m, se, n, lo, hi = V.mean_ci(A, 0.05, "upper")
    assert (m, n, lo) == (3.0, 5, -math.inf)
    assert se == pytest.approx(SE_A, abs=1e-15)
    assert hi == pytest.approx(3 + T95_4 * SE_A, abs=TABLE)  # 4.507443
    m, se, n, lo, hi = V.mean_ci(A, 0.05, "lower")
    assert (lo, hi) == (pytest.approx(3 - T95_4 * SE_A, abs=TABLE), math.inf)
    _, _, _, lo, hi = V.mean_ci(A, 0.05, "two")  # 95 % two-sided: t_{0.975,4}
    assert (lo, hi) == (
        pytest.approx(3 - T975_4 * SE_A, abs=TABLE),
        pytest.approx(3 + T975_4 * SE_A, abs=TABLE),
    )
    _, se, n, lo, hi = V.mean_ci(B, 0.10, "two")  # 90 % two-sided: t_{0.95,9}
    assert (se, n) == (pytest.approx(SE_B, abs=1e-15), 10)
    assert hi == pytest.approx(4.5 + T95_9 * SE_B, abs=TABLE)  # 6.255067
    assert not V.mean_ci(A, 0.05, "two").deterministic


# the one-ulp control: scipy warns that two values one ulp apart have an imprecise variance
@pytest.mark.filterwarnings("ignore:Precision loss occurred in moment calculation")
def test_a_deterministic_cell_is_exact():
    ci = V.mean_ci([0.1, 0.1, 0.1], 0.05, "two")  # 0.1 + 0.1 + 0.1 = 0.30000000000000004
    assert ci == (0.1, 0.0, 3, 0.1, 0.1) and ci.deterministic
    j = V.judge([0.1, 0.1, 0.1], 0.1, "below")
    assert (j.verdict, j.deterministic, j.se, j.ci_low, j.ci_high) == ("FAIL", True, 0.0, 0.1, 0.1)
    assert V.judge([0.1, 0.1], math.nextafter(0.1, 1), "below").verdict == "PASS"  # exact
    assert V.judge([0.1, 0.1], 0.1, "above").verdict == "FAIL"  # equality fails a strict claim
    assert V.judge([0.1, 0.1], 0.09, "above").verdict == "PASS"
    # control: values one ulp apart are not deterministic, and then a tie is INCONCLUSIVE
    j = V.judge([0.1, math.nextafter(0.1, 1)], 0.1, "below")
    assert (j.deterministic, j.verdict) == (False, "INCONCLUSIVE")


@pytest.mark.parametrize("values", [[], [3.0], [[2.5]]])
def test_fewer_than_two_seeds_are_refused(values):
    with pytest.raises(ValueError, match="at least 2 seeds"):
        V.mean_ci(values, 0.05, "two")
    with pytest.raises(ValueError, match="at least 2 seeds"):
        V.judge(values, 1.0, "below")


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="finite"):
        V.judge([1.0, math.nan], 1.0, "below")
    with pytest.raises(ValueError, match="direction"):
        V.judge(A, 1.0, "under")
    with pytest.raises(ValueError, match="alpha"):
        V.judge(A, 1.0, "below", alpha=0.6)
    with pytest.raises(ValueError, match="side"):
        V.mean_ci(A, 0.05, "left")
    with pytest.raises(ValueError, match="tolerance"):
        V.judge_equivalence(A, 0.0)


# --------------------------------------------------------------------------- judge


def test_judge_by_hand():
    # [L, U] = 3 -+ 2.131847 * 0.707107 = [1.492557, 4.507443]
    j = V.judge(A, 5.0, "below")
    assert j.verdict == "PASS" and not j.deterministic  # U 4.507 < 5
    assert (j.ci_low, j.ci_high) == (
        pytest.approx(1.492557, abs=TABLE),
        pytest.approx(4.507443, abs=TABLE),
    )
    assert V.judge(A, 1.0, "below").verdict == "FAIL"  # L 1.4926 >= 1
    assert V.judge(A, 4.0, "below").verdict == "INCONCLUSIVE"  # L < 4 < U
    assert V.judge(A, 1.0, "above").verdict == "PASS"  # L > 1
    assert V.judge(A, 4.6, "above").verdict == "FAIL"  # U 4.507 <= 4.6
    # B: [4.5 -+ 1.833113 * 0.957427] = [2.744933, 6.255067]
    assert V.judge(B, 6.3, "below").verdict == "PASS"
    assert V.judge(B, 6.2, "below").verdict == "INCONCLUSIVE"  # control: 0.055 inside U
    assert V.judge(B, 2.7, "below").verdict == "FAIL"
    assert V.judge(B, 2.8, "below").verdict == "INCONCLUSIVE"


def test_the_p_values_match_the_t4_cdf_in_closed_form():
    # t_4 cdf: F(t) = 1/2 + t (t^2 + 6) / (2 (t^2 + 4)^(3/2)); t_obs = (3 - 5) / sqrt(0.5)
    t = (3 - 5) / SE_A
    f = 0.5 + t * (t * t + 6) / (2 * (t * t + 4) ** 1.5)  # 0.023710
    j = V.judge(A, 5.0, "below")
    assert j.p_value == pytest.approx(f, abs=1e-12) and j.p_fail == pytest.approx(1 - f, abs=1e-12)
    assert j.p_value < j.alpha  # PASS <=> p < alpha
    assert V.judge(A, 5.0, "above").p_value == pytest.approx(1 - f, abs=1e-12)


def test_as_row_has_exactly_the_recorded_columns():
    row = V.judge(A, 5.0, "below", power=0.83).as_row()
    assert list(row) == ["estimate", "se", "n", "ci_low", "ci_high", "alpha", "power", "verdict"]
    assert (row["estimate"], row["n"], row["power"], row["verdict"]) == (3.0, 5, 0.83, "PASS")
    assert math.isnan(V.judge(A, 5.0, "below").power)


def test_judge_from_stats_matches_judge():
    for thr in (1.0, 4.0, 5.0):
        assert (
            V.judge_from_stats(3.0, math.sqrt(2.5), 5, thr, "below")
            == V.judge(A, thr, "below").verdict
        )


# --------------------------------------------------------------------------- equivalence


def test_tost_by_hand():
    d = [-2.0, -1.0, 0.0, 1.0, 2.0]  # mean 0; 90 % interval 0 -+ 1.507443
    j = V.judge_equivalence(d, 2.0)
    assert (j.verdict, j.test) == ("PASS", "equivalence")
    assert j.ci_high == pytest.approx(T95_4 * SE_A, abs=TABLE)
    assert V.judge_equivalence(d, 1.5).verdict == "INCONCLUSIVE"  # 1.5074 straddles 1.5
    # outside: FAIL reads the 95 % interval, 10 -+ 1.963243 = [8.036757, 11.963243]
    far = [x + 10 for x in d]
    assert V.judge_equivalence(far, 5.0).verdict == "FAIL"
    assert V.judge_equivalence([-x for x in far], 5.0).verdict == "FAIL"
    # A: the 90 % interval [1.4926, 4.5074] is outside (-1.2, 1.2) but the 95 % one
    # [1.036757, 4.963243] is not: FAIL is a level-alpha test, alpha/2 for each outside side
    assert V.judge_equivalence(A, 1.2).verdict == "INCONCLUSIVE"
    assert V.judge_equivalence(A, 1.0).verdict == "FAIL"  # 1.0368 >= 1.0


def test_tost_deterministic_and_upper():
    assert V.judge_equivalence([0.5, 0.5], 0.5).verdict == "FAIL"  # |d| = tol fails strictly
    assert V.judge_equivalence([0.5, 0.5], 0.6).verdict == "PASS"
    assert V.judge_equivalence([-0.7, -0.7], 0.5).verdict == "FAIL"
    assert V.judge_equivalence_upper(A, 5.0).verdict == "PASS"  # U 4.507 < 5
    assert V.judge_equivalence_upper(A, 1.0).verdict == "FAIL"  # L 1.4926 >= 1
    assert V.judge_equivalence_upper(A, 4.0).verdict == "INCONCLUSIVE"


def test_tost_p_values():
    d = [-2.0, -1.0, 0.0, 1.0, 2.0]
    j = V.judge_equivalence(d, 2.0)  # both one-sided tests at t = 2/sqrt(0.5) = 2.828427
    t = -2 / SE_A
    f = 0.5 + t * (t * t + 6) / (2 * (t * t + 4) ** 1.5)
    assert j.p_value == pytest.approx(f, abs=1e-12)
    assert j.p_fail == 1.0  # 2 * P(T >= 2.83) on the far side is above 1


def test_paired():
    a, b = [1.0, 2.0, 4.0], [0.5, 2.5, 3.0]
    assert V.paired(a, b).tolist() == [0.5, -0.5, 1.0]
    assert V.paired({3: 4.0, 1: 1.0, 2: 2.0}, {1: 0.5, 2: 2.5, 3: 3.0}).tolist() == [0.5, -0.5, 1.0]
    with pytest.raises(ValueError, match="different numbers of seeds"):
        V.paired(a, b[:2])
    with pytest.raises(ValueError, match="different seeds"):
        V.paired({1: 1.0, 2: 2.0}, {1: 1.0, 3: 2.0})
    with pytest.raises(ValueError, match="not one of each"):
        V.paired({1: 1.0, 2: 2.0}, [1.0, 2.0])


# --------------------------------------------------------------------------- Holm


@pytest.mark.parametrize(
    "p, rejected",
    [
        # sorted 0.005 <= 0.05/4, 0.01 <= 0.05/3, 0.03 > 0.05/2: stop
        ([0.01, 0.04, 0.03, 0.005], [True, False, False, True]),
        ([0.01, 0.02, 0.03, 0.04], [True, False, False, False]),  # 0.02 > 0.0167
        ([0.001, 0.01, 0.02, 0.04], [True, True, True, True]),  # <= .0125, .0167, .025, .05
        ([0.001, 0.2, 0.04], [True, False, False]),  # 0.04 > 0.025 stops before 0.2
        ([0.06], [False]),
    ],
)
def test_holm_by_hand(p, rejected):
    assert V.holm(p, 0.05) == rejected


def test_holm_verdicts_pass_family_by_hand():
    exact = V.judge([0.0, 0.0], 1.0, "below")  # PASS exactly, p = 0: ranked first
    a = V.judge(A, 4.8, "below")  # U at 0.05 = 4.507 < 4.8; at 0.025, 3 + 2.776445 * 0.7071 = 4.963
    assert a.verdict == "PASS"
    out = V.holm_verdicts([exact, a])
    assert [j.verdict for j in out] == ["PASS", "PASS"] and V.claim_verdict(out) == "PASS"
    assert (out[0].alpha, out[1].alpha) == (0.025, 0.05)
    assert out[1].ci_high == pytest.approx(4.507443, abs=TABLE)
    # control: two such sub-cases; the first-ranked is re-judged at 0.025 and does not PASS
    out = V.holm_verdicts([a, a])
    assert [j.verdict for j in out] == ["INCONCLUSIVE", "INCONCLUSIVE"]
    assert out[0].ci_high == pytest.approx(3 + T975_4 * SE_A, abs=TABLE)
    assert V.claim_verdict(out) == "INCONCLUSIVE"


def test_holm_verdicts_fail_family_by_hand():
    a = V.judge(A, 1.2, "below")  # L at 0.05 = 1.4926 >= 1.2; at 0.025, 1.0368 < 1.2
    assert a.verdict == "FAIL"
    out = V.holm_verdicts([a, a])  # without Holm, 2 true sub-cases could FAIL at ~2 alpha
    assert [j.verdict for j in out] == ["INCONCLUSIVE", "INCONCLUSIVE"]
    exact = V.judge([5.0, 5.0], 1.2, "below")  # FAIL exactly, p_fail = 0: ranked first
    out = V.holm_verdicts([a, exact])
    assert [j.verdict for j in out] == ["FAIL", "FAIL"] and V.claim_verdict(out) == "FAIL"
    assert (out[0].alpha_fail, out[1].alpha_fail) == (0.05, 0.025)


def test_one_sub_case_is_judge_itself_and_claim_verdict():
    for thr in (1.0, 4.0, 5.0):
        j = V.judge(A, thr, "below")
        assert V.holm_verdicts([j]) == [j]
    p, f, i = (V.judge(A, t, "below") for t in (5.0, 1.0, 4.0))
    assert V.claim_verdict([p, f]) == "FAIL"
    assert V.claim_verdict([p, i]) == "INCONCLUSIVE"
    assert V.claim_verdict([i, f]) == "FAIL"
    assert V.claim_verdict([p, p]) == "PASS"


# --------------------------------------------------------------------------- power


def _simulate(kind, n, sd, gap, tol, reps=20_000, alpha=0.05, seed=0):
    """P(PASS), P(FAIL) of the rules written out here, for n normal values per experiment."""
    x = gap + sd * np.random.default_rng(seed).standard_normal((reps, n))
    m, se = x.mean(1), x.std(1, ddof=1) / math.sqrt(n)
    t = stats.t.ppf(1 - alpha, n - 1)
    if kind == "threshold":
        return np.mean(m + t * se < tol), np.mean(m - t * se >= tol)
    t2 = stats.t.ppf(1 - alpha / 2, n - 1)
    ok = (m - t * se > -tol) & (m + t * se < tol)
    return np.mean(ok), np.mean((m - t2 * se >= tol) | (m + t2 * se <= -tol))


MC = 3 * math.sqrt(0.8 * 0.2 / 20_000)  # three Monte Carlo SEs at power 0.8: 0.0085


@pytest.mark.parametrize("kind", ["threshold", "equivalence"])
def test_seeds_for_power_against_a_simulation(kind):
    sd, tol = 1.0, 0.5
    n = V.seeds_for_power(sd, tol, kind=kind)
    assert n == {"threshold": 27, "equivalence": 36}[kind]
    for k in (n, n - 1):
        p_pass, _ = _simulate(kind, k, sd, 0.0, tol, seed=k)
        _, p_fail = _simulate(kind, k, sd, 2 * tol, tol, seed=k + 1)
        assert abs(p_pass - V.power_at(k, sd, 0.0, tol, kind=kind)) < 0.01
        assert abs(p_fail - V.power_at(k, sd, 2 * tol, tol, kind=kind)) < 0.01
        if k == n:
            assert min(p_pass, p_fail) >= 0.8 - MC
    # n is the smallest: n - 1 misses 0.8 on at least one of the two
    exact = [V.power_at(n - 1, sd, g, tol, kind=kind) for g in (0.0, 2 * tol)]
    assert min(exact) < 0.8
    assert min(V.power_at(n, sd, g, tol, kind=kind) for g in (0.0, 2 * tol)) >= 0.8


@pytest.mark.parametrize("kind", ["threshold", "equivalence"])
def test_power_at_other_gaps_and_inconclusive(kind):
    for gap in (0.25, 0.5, 0.75, -0.4):
        if kind == "threshold" and gap < 0:
            continue
        probs = V.verdict_probabilities(12, 1.0, gap, 0.5, kind=kind)
        p_pass, p_fail = _simulate(kind, 12, 1.0, gap, 0.5, seed=7)
        assert abs(probs["PASS"] - p_pass) < 0.01 and abs(probs["FAIL"] - p_fail) < 0.01
        assert sum(probs.values()) == pytest.approx(1.0)


def test_the_simulated_rule_is_the_module_rule():
    rng = np.random.default_rng(3)
    for _ in range(150):
        x = rng.normal(0.5, 1.0, size=6)
        t, t2 = stats.t.ppf(0.95, 5), stats.t.ppf(0.975, 5)
        m, se = x.mean(), x.std(ddof=1) / math.sqrt(6)
        below = "PASS" if m + t * se < 0.6 else "FAIL" if m - t * se >= 0.6 else "INCONCLUSIVE"
        assert V.judge(x, 0.6, "below").verdict == below
        inside = -0.6 < m - t * se and m + t * se < 0.6
        outside = m - t2 * se >= 0.6 or m + t2 * se <= -0.6
        tost = "PASS" if inside else "FAIL" if outside else "INCONCLUSIVE"
        assert V.judge_equivalence(x, 0.6).verdict == tost


def test_power_edge_cases():
    assert V.seeds_for_power(0.0, 0.5) == 2  # a deterministic cell: two equal seeds suffice
    assert V.verdict_probabilities(2, 0.0, 0.5, 0.5) == {
        "PASS": 0.0,
        "FAIL": 1.0,
        "INCONCLUSIVE": 0.0,
    }
    with pytest.raises(ValueError, match="less than 80% power"):
        V.seeds_for_power(10.0, 0.1, max_n=50)
    with pytest.raises(ValueError, match="power"):
        V.seeds_for_power(1.0, 0.5, power=1.0)
    with pytest.raises(ValueError, match="sd"):
        V.power_at(5, -1.0, 0.0, 0.5)


def test_pilot_record():
    pilot = [0.1, 0.3, 0.2, 0.25, 0.15]
    rec = V.pilot_record(pilot, 0.2)
    sd = float(np.std(pilot, ddof=1))
    assert rec["pilot_n"] == 5 and rec["pilot_sd"] == pytest.approx(sd)
    assert rec["chosen_n"] == V.seeds_for_power(sd, 0.2)
    assert str(rec["chosen_n"]) in rec["reasoning"] and rec["reasoning"].count(".") >= 1


# --------------------------------------------------------------------------- controls


@pytest.mark.parametrize("kind", ["threshold", "equivalence"])
def test_calibration_pair_at_the_size_of_a_real_error(kind):
    """A planted 2x-tolerance error FAILs, a 0.5x one PASSes, with seeds chosen for power."""
    sd, tol = 1.0, 0.5
    rule = V.judge_equivalence_upper if kind == "threshold" else V.judge_equivalence
    # the 0.5x case lies tol/2 from the edge it must clear: design for tolerance tol/2
    n_half = V.seeds_for_power(sd, tol / 2, power=0.99, kind=kind)
    n_miss = V.seeds_for_power(sd, tol, power=0.99, kind=kind)
    assert V.power_at(n_half, sd, 0.5 * tol, tol, kind=kind) >= 0.99
    assert V.power_at(n_miss, sd, 2 * tol, tol, kind=kind) >= 0.99
    rng = np.random.default_rng(11)
    near_miss = rule(rng.normal(2 * tol, sd, n_miss), tol)
    half = rule(rng.normal(0.5 * tol, sd, n_half), tol)
    assert (near_miss.verdict, half.verdict) == ("FAIL", "PASS")
    assert V.calibration_ok(near_miss, half)
    # control: a check blind to the error (the near miss measured as if unbiased) fails the pair
    blind = rule(rng.normal(0.5 * tol, sd, n_miss), tol)
    assert not V.calibration_ok(blind, half)
    assert not V.calibration_ok(near_miss, V.judge_equivalence_upper(A, 4.0))  # INCONCLUSIVE


# --------------------------------------------------------------------------- properties

VALUES = st.lists(st.integers(-400, 400), min_size=2, max_size=12).map(
    lambda xs: np.array(xs, dtype=float) / 8
)  # dyadic: shifts by integers and negation are exact
THRESHOLD = st.integers(-400, 400).map(lambda k: k / 8)
DIRECTION = st.sampled_from(V.DIRECTIONS)
ALPHA = st.sampled_from([0.01, 0.05, 0.1])


@given(VALUES, THRESHOLD, st.integers(-(10**4), 10**4), DIRECTION, ALPHA)
def test_verdict_is_invariant_to_a_common_shift(v, thr, shift, direction, alpha):
    j0 = V.judge(v, thr, direction, alpha)
    if not j0.deterministic:  # away from a tie, where the shift's rounding could decide
        scale = 1 + abs(shift) + float(np.abs(v).max())
        assume(min(abs(j0.ci_low - thr), abs(j0.ci_high - thr)) > 1e-9 * scale)
    j1 = V.judge(v + shift, thr + shift, direction, alpha)
    assert j1.verdict == j0.verdict and j1.deterministic == j0.deterministic


@given(VALUES, THRESHOLD, DIRECTION, ALPHA)
def test_pass_and_fail_are_never_both_possible(v, thr, direction, alpha):
    j = V.judge(v, thr, direction, alpha)
    lo, hi = j.ci_low, j.ci_high
    assert lo <= hi
    if direction == "below":
        can_pass, can_fail = hi < thr, lo >= thr
    else:
        can_pass, can_fail = lo > thr, hi <= thr
    assert not (can_pass and can_fail)
    assert j.verdict == ("PASS" if can_pass else "FAIL" if can_fail else "INCONCLUSIVE")
    assert not (j.p_value < alpha and j.p_fail <= alpha)
    e = V.judge_equivalence(v, abs(thr) + 0.125, alpha)
    assert e.verdict in V.VERDICTS and not (e.p_value < alpha and e.p_fail <= alpha)


@given(
    st.floats(-10, 10),
    st.floats(0.01, 10),
    st.integers(2, 60),
    st.integers(1, 200),
    st.floats(-10, 10),
    DIRECTION,
    ALPHA,
)
def test_more_seeds_never_undo_a_decision(mean, sd, n, extra, thr, direction, alpha):
    before = V.judge_from_stats(mean, sd, n, thr, direction, alpha)
    after = V.judge_from_stats(mean, sd, n + extra, thr, direction, alpha)
    if before != "INCONCLUSIVE":
        assert after == before


@given(VALUES, THRESHOLD, ALPHA)
def test_swapping_direction_and_negating_mirrors_the_verdict(v, thr, alpha):
    below = V.judge(v, thr, "below", alpha)
    above = V.judge(-v, -thr, "above", alpha)
    assert above.verdict == below.verdict
    assert (above.ci_low, above.ci_high) == (-below.ci_high, -below.ci_low)
    assert above.p_value == pytest.approx(below.p_value, abs=1e-12)


def test_sd_upper_is_the_chi_square_bound_and_covers_the_true_spread():
    """Hand-worked: n = 4, sd 1: chi2_{0.2, 3} = 1.00517 (tables), sqrt(3 / 1.00517) = 1.7276.
    Simulated: over many 4-value pilots from N(0, 1), the bound is >= the true sd 1 in 80 %
    of them (within 3 Monte Carlo SEs), and the point estimate only in ~39 %."""
    assert V.sd_upper(1.0, 4, 0.8) == pytest.approx(math.sqrt(3 / 1.005174), rel=1e-5)
    assert V.sd_upper(0.0, 4) == 0.0
    rng = np.random.default_rng(11)
    sds = rng.standard_normal((20_000, 4)).std(axis=1, ddof=1)
    covered = np.mean([V.sd_upper(s, 4, 0.8) >= 1.0 for s in sds[:5000]])
    assert abs(covered - 0.8) < 3 * math.sqrt(0.8 * 0.2 / 5000)
    assert np.mean(sds >= 1.0) < 0.45  # why the point estimate under-sizes a study
    for bad in [(1.0, 1, 0.8), (1.0, 4, 1.0), (-1.0, 4, 0.8), (math.nan, 4, 0.8)]:
        with pytest.raises(ValueError):
            V.sd_upper(*bad)


def test_power_at_a_spread_far_below_the_tolerance_is_the_limit_not_a_crash():
    """A near-deterministic row (sd 6.6e-16 against a tolerance of 1e-6, T4a's pilot): scipy's
    noncentral t returns NaN at delta ~ 4e9; the power is then exactly the limit, 1 to PASS at
    gap 0 and 1 to FAIL at 2 tol (threshold rule: T4a's). Control: a moderate delta still goes
    through scipy."""
    assert V.power_at(8, 6.6e-16, 0.0, 1e-6, verdict="PASS") == pytest.approx(1.0)
    assert V.power_at(8, 6.6e-16, 2e-6, 1e-6, verdict="FAIL") == pytest.approx(1.0)
    assert V._nct_sf(1.9, 7, 4.27e9) == 1.0 and V._nct_sf(1.9, 7, -4.27e9) == 0.0
    assert V._nct_sf(1.9, 7, 3.0) == pytest.approx(float(stats.nct.sf(1.9, 7, 3.0)))


@pytest.mark.parametrize("n", [5, 8, 30])
def test_equivalence_pass_probability_at_a_tiny_spread(n):
    """A spread far below the tolerance (T4a's pilot: sd 6.6e-16 against 1e-6) passes TOST
    with certainty: |m| +- t s/sqrt(n) sits ~1e9 s inside the band. The integral over the sample
    sd once missed chi's mass there and gave 0."""
    for sd in (6.6e-16, 1e-12, 1e-9):
        probs = V.verdict_probabilities(n, sd, 0.0, 1e-6, kind="equivalence")
        assert probs["PASS"] == pytest.approx(1.0, abs=1e-9)
        assert probs["FAIL"] == pytest.approx(0.0, abs=1e-12)
    # ... and a gap of 2x the tolerance at the same spread FAILs with certainty
    assert V.power_at(n, 1e-12, 2e-6, 1e-6, kind="equivalence") == pytest.approx(1.0, abs=1e-9)
    # between the extremes it still agrees with simulation of the rule itself
    probs = V.verdict_probabilities(n, 0.2, 0.1, 0.5, kind="equivalence")
    p_pass, p_fail = _simulate("equivalence", n, 0.2, 0.1, 0.5, seed=5)
    assert abs(probs["PASS"] - p_pass) < 0.01 and abs(probs["FAIL"] - p_fail) < 0.01


def test_recentred_keeps_spread_and_n_and_moves_the_mean():
    """Hand-worked: [1, 2, 6] has mean 3; recentred on 0.5 it is [-1.5, -0.5, 3.5] (sd 2.65
    and n 3 unchanged); a dict keeps its seeds."""
    got = V.recentred([1.0, 2.0, 6.0], 0.5)
    np.testing.assert_allclose(got, [-1.5, -0.5, 3.5], rtol=0, atol=1e-15)
    assert np.std(got, ddof=1) == pytest.approx(np.std([1.0, 2.0, 6.0], ddof=1))
    assert V.recentred({7: 1.0, 3: 3.0}, 0.0) == {7: -1.0, 3: 1.0}
    with pytest.raises(ValueError, match="at least 2 seeds"):
        V.recentred([1.0], 0.0)

"""The statistics of verdicts, the one owner of PASS / FAIL / INCONCLUSIVE (THEORY.md, Verdicts).

A claim's measured value is a mean over seeds (the seed is the replicate), reported with its
standard error, its number of seeds and a Student-t confidence interval. The verdict is read off
the interval at a one-sided level alpha fixed before the run:

- `judge`: "the true value is below / above a threshold";
- `judge_equivalence`: "reaches / is invariant": two one-sided tests (TOST) on a gap that must
  be within +-tolerance; `judge_equivalence_upper`: a nonnegative error below a tolerance;
- `holm_verdicts`, `claim_verdict`: the sub-cases of one claim ("every K") and the claim's
  overall verdict, Holm-corrected;
- `seeds_for_power`, `power_at`, `pilot_record`: how many seeds, chosen before the run from a
  pilot's spread; `calibration_ok`: the calibration pair (a near miss FAILs, a half-size error
  PASSes).

Notation: n values x_i, mean m, sample sd s (ddof 1), se = s / sqrt(n), nu = n - 1 degrees of
freedom, t_q = the q-quantile of Student's t with nu degrees of freedom (scipy.stats.t).
The one-sided (1 - a) bounds are  U_a = m + t_{1-a} se  and  L_a = m - t_{1-a} se.

Every distribution comes from scipy.stats; nothing here depends on torch. Bad arguments raise
ValueError (a foundation module imports no other pmilab module, pmilab.errors included; the
claims that call these turn a refusal into their own error).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
from scipy import integrate, stats

VERDICTS = ("PASS", "FAIL", "INCONCLUSIVE")
DIRECTIONS = ("below", "above")
KINDS = ("threshold", "equivalence")


@dataclass(frozen=True)
class Judged:
    """One judged cell: the estimate, its interval, and the verdict read off the interval.

    `test` ("below" | "above" | "equivalence") and `threshold` (the threshold, or the tolerance
    for equivalence) say which rule made the verdict, so `holm_verdicts` can re-judge it at
    another level. `alpha` is the level of the PASS test and `alpha_fail` that of the FAIL test
    (equal unless Holm-adjusted). `p_value` is the PASS test's one-sided p-value (p_value <
    alpha <=> PASS up to rounding) and `p_fail` the FAIL test's. `power` is the design power
    recorded with the verdict (NaN when none was given).
    """

    estimate: float
    se: float
    n: int
    ci_low: float
    ci_high: float
    alpha: float
    power: float
    verdict: str
    deterministic: bool
    test: str = "below"
    threshold: float = math.nan
    p_value: float = math.nan
    p_fail: float = math.nan
    alpha_fail: float = math.nan

    def as_row(self) -> dict:
        """The columns a claims table records for this cell."""
        return {
            "estimate": self.estimate,
            "se": self.se,
            "n": self.n,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "alpha": self.alpha,
            "power": self.power,
            "verdict": self.verdict,
        }


class Interval(NamedTuple):
    """`mean_ci`'s answer: unpacks as (mean, se, n, lo, hi); `deterministic` when se == 0."""

    mean: float
    se: float
    n: int
    lo: float
    hi: float

    @property
    def deterministic(self) -> bool:
        """All values were bit-identical: the seeds showed no spread, the value is exact."""
        return self.se == 0.0


# --------------------------------------------------------------------------- intervals


def _values(values) -> np.ndarray:
    """A 1-D float array of >= 2 finite values.

    One value says nothing about its spread, and it cannot show that a quantity does not vary
    with the seed either: a deterministic cell is one whose >= 2 seeds agree to the last bit.
    """
    v = np.asarray(values, dtype=float).ravel()
    if v.size < 2:
        raise ValueError(
            f"need at least 2 seeds to judge a value, got {v.size}: one value says nothing about its spread"
        )
    if not np.all(np.isfinite(v)):
        raise ValueError(f"values must be finite, got {v.tolist()}")
    return v


def _check_alpha(alpha: float, top: float = 0.5) -> float:
    if not 0.0 < alpha <= top:
        raise ValueError(f"alpha must be in (0, {top}], got {alpha}")
    return float(alpha)


def _t(alpha: float, n: int) -> float:
    """t_{1-alpha, n-1}: the one-sided critical value at level alpha."""
    return float(stats.t.ppf(1.0 - alpha, n - 1))


def _summary(v: np.ndarray) -> tuple[float, float]:
    """(mean, se); exactly (v, 0.0) when all values are equal, since the mean of equal floats
    is not always bit-equal to them (0.1 + 0.1 + 0.1 != 0.3)."""
    if np.all(v == v[0]):
        return float(v[0]), 0.0
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))


def bound(mean: float, se: float, n: int, alpha: float, upper: bool) -> float:
    """The one-sided (1 - alpha) bound: U = m + t_{1-alpha,n-1} se, or L = m - t se (m if se 0)."""
    if se == 0.0:
        return mean
    h = _t(alpha, n) * se
    return mean + h if upper else mean - h


def mean_ci(values, alpha: float, side: str) -> Interval:
    """Mean, SE, n and the Student-t interval at level alpha.

    side "upper": (-inf, m + t_{1-alpha,nu} se];  "lower": [m - t_{1-alpha,nu} se, inf);
    "two": [m - t_{1-alpha/2,nu} se, m + t_{1-alpha/2,nu} se].
    Refuses n < 2. All values equal to the last bit: se 0 and the interval [v, v] (for every
    side: a deterministic value is known exactly), flagged by `.deterministic`.
    """
    v = _values(values)
    _check_alpha(alpha, top=1.0 if side == "two" else 0.5)
    m, se = _summary(v)
    n = v.size
    if side == "upper":
        lo, hi = -math.inf, bound(m, se, n, alpha, upper=True)
    elif side == "lower":
        lo, hi = bound(m, se, n, alpha, upper=False), math.inf
    elif side == "two":
        lo, hi = bound(m, se, n, alpha / 2, False), bound(m, se, n, alpha / 2, True)
    else:
        raise ValueError(f"side must be 'upper', 'lower' or 'two', got {side!r}")
    if se == 0.0:
        lo = hi = m
    return Interval(m, se, n, lo, hi)


# --------------------------------------------------------------------------- the rules


def _one_sided(mean, se, n, threshold, direction, alpha, alpha_fail) -> tuple[str, float, float]:
    """(verdict, ci_low, ci_high) of a threshold claim from its summary statistics.

    "below" (claim: mu < threshold):  PASS iff U_alpha < threshold;  FAIL iff L_afail >= threshold.
    "above" (claim: mu > threshold):  PASS iff L_alpha > threshold;  FAIL iff U_afail <= threshold.
    PASS is the one-sided t test of H0 "mu >= thr" (below) at level alpha; FAIL is the one-sided
    t test of H0 "mu < thr" (the claim holds) at level alpha_fail: each errs with probability
    <= its level. Since L <= U (alpha, alpha_fail <= 0.5) PASS and FAIL exclude each other.
    Equality FAILs a strict claim: that is what makes a deterministic cell (L = U = value) exact.
    """
    if direction == "below":
        hi = bound(mean, se, n, alpha, upper=True)
        lo = bound(mean, se, n, alpha_fail, upper=False)
        verdict = "PASS" if hi < threshold else "FAIL" if lo >= threshold else "INCONCLUSIVE"
    elif direction == "above":
        lo = bound(mean, se, n, alpha, upper=False)
        hi = bound(mean, se, n, alpha_fail, upper=True)
        verdict = "PASS" if lo > threshold else "FAIL" if hi <= threshold else "INCONCLUSIVE"
    else:
        raise ValueError(f"direction must be 'below' or 'above', got {direction!r}")
    return verdict, lo, hi


def _tost(mean, se, n, tolerance, alpha, alpha_fail) -> tuple[str, float, float]:
    """(verdict, ci_low, ci_high) of an equivalence claim |mu| < tolerance, from its summary.

    PASS (TOST): the (1 - 2 alpha) two-sided interval [L_alpha, U_alpha] lies inside the open
    band (-tol, tol): both one-sided tests "mu < tol" and "mu > -tol" reject at level alpha,
    so PASS errs with probability <= alpha.
    FAIL: the (1 - alpha_fail) two-sided interval [L_{afail/2}, U_{afail/2}] lies outside the
    open band (L >= tol or U <= -tol). FAIL is the union of two one-sided tests; alpha_fail/2
    each keeps its error <= alpha_fail for every |mu| < tol (with alpha_fail each, it would
    reach 2 alpha_fail when se >> tol). A boundary touch counts as outside, so a deterministic
    gap equal to the tolerance FAILs the strict claim, as in `judge`.
    The reported interval is the PASS one, [L_alpha, U_alpha].
    """
    lo = bound(mean, se, n, alpha, upper=False)
    hi = bound(mean, se, n, alpha, upper=True)
    lo_f = bound(mean, se, n, alpha_fail / 2, upper=False)
    hi_f = bound(mean, se, n, alpha_fail / 2, upper=True)
    if -tolerance < lo and hi < tolerance:
        verdict = "PASS"
    elif lo_f >= tolerance or hi_f <= -tolerance:
        verdict = "FAIL"
    else:
        verdict = "INCONCLUSIVE"
    return verdict, lo, hi


def _rule(j: Judged, alpha: float, alpha_fail: float) -> tuple[str, float, float]:
    """Re-judge a cell from its summary at other levels (Holm)."""
    if j.test == "equivalence":
        return _tost(j.estimate, j.se, j.n, j.threshold, alpha, alpha_fail)
    return _one_sided(j.estimate, j.se, j.n, j.threshold, j.test, alpha, alpha_fail)


def judge_from_stats(
    mean: float, sd: float, n: int, threshold: float, direction: str, alpha: float = 0.05
) -> str:
    """The verdict of `judge` for a sample with this mean, sd (ddof 1) and size n (n >= 2)."""
    if n < 2:
        raise ValueError(f"need at least 2 seeds, got {n}")
    _check_alpha(alpha)
    return _one_sided(mean, sd / math.sqrt(n), n, threshold, direction, alpha, alpha)[0]


def _p_values(v: np.ndarray, threshold: float, direction: str) -> tuple[float, float]:
    """(p of the PASS test, p of the FAIL test): one-sided one-sample t tests against threshold.

    below: PASS p = P(T <= t_obs) (alternative "less"), FAIL p = P(T >= t_obs) ("greater");
    above: the mirror. PASS at level a <=> p < a; FAIL <=> p_fail <= a.
    """
    with warnings.catch_warnings():  # near-identical seeds: scipy warns of precision loss in
        warnings.simplefilter("ignore", RuntimeWarning)  # the moments; the p-value stays right
        less = float(stats.ttest_1samp(v, threshold, alternative="less").pvalue)
        greater = float(stats.ttest_1samp(v, threshold, alternative="greater").pvalue)
    return (less, greater) if direction == "below" else (greater, less)


def _exact_p(verdict: str) -> tuple[float, float]:
    """A deterministic cell's p-values: 0 for the test its exact verdict rejects, else 1."""
    return (0.0 if verdict == "PASS" else 1.0), (0.0 if verdict == "FAIL" else 1.0)


def judge(
    values, threshold: float, direction: str, alpha: float = 0.05, power: float = math.nan
) -> Judged:
    """Judge "the true mean is below (or above) `threshold`" at one-sided level alpha.

    below: PASS iff the upper bound U = m + t_{1-alpha,n-1} se < threshold (the whole
    one-sided interval lies below); FAIL iff the lower bound L = m - t_{1-alpha,n-1} se >=
    threshold; else INCONCLUSIVE. above: PASS iff L > threshold; FAIL iff U <= threshold.
    Each test errs with probability <= alpha; the reported [ci_low, ci_high] = [L, U] is the
    (1 - 2 alpha) two-sided interval. A deterministic cell (>= 2 bit-identical values) is
    judged exactly: value < threshold PASSes "below", equality FAILs (the claim is strict).
    `power`: the design power (`power_at` / `seeds_for_power`), recorded with the verdict.
    """
    v = _values(values)
    _check_alpha(alpha)
    m, se = _summary(v)
    verdict, lo, hi = _one_sided(m, se, v.size, threshold, direction, alpha, alpha)
    p_pass, p_fail = _exact_p(verdict) if se == 0.0 else _p_values(v, threshold, direction)
    return Judged(
        m, se, v.size, lo, hi, alpha, float(power), verdict, se == 0.0,
        direction, float(threshold), p_pass, p_fail, alpha,
    )  # fmt: skip


def judge_equivalence(
    diffs, tolerance: float, alpha: float = 0.05, power: float = math.nan
) -> Judged:
    """Judge "the true gap is within +-tolerance" ("reaches", "is invariant") by TOST.

    PASS iff the (1 - 2 alpha) interval [m - t_{1-alpha} se, m + t_{1-alpha} se] lies inside
    (-tol, tol) (the upper confidence bound of |gap| is below the tolerance, not the mean);
    FAIL iff the (1 - alpha) interval [m -+ t_{1-alpha/2} se] lies outside (-tol, tol); else
    INCONCLUSIVE. Both errs have probability <= alpha (see `_tost`). Deterministic diffs are
    judged exactly: |d| < tol PASSes, |d| >= tol FAILs. Pair the arms first (`paired`).
    """
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    v = _values(diffs)
    _check_alpha(alpha)
    m, se = _summary(v)
    verdict, lo, hi = _tost(m, se, v.size, tolerance, alpha, alpha)
    if se == 0.0:
        p_pass, p_fail = _exact_p(verdict)
    else:
        below_hi, above_hi = _p_values(v, tolerance, "below")  # H1: mu < tol, mu > tol
        above_lo, below_lo = _p_values(v, -tolerance, "above")  # H1: mu > -tol, mu < -tol
        p_pass = max(below_hi, above_lo)  # TOST: both one-sided tests must reject
        p_fail = min(1.0, 2.0 * min(above_hi, below_lo))  # Bonferroni over the two outsides
    return Judged(
        m, se, v.size, lo, hi, alpha, float(power), verdict, se == 0.0,
        "equivalence", float(tolerance), p_pass, p_fail, alpha,
    )  # fmt: skip


def judge_equivalence_upper(
    values, tolerance: float, alpha: float = 0.05, power: float = math.nan
) -> Judged:
    """Judge a nonnegative error (a distance, a gap's size) that must be below `tolerance`.

    One-sided: PASS iff U = m + t_{1-alpha} se < tol; FAIL iff L = m - t_{1-alpha} se >= tol
    (equality FAILs, see `judge`). This is `judge(values, tolerance, "below")`; the values are
    not required to be >= 0, since an unbiased estimate of a small error can dip below zero.
    """
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    return judge(values, tolerance, "below", alpha, power)


def paired(a, b) -> np.ndarray:
    """The per-seed differences a - b of two arms run on the same seeds (common random numbers).

    Sequences must have equal lengths (position i is seed i in both); dicts seed -> value must
    have the same seeds, and the differences come in sorted seed order. Pairing removes the
    seed-to-seed variation the arms share, so the gap's SE is that of the difference.
    """
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)):
            raise ValueError("pair two dicts seed -> value, or two sequences, not one of each")
        if set(a) != set(b):
            raise ValueError(
                f"the arms ran on different seeds: only in a {sorted(set(a) - set(b))}, only in b {sorted(set(b) - set(a))}"
            )
        seeds = sorted(a)
        return np.array([a[s] for s in seeds], float) - np.array([b[s] for s in seeds], float)
    x, y = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if x.size != y.size:
        raise ValueError(f"the arms have different numbers of seeds: {x.size} and {y.size}")
    return x - y


def recentred(values, target: float):
    """A calibration case with a known mean and a real spread: the per-seed values moved so
    that their mean is `target`, each seed's deviation from the mean kept (v_s - mean + target).

    A case "wrong by k x the tolerance" built this way has exactly the mean k x tol and the
    measured spread and n of the row it calibrates, whatever the head's own error is (a field
    added on top of a head's logits gives the head's error plus k x tol instead: docs/theory.md
    T9, "Restated rules"). Sequences and dicts seed -> value keep their form and order."""
    if isinstance(values, dict):
        v = _values(list(values.values()))
        return dict(zip(values, (v - v.mean() + float(target)).tolist(), strict=True))
    v = _values(values)
    return v - v.mean() + float(target)


# --------------------------------------------------------------------------- many sub-cases


def holm(p_values, alpha: float = 0.05) -> list[bool]:
    """Holm's step-down: which hypotheses are rejected, in input order.

    Sort p ascending, p_(1) <= ... <= p_(m); reject H_(k) while p_(j) <= alpha / (m - j + 1)
    for every j <= k, and stop at the first that is not. The family-wise error is <= alpha
    for any dependence between the tests.
    """
    p = np.asarray(p_values, dtype=float).ravel()
    m = p.size
    rejected = [False] * m
    for k, i in enumerate(np.argsort(p, kind="stable")):
        if not p[i] <= alpha / (m - k):
            break
        rejected[int(i)] = True
    return rejected


def _step_down(judged: list[Judged], key: str, alpha: float) -> tuple[list[float], list[bool]]:
    """Each cell's Holm level alpha / (m - k + 1) (k its rank by `key`'s p-value) and whether
    the step-down reaches and rejects it, re-judged by the interval rule at that level."""
    m = len(judged)
    levels, hit = [alpha] * m, [False] * m
    going = True
    for k, i in enumerate(np.argsort([getattr(j, key) for j in judged], kind="stable")):
        i = int(i)
        levels[i] = alpha / (m - k)
        want = "PASS" if key == "p_value" else "FAIL"
        going = going and _rule(judged[i], levels[i], levels[i])[0] == want
        hit[i] = going
    return levels, hit


def holm_verdicts(judged: list[Judged], alpha: float | None = None) -> list[Judged]:
    """Re-judge a claim's sub-cases with Holm's correction, PASS and FAIL each as a family.

    The PASS tests form one family: rank the sub-cases by the PASS p-value; the k-th is
    re-judged at alpha / (m - k + 1) and PASSes only if every earlier-ranked one did (step-
    down). The FAIL tests form a second family, ranked by the FAIL p-value, the same way:
    "the claim FAILs if any sub-case FAILs" needs it, or m true sub-cases would FAIL one of
    them with probability up to m alpha. Each family's error is <= alpha. Each returned cell
    carries its levels (`alpha` for PASS, `alpha_fail` for FAIL) and the interval bounds at
    those levels. alpha defaults to the cells' common alpha.
    """
    if not judged:
        return []
    if alpha is None:
        alphas = {j.alpha for j in judged}
        if len(alphas) != 1:
            raise ValueError(f"the sub-cases were judged at different levels: {sorted(alphas)}")
        alpha = alphas.pop()
    _check_alpha(alpha)
    a_pass, pass_ok = _step_down(judged, "p_value", alpha)
    a_fail, fail_ok = _step_down(judged, "p_fail", alpha)
    out = []
    for j, ap, af, ok_p, ok_f in zip(judged, a_pass, a_fail, pass_ok, fail_ok, strict=True):
        _, lo, hi = _rule(j, ap, af)
        verdict = "PASS" if ok_p else "FAIL" if ok_f else "INCONCLUSIVE"
        out.append(replace(j, ci_low=lo, ci_high=hi, alpha=ap, alpha_fail=af, verdict=verdict))
    return out


def claim_verdict(judged: list[Judged]) -> str:
    """A claim's overall verdict from its (Holm-judged) sub-cases.

    PASS if every sub-case PASSes (the claim holds for all of them), FAIL if any FAILs (one
    sure counterexample refutes it, whatever the others say), else INCONCLUSIVE.
    """
    if not judged:
        raise ValueError("a claim needs at least one judged sub-case")
    verdicts = [j.verdict for j in judged]
    if all(v == "PASS" for v in verdicts):
        return "PASS"
    return "FAIL" if "FAIL" in verdicts else "INCONCLUSIVE"


# --------------------------------------------------------------------------- power


def _check_design(n: int, sd: float, tolerance: float, alpha: float, kind: str) -> None:
    if n < 2:
        raise ValueError(f"need at least 2 seeds, got {n}")
    if not (sd >= 0 and math.isfinite(sd)):
        raise ValueError(f"sd must be finite and >= 0, got {sd}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    _check_alpha(alpha)


def _nct_sf(x: float, nu: int, delta: float) -> float:
    """P(T >= x) for T ~ noncentral t(nu, delta); the lower tail is P(T <= x) = _nct_sf(-x,
    nu, -delta), since -T ~ nct(nu, -delta). scipy's nct.cdf returns NaN deep in a tail
    (e.g. nct.cdf(-2, 36, 9)) where its sf does not; the complement covers any NaN left."""
    p = float(stats.nct.sf(x, nu, delta))
    if not math.isfinite(p):
        p = 1.0 - float(stats.nct.cdf(x, nu, delta))
    if not math.isfinite(p) and abs(delta) > _NCT_FAR * max(1.0, abs(x)):
        # T = (Z + delta) / sqrt(V / nu): with |delta| this far beyond x, T falls on x's other
        # side only if Z or the chi-square V is absurdly far out (scipy returns NaN here, e.g.
        # a spread of 1e-16 against a tolerance of 1e-6: delta ~ 1e10): the limit is exact to
        # double precision
        p = 1.0 if delta > x else 0.0
    if not math.isfinite(p):
        raise ArithmeticError(f"noncentral t tail not computable at x={x}, nu={nu}, delta={delta}")
    return min(1.0, max(0.0, p))


# how far beyond x the noncentrality must lie for `_nct_sf` to take its limit (see there): at
# 1e4, P(T on x's other side) <= P(sqrt(V / nu) > 1e4 / 2) + P(|Z| > 5e3), far below 1e-300
_NCT_FAR = 1e4


def _tost_pass_probability(n: int, sd: float, gap: float, tol: float, alpha: float) -> float:
    """P(TOST PASS) exactly, by one integral over the sample sd (Owen's Q).

    Given s, PASS iff -tol + t s/sqrt(n) < m < tol - t s/sqrt(n), with m ~ N(gap, sd^2/n)
    independent of s, and u = sqrt(nu) s / sd ~ chi(nu):
        P = int_0^{u*} [Phi(sqrt(n)(tol - gap)/sd - t u/sqrt(nu))
                        - Phi(sqrt(n)(-tol - gap)/sd + t u/sqrt(nu))] chi_nu(u) du,
    u* = sqrt(nu n) tol / (t sd), where the band closes. (The two one-sided nct terms alone
    give only the lower bound P(A) + P(B) - 1, loose when sd is comparable to tol.)
    The integral runs on chi's probability scale, q = F_chi(u) in [0, F_chi(u*)], where the
    integrand is bounded by 1 and smooth: over u, a spread far below the tolerance puts u* at
    ~1e10 while all of chi's mass lies near sqrt(nu), and quadrature over [0, u*] missed it
    (P(PASS) came out 0 instead of 1).
    """
    nu, t = n - 1, _t(alpha, n)
    a, b = math.sqrt(n) * (tol - gap) / sd, math.sqrt(n) * (-tol - gap) / sd
    c = t / math.sqrt(nu)

    def band(q: float) -> float:
        u = float(stats.chi.ppf(q, nu))
        return max(0.0, float(stats.norm.cdf(a - c * u) - stats.norm.cdf(b + c * u)))

    q_max = float(stats.chi.cdf(math.sqrt(nu * n) * tol / (t * sd), nu))
    return float(integrate.quad(band, 0.0, q_max, limit=200, epsabs=1e-12)[0])


def verdict_probabilities(
    n: int, sd: float, gap: float, tolerance: float, alpha: float = 0.05, kind: str = "threshold"
) -> dict[str, float]:
    """P(PASS), P(FAIL), P(INCONCLUSIVE) of a rule for n i.i.d. N(gap, sd^2) values.

    kind "threshold": `judge(values, tolerance, "below", alpha)`, i.e. an error with true value
    `gap` that must be below `tolerance` (`judge_equivalence_upper`). With T = (m - tol) / se
    ~ noncentral t (nu = n - 1, delta = sqrt(n) (gap - tol) / sd):
        P(PASS) = P(T < -t_{1-alpha}) = nct.cdf(-t, nu, delta) = nct.sf(t, nu, -delta),
        P(FAIL) = P(T >= t_{1-alpha}) = nct.sf(t, nu, delta).
    kind "equivalence": `judge_equivalence(values, tolerance, alpha)`. P(PASS) by
    `_tost_pass_probability`; with t' = t_{1-alpha/2} the FAIL events are disjoint, so
        P(FAIL) = nct.sf(t', nu, sqrt(n)(gap - tol)/sd) + nct.cdf(-t', nu, sqrt(n)(gap + tol)/sd).
    sd = 0: the cell is deterministic and the verdict exact.
    """
    _check_design(n, sd, tolerance, alpha, kind)
    if sd == 0.0:
        if kind == "threshold":
            verdict = _one_sided(gap, 0.0, n, tolerance, "below", alpha, alpha)[0]
        else:
            verdict = _tost(gap, 0.0, n, tolerance, alpha, alpha)[0]
        return {v: float(v == verdict) for v in VERDICTS}
    nu, rn = n - 1, math.sqrt(n)
    if kind == "threshold":
        t, delta = _t(alpha, n), rn * (gap - tolerance) / sd
        p_pass = _nct_sf(t, nu, -delta)  # P(T <= -t)
        p_fail = _nct_sf(t, nu, delta)
    else:
        t2 = _t(alpha / 2, n)
        p_pass = _tost_pass_probability(n, sd, gap, tolerance, alpha)
        p_fail = _nct_sf(t2, nu, rn * (gap - tolerance) / sd) + _nct_sf(
            t2, nu, -rn * (gap + tolerance) / sd
        )  # P(T_hi >= t') + P(T_lo <= -t')
    return {"PASS": p_pass, "FAIL": p_fail, "INCONCLUSIVE": max(0.0, 1.0 - p_pass - p_fail)}


def power_at(
    n: int,
    sd: float,
    gap: float,
    tolerance: float,
    alpha: float = 0.05,
    kind: str = "threshold",
    verdict: str | None = None,
) -> float:
    """The probability that n seeds give `verdict` when the true gap is `gap`.

    verdict None: the right one, PASS when the claim holds at this gap (gap < tol for
    "threshold", |gap| < tol for "equivalence"), FAIL otherwise. See `verdict_probabilities`.
    """
    holds = gap < tolerance if kind == "threshold" else abs(gap) < tolerance
    want = verdict or ("PASS" if holds else "FAIL")
    return verdict_probabilities(n, sd, gap, tolerance, alpha, kind)[want]


def _first_candidate(sd, tolerance, alpha, power, kind, max_n) -> int:
    """The smallest n whose necessary conditions hold, from vectorised nct tails over all n.

    The search for `seeds_for_power` starts here, so the exact (integral) TOST PASS power is
    computed for a few n only. Necessary: P(FAIL | 2 tol) >= power (exact), and for TOST
    P(PASS | 0) <= min of its two one-sided terms, P(T_hi < -t) = P(T_lo > t) by symmetry,
    with T_hi ~ nct(nu, -sqrt(n) tol / sd). For "threshold" these are the exact conditions.
    """
    _check_design(2, sd, tolerance, alpha, kind)
    if sd == 0.0:
        return 2
    n = np.arange(2, max_n + 1)
    nu, delta = n - 1, np.sqrt(n) * tolerance / sd
    t = stats.t.ppf(1.0 - alpha, nu)
    ok = stats.nct.sf(t, nu, delta) >= power  # PASS at gap 0 (threshold: = FAIL at 2 tol)
    if kind == "equivalence":
        t2 = stats.t.ppf(1.0 - alpha / 2, nu)
        ok &= stats.nct.sf(t2, nu, delta) + stats.nct.sf(t2, nu, -3 * delta) >= power
    hits = np.flatnonzero(np.nan_to_num(ok, nan=0.0))
    return int(n[hits[0]]) if hits.size else max_n + 1


def seeds_for_power(
    sd: float,
    tolerance: float,
    alpha: float = 0.05,
    power: float = 0.8,
    kind: str = "threshold",
    max_n: int = 1000,
) -> int:
    """The smallest n >= 2 with P(PASS | gap 0) >= power and P(FAIL | gap 2 tol) >= power.

    Exactly: min { n in [2, max_n] : power_at(n, sd, 0, tol) >= power and
    power_at(n, sd, 2 tol, tol) >= power }, with the rule of `kind` at level alpha and
    per-seed sd `sd` (normal values). For "threshold" the two cases sit tol either side of
    the threshold and have the same power, nct.sf(t_{1-alpha,n-1}, n-1, sqrt(n) tol / sd).
    Refuses when max_n seeds are not enough (the spread dwarfs the tolerance: tighten the
    measurement instead of adding seeds).
    """
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")
    for n in range(_first_candidate(sd, tolerance, alpha, power, kind, max_n), max_n + 1):
        ok_pass = power_at(n, sd, 0.0, tolerance, alpha, kind, "PASS") >= power
        if ok_pass and power_at(n, sd, 2 * tolerance, tolerance, alpha, kind, "FAIL") >= power:
            return n
    raise ValueError(
        f"{max_n} seeds give less than {power:.0%} power at sd {sd:.3g} and tolerance {tolerance:.3g}"
    )


def sd_upper(sd: float, n: int, confidence: float = 0.8) -> float:
    """The one-sided upper confidence bound of a normal spread from n pilot values with sample
    sd `sd`: sd · sqrt((n - 1) / chi2_{1 - confidence, n - 1}). A pilot of a few seeds
    underestimates the spread about half the time; sizing a study with this bound instead of the
    point estimate keeps the design power with probability `confidence` (Browne 1995, "On the
    use of a pilot sample for sample size determination", Stat. Med. 14:1933)."""
    if n < 2:
        raise ValueError(f"an upper bound of the spread needs n >= 2, got {n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not (math.isfinite(sd) and sd >= 0):
        raise ValueError(f"sd must be finite and >= 0, got {sd}")
    return float(sd) * math.sqrt((n - 1) / stats.chi2.ppf(1.0 - confidence, n - 1))


def pilot_record(
    values,
    tolerance: float,
    alpha: float = 0.05,
    power: float = 0.8,
    kind: str = "threshold",
    max_n: int = 1000,
) -> dict:
    """The seed-count decision for a claim's record, from pilot seeds the verdict never uses.

    The pilot's sample sd (ddof 1) stands in for the per-seed spread; the chosen n is
    `seeds_for_power(pilot_sd, tolerance, ...)`.
    """
    v = _values(values)
    sd = float(v.std(ddof=1))
    n = seeds_for_power(sd, tolerance, alpha, power, kind, max_n)
    return {
        "pilot_n": int(v.size),
        "pilot_sd": sd,
        "chosen_n": n,
        "tolerance": float(tolerance),
        "alpha": float(alpha),
        "power": float(power),
        "kind": kind,
        "reasoning": (
            f"{v.size} pilot seeds give a per-seed sd of {sd:.3g}; {n} seeds is the smallest count "
            f"with >= {power:.0%} probability, at one-sided level {alpha:g} ({kind} rule), to PASS "
            f"when the true gap is 0 and to FAIL when it is 2x the tolerance {tolerance:g}."
        ),
    }


def calibration_ok(judged_near_miss: Judged, judged_half: Judged) -> bool:
    """The calibration pair: the near miss (wrong by ~2x tolerance) must FAIL and the 0.5x
    case must PASS; otherwise the check cannot tell a real error from an acceptable one."""
    return judged_near_miss.verdict == "FAIL" and judged_half.verdict == "PASS"


# --------------------------------------------------------------------------- rows of a report


def exact(value: float, threshold: float, test: str = "below", n: int = 1) -> Judged:
    """A deterministic cell: a value computed exactly (a closed form, an exact sum, or n seeds
    that agree to the last bit), judged exactly. `test` "below" / "above" / "equivalence"
    (|value| < threshold). se 0, interval [value, value], `deterministic` True; equality FAILs
    the strict claim, as in `judge`."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"an exact value must be finite, got {value}")
    if test == "equivalence":
        if not threshold > 0:
            raise ValueError(f"tolerance must be > 0, got {threshold}")
        verdict = _tost(value, 0.0, max(n, 2), threshold, 0.05, 0.05)[0]
    else:
        verdict = _one_sided(value, 0.0, max(n, 2), threshold, test, 0.05, 0.05)[0]
    p_pass, p_fail = _exact_p(verdict)
    return Judged(
        value, 0.0, int(n), value, value, 0.05, math.nan, verdict, True,
        test, float(threshold), p_pass, p_fail, 0.05,
    )  # fmt: skip


def decisive(judged: list[Judged]) -> Judged:
    """One claim's sub-cases (Holm-judged with `holm_verdicts`) as one row: the sub-case that
    decides the claim's verdict (`claim_verdict`), carrying that verdict.

    FAIL: the FAILing sub-case with the smallest FAIL p-value (the surest counterexample);
    PASS or INCONCLUSIVE: the sub-case with the largest PASS p-value (the weakest link)."""
    verdict = claim_verdict(judged)
    if verdict == "FAIL":
        pick = min((j for j in judged if j.verdict == "FAIL"), key=lambda j: j.p_fail)
    else:
        pick = max(judged, key=lambda j: (j.verdict != "PASS", j.p_value))
    return replace(pick, verdict=verdict)

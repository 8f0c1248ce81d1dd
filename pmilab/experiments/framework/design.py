"""Seed counts fixed before the verdict's run, from a power analysis on pilot seeds.

THEORY.md, "Verdicts": the per-seed spread is estimated on pilot seeds that the verdict never
uses (`PILOT_BASE` + 0, 1, ...; a verdict run uses seeds 0, 1, ...), and each claim's seed count
is the smallest n with >= `POWER` probability to PASS when the true gap is 0 and to FAIL when it
is twice the tolerance (`pmilab.verdicts.seeds_for_power`).

The design is family-aware (RULE_VERSION 2, from the second quick record on): each row is
powered at the level its decisive sub-case was judged at in the pilot, Holm's adjusted level
(the smaller of its PASS and FAIL levels), not at the nominal alpha; and at the pilot spread's
80 % upper confidence bound (`verdicts.sd_upper`), not at the point estimate. The first record
(nominal alpha, point estimate) left two calibration cases of reports/quick INCONCLUSIVE; one,
T1c's near miss, had 3 seeds judged at Holm's alpha / 3 with a spread 3x the 4-seed pilot's.

- `pilot_design(results, ...)`: the per-row records of one claim's pilot run;
- `pmilab power --preset P` (`pmilab.cli.power`) runs the pilots and writes the record
  `pmilab/experiments/claims/design/<preset>.json` (kept in the repo, cited by the reports,
  with a readable copy under results/power/);
- `design_seeds(preset, claim)`: the recorded count the preset runs with;
- `planned_power(row, ...)`: the design power of a verdict at the seed count it ran with,
  written into its `power` column.

One owner: every place that turns a preset into a claim config calls `claim_config`.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from functools import cache
from pathlib import Path

from pmilab import verdicts as V
from pmilab.experiments.framework.claim import ClaimModule, ClaimResult, check_preset

PILOT_BASE = 10_000  # pilot seeds: far from every verdict seed (0, 1, ...)
POWER = 0.8
SD_CONFIDENCE = 0.8  # the pilot spread's upper confidence bound the design powers against
# Every claim runs on at least this many seeds (issue "many seeds as one computation": >= 5 in
# every stochastic cell). Below it a one-sided t bound at Holm's levels is fragile: at n = 3 and
# alpha / 3 its quantile is 5.3 (T1c's near miss came out INCONCLUSIVE that way), at n = 5 it is 3.0.
MIN_SEEDS = 5
RULE_VERSION = 2
RULE = (
    "smallest n with P(PASS | gap 0) >= power and P(FAIL | gap 2 tol) >= power, per judged "
    "evidence and calibration row (pmilab.verdicts.seeds_for_power), at the Holm level the row's "
    "decisive sub-case had in the pilot and at the pilot sd's 80% upper confidence bound "
    "(pmilab.verdicts.sd_upper); a claim's count is the largest its rows need, at least "
    "MIN_SEEDS = 5"
)
DESIGN_DIR = Path(__file__).resolve().parents[1] / "claims" / "design"
# rows whose spread decides the seed count: the claims and the calibration pairs
DESIGNED = ("evidence", "calibration")


def pilot_seeds(k: int) -> tuple[int, ...]:
    return tuple(range(PILOT_BASE, PILOT_BASE + int(k)))


def row_keys(results: list[ClaimResult]) -> list[str]:
    """A stable key per row: 'T2b|evidence|' plus '#k' for the k-th repeat of that triple."""
    seen: dict[str, int] = {}
    keys = []
    for r in results:
        base = f"{r.claim}|{r.kind}|{r.expect}"
        k = seen[base] = seen.get(base, -1) + 1
        keys.append(base if k == 0 else f"{base}#{k}")
    return keys


def design_tolerance(j: V.Judged) -> float:
    """The effect size the design powers against: the equivalence tolerance, or the distance
    of a threshold from 0 (the claims state errors and gaps so that 0 is the ideal value).
    NaN when it is 0 (the row has no scale and is not designed)."""
    tol = abs(j.threshold)
    return tol if tol > 0 and math.isfinite(tol) else math.nan


def pilot_design(
    results: list[ClaimResult], alpha: float = 0.05, power: float = POWER, max_n: int = 1000
) -> list[dict]:
    """Per designed row of one claim's pilot run: its pilot sd and the seeds it needs.

    A deterministic row needs 2 seeds (it is exact); a row without a scale or whose spread
    needs more than max_n seeds says so in `reasoning` and sets `chosen_n` to None."""
    out = []
    for key, r in zip(row_keys(results), results, strict=True):
        j = r.judged
        if r.kind not in DESIGNED or j is None:
            continue
        rec = {"row": key, "statement": r.statement, "pilot_n": j.n, "pilot_estimate": j.estimate}
        kind = "equivalence" if j.test == "equivalence" else "threshold"
        tol = design_tolerance(j)
        sd = j.se * math.sqrt(j.n)
        level = row_level(j, alpha)
        rec.update(pilot_sd=sd, tolerance=tol, alpha=level, power=power, kind=kind)
        if j.deterministic:
            rec.update(chosen_n=2, reasoning="deterministic on the pilot: judged exactly")
        elif math.isnan(tol):
            rec.update(chosen_n=None, reasoning="threshold 0: no scale to power against")
        else:
            upper = V.sd_upper(sd, j.n, SD_CONFIDENCE) if j.n >= 2 else sd
            rec["design_sd"] = upper
            try:
                n = V.seeds_for_power(upper, tol, level, power, kind, max_n)
                rec.update(
                    chosen_n=n,
                    reasoning=f"pilot sd {sd:.3g} on {j.n} seeds, {SD_CONFIDENCE:.0%} upper bound "
                    f"{upper:.3g}; {n} seeds give >= {power:.0%} power to PASS at gap 0 and to "
                    f"FAIL at 2x the tolerance {tol:.3g} ({kind} rule, one-sided alpha "
                    f"{level:.3g}, the row's Holm level)",
                )
            except ValueError as e:
                rec.update(chosen_n=None, reasoning=str(e))
        out.append(rec)
    return out


def row_level(j: V.Judged, alpha: float) -> float:
    """The level a row is powered at: the smaller of the Holm levels its decisive sub-case had
    (`alpha` for PASS, `alpha_fail` for FAIL), never above the nominal `alpha`."""
    levels = [a for a in (j.alpha, j.alpha_fail) if math.isfinite(a) and a > 0]
    return min([alpha, *levels])


@cache
def read_design(preset: str) -> dict:
    """The recorded design of a preset ({} when none was recorded)."""
    path = DESIGN_DIR / f"{check_preset(preset)}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def design_seeds(preset: str, claim: str) -> int | None:
    """The seed count the record fixes for this claim and preset (None: the preset's own)."""
    return read_design(preset).get("claims", {}).get(claim, {}).get("seeds")


def claim_config(mod: ClaimModule, preset: str, seeds=None):
    """A claim's config: --seeds when given, else the recorded design's count, else the
    preset's default."""
    return mod.config(check_preset(preset), seeds or design_seeds(preset, mod.CLAIM))


def planned_power(results: list[ClaimResult], preset: str) -> list[ClaimResult]:
    """The rows with their design power: min(P(PASS | gap 0), P(FAIL | gap 2 tol)) at the seed
    count each ran with and the pilot's per-seed sd, for every designed row the record holds."""
    rows = {
        rec["row"]: rec
        for c in read_design(preset).get("claims", {}).values()
        for rec in c.get("rows", [])
    }
    if not rows:
        return results
    out = []
    for key, r in zip(row_keys(results), results, strict=True):
        rec, j = rows.get(key), r.judged
        if rec is None or j is None or j.n < 2 or rec.get("chosen_n") is None:
            out.append(r)
            continue
        if rec["pilot_sd"] == 0.0 or j.deterministic:
            p = 1.0
        else:  # the record's own spread and level (design_sd: records of RULE_VERSION 2)
            args = (j.n, rec.get("design_sd", rec["pilot_sd"]))
            tol, kind, level = rec["tolerance"], rec["kind"], rec.get("alpha", j.alpha)
            p = min(
                V.power_at(*args, 0.0, tol, level, kind, "PASS"),
                V.power_at(*args, 2 * tol, tol, level, kind, "FAIL"),
            )
        out.append(replace(r, judged=replace(j, power=p)))
    return out

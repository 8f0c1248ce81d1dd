"""The claim contract: what every claim module provides, and the row each verdict produces.

A claim module (`pmilab.experiments.claims.t1` ... `t6`) checks one claim of docs/theory.md.
It satisfies `ClaimModule`, a `typing.Protocol` that a module satisfies structurally (as bmi's
`interface.py` does for samplers; it lives with every other Protocol in `pmilab.interfaces`):

    CLAIM: str                                  "T2"
    TITLE: str                                  one line: what the claim says
    config(preset, seeds=None) -> Config        a frozen dataclass; preset in PRESETS
    sweeps(cfg) -> list[Sweep]                  the runs, as plain-text parameters
    evaluate(tables, cfg) -> list[ClaimResult]  the verdicts, from the finished run tables

Every verdict rule lives in `evaluate` (and the helpers next to it). Figures read the results
table and these rows; they never recompute a verdict (docs/architecture.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from pmilab import verdicts as V
from pmilab.errors import InputError
from pmilab.interfaces import ClaimModule  # noqa: F401  (re-exported: its one owner is there)
from pmilab.verdicts import Judged

# smoke: seconds, for tests and notebooks (its numbers are meaningless); quick: minutes on
# 2 CPU cores (`pmilab verify --quick`, `make verify`); full: the recorded reports/full run.
PRESETS = ("smoke", "quick", "full")


# What a row is (docs/theory.md, "How to read this page"):
# - evidence:        a check that could FAIL if the theory were wrong;
# - implementation:  an identity only a bug can break (loss_N >= 0, a floor that holds by
#                    construction); reported apart from the evidence;
# - finding:         a number the theory does not predict; reported with no verdict;
# - calibration:     the claim's own rule on a case wrong by a known amount: the near miss
#                    (~2x the tolerance) must FAIL and the half-size case (~0.5x) must PASS
#                    (`expect`); `pmilab verify` exits 1 when one comes out otherwise;
# - control:         a strawman the same check must FAIL (shuffled pairs ...), kept only beside
#                    a calibration pair; `pmilab verify` exits 1 if it does not FAIL.
KINDS = ("evidence", "implementation", "finding", "calibration", "control")
# The columns of a judged row (`pmilab.verdicts.Judged.as_row`), in claims.csv.
STAT_COLUMNS = ("estimate", "se", "n", "ci_low", "ci_high", "alpha", "power", "verdict")


@dataclass(frozen=True)
class ClaimResult:
    """One row of `report.md`.

    claim:      docs/theory.md ID with a sub-letter, e.g. "T4a".
    statement:  what is checked, in one sentence (for a control: what the control is).
    measured:   the measured value (a float), or a short string when it is a tuple of numbers.
    threshold:  the pass condition as text, e.g. "<= 0.05"; the justification lives in the code.
    passed:     True / False for PASS / FAIL, None for INCONCLUSIVE and for a finding. A judged
                row takes it from `judged.verdict` (use `judged_row`).
    figure:     path of the figure (relative to the output dir) that shows it, or "".
    detail:     extra numbers a reader needs to judge the row (seeds, n, standard errors).
    kind:       one of KINDS.
    judged:     the statistics the verdict was read from (`pmilab.verdicts`): estimate, se,
                n, one-sided interval, alpha, design power, verdict; None for a finding.
    expect:     for a calibration row, the verdict it must have ("FAIL" or "PASS").
    """

    claim: str
    statement: str
    measured: float | str
    threshold: str
    passed: bool | None
    figure: str = ""
    detail: str = ""
    kind: str = "evidence"
    judged: Judged | None = None
    expect: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "finding":
            if self.passed is not None or self.judged is not None:
                raise ValueError(f"{self.claim}: a finding has no verdict")
        elif self.judged is None and self.passed is None:
            raise ValueError(f"{self.claim}: every row but a finding has a verdict")
        if self.judged is not None and self.passed != _PASSED[self.judged.verdict]:
            raise ValueError(f"{self.claim}: passed disagrees with the judged verdict")
        if (self.kind == "calibration") != (self.expect in ("PASS", "FAIL")):
            raise ValueError(f"{self.claim}: a calibration row, and only one, expects PASS or FAIL")

    @property
    def verdict(self) -> str:
        """PASS, FAIL, INCONCLUSIVE, or "—" for a finding."""
        if self.judged is not None:
            return self.judged.verdict
        return "—" if self.passed is None else ("PASS" if self.passed else "FAIL")

    @property
    def ok(self) -> bool:
        """True when this row is as it must be: evidence and implementation checks do not FAIL
        (INCONCLUSIVE is reported and counted, not an error), a calibration row has its
        expected verdict, a control FAILs; a finding is always ok."""
        if self.kind == "finding":
            return True
        if self.kind == "calibration":
            return self.verdict == self.expect
        if self.kind == "control":
            return self.verdict == "FAIL"
        return self.verdict != "FAIL"

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in (
            "claim", "kind", "statement", "measured", "threshold", "passed", "figure", "detail",
        )}  # fmt: skip
        stats = self.judged.as_row() if self.judged is not None else {}
        for c in STAT_COLUMNS:
            d[c] = stats.get(c, "")
        d["verdict"] = self.verdict
        d["deterministic"] = self.judged.deterministic if self.judged is not None else ""
        d["expect"] = self.expect
        return d


_PASSED = {"PASS": True, "FAIL": False, "INCONCLUSIVE": None}


def judged_row(
    claim: str,
    statement: str,
    judged: Judged | list[Judged],
    threshold: str,
    kind: str = "evidence",
    figure: str = "",
    detail: str = "",
    measured=None,
    expect: str = "",
) -> ClaimResult:
    """A row whose verdict is read off an interval (`pmilab.verdicts`).

    judged: one cell, or a claim's sub-cases ("every K"): those are Holm-corrected as one
    family (`holm_verdicts`) and the row carries the deciding one (`decisive`).
    measured: what the report shows as measured (default: the estimate).
    """
    if isinstance(judged, list):
        judged = V.decisive(V.holm_verdicts(judged))
    return ClaimResult(
        claim,
        statement,
        judged.estimate if measured is None else measured,
        threshold,
        _PASSED[judged.verdict],
        figure,
        detail,
        kind,
        judged,
        expect,
    )


def calibration(
    claim: str,
    statement: str,
    judged: Judged | list[Judged],
    threshold: str,
    expect: str,
    figure: str = "",
    detail: str = "",
    measured=None,
) -> ClaimResult:
    """A calibration row: the claim's own rule on a case wrong by a known amount. expect
    "FAIL" for the near miss (~2x the tolerance), "PASS" for the half-size case (~0.5x)."""
    return judged_row(
        claim, statement, judged, threshold, "calibration", figure, detail, measured, expect
    )


def control(
    claim: str, statement: str, measured, threshold: str, passed, figure: str = "", detail: str = ""
) -> ClaimResult:
    """A strawman control row (unjudged): `passed` is the claim's own check on it."""
    return ClaimResult(
        claim, statement, measured, threshold, bool(passed), figure, detail, "control"
    )


def implementation(
    claim: str, statement: str, measured, threshold: str, passed, figure: str = "", detail: str = ""
) -> ClaimResult:
    """An implementation check (unjudged): an identity only a bug can break. Prefer
    `judged_row(..., kind="implementation")` with `verdicts.exact` or `verdicts.judge`."""
    return ClaimResult(
        claim, statement, measured, threshold, bool(passed), figure, detail, "implementation"
    )


def finding(claim: str, statement: str, measured, detail: str, figure: str = "") -> ClaimResult:
    """A finding: numbers the theory does not predict, with no verdict."""
    return ClaimResult(claim, statement, measured, "", None, figure, detail, "finding")


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    return preset


def seeded_preset(claim: str, presets: dict, preset: str, seeds=None):
    """`presets[preset]` (a config dataclass with a `seeds` field), its seeds replaced when
    `seeds` is given; a claim judged on means over seeds refuses fewer than 2 in one line."""
    from pmilab.experiments.framework.sweep import seed_list

    cfg = presets[check_preset(preset)]
    cfg = replace(cfg, seeds=seeds) if seeds else cfg
    if len(seed_list(cfg.seeds)) < 2:
        raise InputError(f"{claim} judges means over seeds: it needs >= 2 seeds, got {cfg.seeds!r}")
    return cfg


def fmt(v: float, digits: int = 3) -> str:
    """A number for a report cell: `digits` significant digits, 'nan' for a missing value."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return f"{v:.{digits}g}"


def fig(name: str) -> str:
    """Report-relative path of a figure: every figure lives in DIR/figures/."""
    return f"figures/{name}.png"

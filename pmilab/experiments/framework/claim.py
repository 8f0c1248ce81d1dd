"""The claim contract: what every claim module provides, and the row each verdict produces.

A claim module (`pmilab.experiments.claims.t1` ... `t6`) checks one claim of docs/theory.md.
It satisfies `ClaimModule`, a `typing.Protocol` that a module satisfies structurally (as bmi's
`interface.py` does for samplers):

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
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from pmilab.errors import InputError
from pmilab.experiments.framework.sweep import Sweep

# smoke: seconds, for tests and notebooks (its numbers are meaningless); quick: minutes on
# 2 CPU cores (`pmilab verify --quick`, `make verify`); full: the recorded reports/full run.
PRESETS = ("smoke", "quick", "full")


# What a row is (docs/theory.md, "How to read this page"):
# - evidence:        a check that could FAIL if the theory were wrong;
# - implementation:  an identity only a bug can break (loss_N >= 0, a floor that holds by
#                    construction); reported apart from the evidence;
# - finding:         a number the theory does not predict; reported with no verdict;
# - control:         the same check run on a deliberate case the theory says must FAIL; its
#                    `passed` must be False, and `pmilab verify` exits 1 if it is True.
KINDS = ("evidence", "implementation", "finding", "control")


@dataclass(frozen=True)
class ClaimResult:
    """One row of `report.md`.

    claim:      docs/theory.md ID with a sub-letter, e.g. "T4a".
    statement:  what is checked, in one sentence (for a control: what the control is).
    measured:   the measured value (a float), or a short string when it is a tuple of numbers.
    threshold:  the pass condition as text, e.g. "<= 0.05"; the justification lives in the code.
    passed:     the verdict (None for a finding, which has none).
    figure:     path of the figure (relative to the output dir) that shows it, or "".
    detail:     extra numbers a reader needs to judge the row (seeds, n, standard errors).
    kind:       one of KINDS.
    """

    claim: str
    statement: str
    measured: float | str
    threshold: str
    passed: bool | None
    figure: str = ""
    detail: str = ""
    kind: str = "evidence"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if (self.passed is None) != (self.kind == "finding"):
            raise ValueError(f"{self.claim}: a finding has no verdict, every other row has one")

    @property
    def ok(self) -> bool:
        """True when this row is as it must be: evidence and implementation checks PASS, a
        control FAILs; a finding is always ok."""
        if self.kind == "finding":
            return True
        return (not self.passed) if self.kind == "control" else bool(self.passed)

    @property
    def verdict(self) -> str:
        return "—" if self.passed is None else ("PASS" if self.passed else "FAIL")

    def as_dict(self) -> dict:
        return asdict(self)


def control(
    claim: str, statement: str, measured, threshold: str, passed, figure: str = "", detail: str = ""
) -> ClaimResult:
    """A control row: `passed` is the verdict of the claim's own check on the control."""
    return ClaimResult(
        claim, statement, measured, threshold, bool(passed), figure, detail, "control"
    )


def implementation(
    claim: str, statement: str, measured, threshold: str, passed, figure: str = "", detail: str = ""
) -> ClaimResult:
    """An implementation check: an identity only a bug can break."""
    return ClaimResult(
        claim, statement, measured, threshold, bool(passed), figure, detail, "implementation"
    )


def finding(claim: str, statement: str, measured, detail: str, figure: str = "") -> ClaimResult:
    """A finding: numbers the theory does not predict, with no verdict."""
    return ClaimResult(claim, statement, measured, "", None, figure, detail, "finding")


@runtime_checkable
class ClaimModule(Protocol):
    """What `pmilab verify` needs of a claim module (see the module docstring)."""

    CLAIM: str
    TITLE: str

    def config(self, preset: str, seeds: int | None = None) -> Any: ...

    def sweeps(self, cfg: Any) -> list[Sweep]: ...

    def evaluate(self, tables: dict[str, pd.DataFrame], cfg: Any) -> list[ClaimResult]: ...


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    return preset


def fmt(v: float, digits: int = 3) -> str:
    """A number for a report cell: `digits` significant digits, 'nan' for a missing value."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return f"{v:.{digits}g}"


def fig(name: str) -> str:
    """Report-relative path of a figure: every figure lives in DIR/figures/."""
    return f"figures/{name}.png"

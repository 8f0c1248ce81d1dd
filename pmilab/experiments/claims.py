"""The row every theory check produces: one claim of THEORY.md, measured, with its verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ClaimResult:
    """One row of `report.md`.

    claim:      THEORY.md ID with a sub-letter, e.g. "T4a".
    statement:  what is checked, in one sentence.
    measured:   the measured value (a float), or a short string when it is a tuple of numbers.
    threshold:  the pass condition as text, e.g. "<= 0.05"; the justification lives in the code.
    passed:     the verdict.
    figure:     path of the figure (relative to the output dir) that shows it, or "".
    detail:     extra numbers a reader needs to judge the row (seeds, n, standard errors).
    """

    claim: str
    statement: str
    measured: float | str
    threshold: str
    passed: bool
    figure: str = ""
    detail: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

"""Presets that disagree: a claim whose verdict differs between two verify reports is flagged
in both (issue 23: "a claim whose verdict differs between the presets is flagged in both").

Rows are matched by `design.row_keys` (claim ID, kind, expected verdict, and the repeat index).
`flag_reports(a, b)` writes a "## Preset agreement" section at the end of each report.md (an
earlier one is replaced), naming the other report and every row whose verdict differs.
"""

from __future__ import annotations

import json
from pathlib import Path

from pmilab import atomic
from pmilab.errors import InputError
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.experiments.framework.design import row_keys
from pmilab.experiments.framework.report import read_claims

SECTION = "## Preset agreement"


def disagreements(a: list[ClaimResult], b: list[ClaimResult]) -> list[tuple[str, str, str]]:
    """(row key, verdict in a, verdict in b) for every row both hold with different verdicts;
    a row only one of them holds counts as ("only in one", ...)."""
    va = dict(zip(row_keys(a), (r.verdict for r in a), strict=True))
    vb = dict(zip(row_keys(b), (r.verdict for r in b), strict=True))
    out = [(k, va.get(k, "absent"), vb.get(k, "absent")) for k in dict.fromkeys([*va, *vb])]
    return [(k, x, y) for k, x, y in out if x != y]


def _preset(d: Path) -> str:
    try:
        return json.loads((d / "meta.json").read_text())["preset"]
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{d} is not a pmilab verify directory ({e})") from None


def _section(me: str, other: Path, other_preset: str, diff, mine_first: bool) -> str:
    lines = [SECTION, ""]
    if not diff:
        lines.append(f"Every row has the same verdict in the {other_preset} report ({other}).")
    else:
        lines += [
            f"**{len(diff)} rows differ from the {other_preset} report** ({other}): a verdict "
            "that depends on the preset is a finding about the budget or the seeds, not about "
            "the theory, until explained.",
            "",
            f"| row | {me} | {other_preset} |",
            "|---|---|---|",
        ]
        for k, x, y in diff:
            mine, theirs = (x, y) if mine_first else (y, x)
            lines.append(f"| {k} | {mine} | {theirs} |")
    return "\n".join(lines) + "\n"


def _rewrite(report: Path, section: str) -> None:
    text = report.read_text()
    head = text.split("\n" + SECTION)[0].rstrip("\n")
    atomic.write_text(report, head + "\n\n" + section)


def flag_reports(dir_a: Path, dir_b: Path) -> list[tuple[str, str, str]]:
    """Compare two verify directories' verdicts; write the agreement section into both."""
    dir_a, dir_b = Path(dir_a), Path(dir_b)
    pa, pb = _preset(dir_a), _preset(dir_b)
    diff = disagreements(read_claims(dir_a), read_claims(dir_b))
    _rewrite(dir_a / "report.md", _section(pa, dir_b, pb, diff, True))
    _rewrite(dir_b / "report.md", _section(pb, dir_a, pa, diff, False))
    return diff

"""The verify report files and how to read them back.

Written into a verify output directory DIR:
- `report.md`: one row per claim (ID, statement, measured, threshold, PASS/FAIL, figure);
- `claims.csv`: the same rows (`ClaimResult` fields), which figures read their verdicts from;
- `results.csv`: every run of every sweep, one row each, with a `table` column naming its
  sweep. Each cell is the exact text of the run table (floats as repr, which round-trips), so
  `read_tables` gives back each sweep's table typed exactly as `sweep.load_table` types it.

All three are written atomically (`pmilab.atomic`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from pmilab import atomic
from pmilab.errors import InputError
from pmilab.experiments.framework.claim import STAT_COLUMNS, ClaimResult
from pmilab.experiments.framework.sweep import Sweep, typed_table
from pmilab.verdicts import Judged

CLAIM_COLUMNS = [
    "claim", "kind", "statement", "measured", "threshold", "passed", "figure", "detail",
    *STAT_COLUMNS, "deterministic", "expect",
]  # fmt: skip


def fmt_measured(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def claims_frame(results: list[ClaimResult]) -> pd.DataFrame:
    return pd.DataFrame([r.as_dict() for r in results], columns=CLAIM_COLUMNS)


def results_text(tables: dict[str, tuple[list[str], list[dict[str, str]]]]) -> str:
    """results.csv: the union of the tables' columns (in order of appearance) plus `table`."""
    columns: list[str] = []
    for cols, _ in tables.values():
        columns += [c for c in cols if c not in columns]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*columns, "table"])
    for name, (_, rows) in tables.items():
        for r in rows:
            w.writerow([*(r.get(c, "") for c in columns), name])
    return buf.getvalue()


SECTIONS = {
    "evidence": ("Claims", "Each row could FAIL if the theory were wrong."),
    "implementation": (
        "Implementation checks",
        "Identities only a bug can break (they hold by construction); not evidence.",
    ),
    "finding": ("Findings", "Numbers the theory does not predict: reported, not judged."),
    "calibration": (
        "Calibration pairs",
        "Each claim's own rule on a case wrong by a known amount: the near miss (about 2x the "
        "tolerance) must FAIL and the half-size case (about 0.5x) must PASS. One that comes out "
        "otherwise means the check cannot tell a real error from an acceptable one; verify "
        "exits 1.",
    ),
    "control": (
        "Controls",
        "Strawmen (shuffled pairs, ...) the same check must FAIL, kept beside the calibration "
        "pairs; a control that does not FAIL means the check cannot fail, and verify exits 1.",
    ),
}


def control_verdict(r: ClaimResult) -> str:
    return "FAIL (as it must)" if r.ok else f"**{r.verdict}: the check cannot fail**"


def verdict_cell(r: ClaimResult) -> str:
    if r.kind == "control":
        return control_verdict(r)
    if r.kind == "calibration":
        return f"{r.verdict} (as it must)" if r.ok else f"**{r.verdict}, must {r.expect}**"
    return f"**{r.verdict}**" if r.verdict in ("FAIL", "INCONCLUSIVE") else r.verdict


def interval_cell(j: Judged | None) -> str:
    """'0.0213 [0.0150, 0.0276]', or the value with '(exact)' for a deterministic cell."""
    if j is None:
        return ""
    if j.deterministic:
        return f"{j.estimate:.4g} (exact)"
    return f"{j.estimate:.4g} ± {j.se:.2g} [{j.ci_low:.4g}, {j.ci_high:.4g}]"


def power_cell(j: Judged | None) -> str:
    return "" if j is None or j.power != j.power else f"{j.power:.0%}"


def counts(results: list[ClaimResult]) -> str:
    """'claims 14/17 PASS, 2 FAIL, 1 INCONCLUSIVE; ...; calibration 34/34 as they must; controls
    9/9 FAIL as they must'."""
    parts = []
    for kind, label in (("evidence", "claims"), ("implementation", "implementation checks")):
        rows = [r for r in results if r.kind == kind]
        if rows:
            v = [r.verdict for r in rows]
            text = f"{label} {v.count('PASS')}/{len(rows)} PASS"
            for other in ("FAIL", "INCONCLUSIVE"):
                if v.count(other):
                    text += f", {v.count(other)} {other}"
            parts.append(text)
    cal = [r for r in results if r.kind == "calibration"]
    if cal:
        parts.append(f"calibration {sum(r.ok for r in cal)}/{len(cal)} as they must")
    ctl = [r for r in results if r.kind == "control"]
    if ctl:
        parts.append(f"controls {sum(r.ok for r in ctl)}/{len(ctl)} FAIL as they must")
    fnd = [r for r in results if r.kind == "finding"]
    if fnd:
        parts.append(f"{len(fnd)} findings")
    return "; ".join(parts)


def write_report(
    out_dir: Path,
    results: list[ClaimResult],
    tables: dict[str, tuple[list[str], list[dict[str, str]]]],
    header: dict[str, str],
) -> Path:
    """Write report.md, claims.csv and results.csv (every run of every sweep) into out_dir.

    tables: sweep name -> (its columns, its rows as text cells), e.g. from `sweep.raw_rows`.
    report.md has one table per kind of row (claims, implementation checks, findings,
    controls) and the details of every row.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out_dir / "claims.csv", claims_frame(results).to_csv(index=False))
    atomic.write_text(out_dir / "results.csv", results_text(tables))
    runs = [r for _, rows in tables.values() for r in rows]
    lines = ["# pmilab verify report", ""]
    lines += [f"- **{k}:** {v}" for k, v in header.items()]
    lines += [f"- **verdict:** {counts(results)}", ""]
    for kind, (title, note) in SECTIONS.items():
        rows = [r for r in results if r.kind == kind]
        if not rows:
            continue
        lines += [f"## {title}", "", note, ""]
        lines += [
            "| ID | statement | measured | estimate ± SE [one-sided interval] | n | threshold "
            "| power | result | figure |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            fig = f"[{Path(r.figure).name}]({r.figure})" if r.figure else ""
            n = "" if r.judged is None else str(r.judged.n)
            lines.append(
                f"| {r.claim} | {_cell(r.statement)} | {_cell(fmt_measured(r.measured))} | "
                f"{interval_cell(r.judged)} | {n} | {_cell(r.threshold)} | "
                f"{power_cell(r.judged)} | {verdict_cell(r)} | {fig} |"
            )
        lines.append("")
    lines += ["## Details", ""]
    for r in results:
        if r.detail:
            tag = r.verdict if r.kind != "control" else f"control, {r.verdict}"
            lines.append(f"- **{r.claim}** ({tag}): {r.detail}")
    if runs:
        secs = sum(float(r.get("seconds") or "nan") for r in runs)
        cpu = sum(float(r.get("cpu_seconds") or "nan") for r in runs)
        lines += [
            "",
            f"{len(runs)} runs in results.csv: {secs:.0f} s wall-clock and {cpu:.0f} s "
            "CPU summed over runs (each run uses one thread).",
            "",
        ]
    return atomic.write_text(out_dir / "report.md", "\n".join(lines) + "\n")


def summary_table(results: list[ClaimResult], width: int = 100) -> str:
    """A plain-text table for the terminal: evidence and implementation checks, findings, then
    controls (whose expected verdict is FAIL)."""
    rows = [("ID", "kind", "result", "measured", "threshold", "statement")]
    order = {k: i for i, k in enumerate(SECTIONS)}
    for r in sorted(results, key=lambda r: order[r.kind]):
        result = r.verdict
        if r.kind in ("control", "calibration"):
            result = f"{r.verdict} ok" if r.ok else f"{r.verdict}!!"
        kind = {"evidence": "claim", "implementation": "impl", "calibration": "calib"}.get(
            r.kind, r.kind
        )
        rows.append((r.claim, kind, result, fmt_measured(r.measured), r.threshold, r.statement))
    n = len(rows[0]) - 1
    w = [min(40, max(len(str(row[i])) for row in rows)) for i in range(n)]
    out = []
    for row in rows:
        head = "  ".join(_clip(str(row[i]), w[i]).ljust(w[i]) for i in range(n))
        rest = max(20, width - len(head) - 2)
        out.append(f"{head}  {_clip(str(row[n]), rest)}")
    out.insert(1, "-" * min(width, max(len(line) for line in out)))
    return "\n".join(out)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _measured(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def read_claims(out_dir: Path) -> list[ClaimResult]:
    """The verdict rows of a verify directory, from its claims.csv."""
    path = Path(out_dir) / "claims.csv"
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = set(CLAIM_COLUMNS) - set(df.columns)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise InputError(
            f"{path} is not a pmilab claims table ({e}); rerun pmilab verify"
        ) from None
    if missing:
        raise InputError(f"{path} lacks the columns {sorted(missing)}; rerun pmilab verify")
    return [
        ClaimResult(
            r["claim"],
            r["statement"],
            _measured(r["measured"]),
            r["threshold"],
            {"True": True, "False": False}.get(r["passed"]),
            r["figure"],
            r["detail"],
            r["kind"],
            _judged(r),
            r["expect"],
        )
        for r in df.to_dict("records")
    ]


def _judged(r: dict) -> Judged | None:
    """A row's statistics back from claims.csv text (None for a row without them)."""
    if r["verdict"] not in ("PASS", "FAIL", "INCONCLUSIVE") or r["estimate"] == "":
        return None
    f = {c: float(r[c] or "nan") for c in ("estimate", "se", "ci_low", "ci_high", "alpha", "power")}
    return Judged(
        f["estimate"], f["se"], int(float(r["n"])), f["ci_low"], f["ci_high"], f["alpha"],
        f["power"], r["verdict"], r["deterministic"] == "True",
    )  # fmt: skip


def read_results(out_dir: Path) -> pd.DataFrame:
    """results.csv of a verify directory as text cells (empty cells stay empty strings)."""
    path = Path(out_dir) / "results.csv"
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise InputError(
            f"{path} is not a pmilab results table ({e}); rerun pmilab verify"
        ) from None
    if "table" not in df.columns or "run_id" not in df.columns:
        raise InputError(f"{path} has no run_id/table columns; rerun pmilab verify")
    return df


def read_tables(results: pd.DataFrame, sweeps: list[Sweep]) -> tuple[dict[str, pd.DataFrame], int]:
    """Each sweep's table from a results.csv frame (`read_results`), typed as `load_table`
    types it, and the number of the sweeps' runs that results.csv does not hold."""
    tables, missing = {}, 0
    for sw in sweeps:
        columns = sw.columns()
        sub = results[results["table"] == sw.name]
        have = set(sub["run_id"])
        missing += sum(1 for r in sw.runs if r.run_id not in have)
        absent = [c for c in columns if c not in sub.columns]
        if absent:
            raise InputError(
                f"results.csv lacks the columns {absent[:3]} of sweep {sw.name}; it was written "
                "by another version of pmilab: rerun pmilab verify"
            )
        by_id = {r["run_id"]: r for r in sub[columns].to_dict("records")}
        rows = [by_id[r.run_id] for r in sw.runs if r.run_id in by_id]
        tables[sw.name] = typed_table(columns, rows)
    return tables, missing

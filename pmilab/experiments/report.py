"""The verify report: `report.md` (one row per claim), `claims.csv`, `results.csv` and the
summary table printed to the terminal."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pmilab.experiments.claims import ClaimResult


def fmt_measured(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def claims_frame(results: list[ClaimResult]) -> pd.DataFrame:
    cols = ["claim", "statement", "measured", "threshold", "passed", "figure", "detail"]
    return pd.DataFrame([r.as_dict() for r in results], columns=cols)


def write_report(
    out_dir: Path,
    results: list[ClaimResult],
    tables: dict[str, pd.DataFrame],
    header: dict[str, str],
    unavailable: dict[str, str] | None = None,
) -> Path:
    """Write report.md, claims.csv and results.csv (every run of every sweep) into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    claims_frame(results).to_csv(out_dir / "claims.csv", index=False)
    frames = [df.assign(table=name) for name, df in tables.items() if len(df)]
    runs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    runs.to_csv(out_dir / "results.csv", index=False)
    n_pass = sum(r.passed for r in results)
    lines = ["# pmilab verify report", ""]
    lines += [f"- **{k}:** {v}" for k, v in header.items()]
    lines += [f"- **verdict:** {n_pass}/{len(results)} claims PASS", ""]
    lines += [
        "| ID | statement | measured | threshold | result | figure |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        fig = f"[{Path(r.figure).name}]({r.figure})" if r.figure else ""
        verdict = "PASS" if r.passed else "**FAIL**"
        lines.append(
            f"| {r.claim} | {_cell(r.statement)} | {_cell(fmt_measured(r.measured))} | "
            f"{_cell(r.threshold)} | {verdict} | {fig} |"
        )
    if unavailable:
        lines += ["", "## Not run", ""]
        lines += [f"- **{c}:** {why}" for c, why in unavailable.items()]
    lines += ["", "## Details", ""]
    for r in results:
        if r.detail:
            lines.append(f"- **{r.claim}** ({'PASS' if r.passed else 'FAIL'}): {r.detail}")
    if len(runs):
        secs = runs["seconds"].sum() if "seconds" in runs else float("nan")
        cpu = runs["cpu_seconds"].sum() if "cpu_seconds" in runs else float("nan")
        lines += [
            "",
            f"{len(runs)} runs in results.csv: {secs:.0f} s wall-clock and {cpu:.0f} s "
            "CPU summed over runs (each run uses one thread).",
            "",
        ]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def summary_table(results: list[ClaimResult], width: int = 100) -> str:
    """A plain-text table for the terminal."""
    rows = [("ID", "result", "measured", "threshold", "statement")]
    for r in results:
        rows.append(
            (
                r.claim,
                "PASS" if r.passed else "FAIL",
                fmt_measured(r.measured),
                r.threshold,
                r.statement,
            )
        )
    w = [max(len(str(row[i])) for row in rows) for i in range(4)]
    out = []
    for row in rows:
        head = "  ".join(str(row[i]).ljust(w[i]) for i in range(4))
        rest = max(20, width - len(head) - 2)
        stmt = str(row[4])
        out.append(f"{head}  {stmt if len(stmt) <= rest else stmt[: rest - 1] + '…'}")
    out.insert(1, "-" * min(width, max(len(line) for line in out)))
    return "\n".join(out)

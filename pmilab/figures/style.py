"""The look every figure shares: colours, rc settings, the verdict banner and the saver.

Every figure's title carries the verdicts of the claims it shows (each with its estimate and
interval; green when all PASS, red on a FAIL, grey when INCONCLUSIVE) and one line counting the
calibration and control rows, so a reader can tell the outcome from the figure alone. Files are written as PNG and PDF with fixed metadata, so regenerating them from the same
table gives identical bytes.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from pmilab.experiments.framework.claim import ClaimResult  # noqa: E402

PASS_COLOR, FAIL_COLOR, NOTE_COLOR = "#1a7f37", "#cf222e", "#57606a"
HEAD_COLORS = {"tabular": "#444444", "linear": "#0969da", "wpse": "#bf8700", "kme": "#8250df"}
HEAD_MARKERS = {"tabular": "s", "linear": "o", "wpse": "^", "kme": "D"}

plt.rcParams.update(
    {
        "figure.dpi": 110,
        "savefig.dpi": 110,
        "font.size": 9,
        "axes.titlesize": 9,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "legend.fontsize": 8,
        "svg.hashsalt": "pmilab",
    }
)


def _tag(r: ClaimResult) -> str:
    """'T2b PASS 0.012 [<= 0.0143]': the verdict with its estimate and one-sided bound."""
    j = r.judged
    if j is None:
        m = f"{r.measured:.3g}" if isinstance(r.measured, float) else str(r.measured)
        return f"{r.claim} {r.verdict} {m}"
    if j.deterministic:
        return f"{r.claim} {r.verdict} {j.estimate:.3g} (exact)"
    return f"{r.claim} {r.verdict} {j.estimate:.3g} [{j.ci_low:.3g}, {j.ci_high:.3g}], n={j.n}"


def banner(fig, results: list[ClaimResult], title: str) -> None:
    """The title, then one short line of verdicts (the claims' rows, each with its interval),
    then one line for the calibration pairs and controls as a count: the verdicts sit in the
    title, not in a banner over the data. Red when a row is not as it must be."""
    claims = [r for r in results if r.kind in ("evidence", "implementation")]
    checks = [r for r in results if r.kind in ("calibration", "control")]
    lines = [(title, "black", "bold")]
    width = int(fig.get_figwidth() * 16)  # characters that fit at 8 pt
    if claims:
        text = " · ".join(_tag(r) for r in claims)
        color = PASS_COLOR if all(r.verdict == "PASS" for r in claims) else FAIL_COLOR
        if not any(r.verdict == "FAIL" for r in claims) and color == FAIL_COLOR:
            color = NOTE_COLOR  # INCONCLUSIVE: neither
        lines += [(part, color, "normal") for part in textwrap.wrap(text, width)[:2]]
    if checks:
        bad = [f"{r.claim} {r.kind} {r.verdict}" for r in checks if not r.ok]
        text = (
            f"{len(checks) - len(bad)}/{len(checks)} calibration and control rows as they must be"
        )
        text += "; not: " + ", ".join(bad) if bad else ""
        color = FAIL_COLOR if bad else NOTE_COLOR
        lines += [(part, color, "normal") for part in textwrap.wrap(text, width)[:2]]
    top = 0.995
    for text, color, weight in lines:
        fig.text(
            0.5,
            top,
            text,
            ha="center",
            va="top",
            color=color,
            fontweight=weight,
            fontsize=10 if weight == "bold" else 8,
        )
        top -= 0.045 if weight == "bold" else 0.035
    fig.subplots_adjust(top=top - 0.05)


def save(fig, fig_dir: Path, name: str) -> list[Path]:
    """Write fig_dir/name.png and .pdf deterministically (no dates or versions in metadata)."""
    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    png, pdf = fig_dir / f"{name}.png", fig_dir / f"{name}.pdf"
    fig.savefig(png, metadata={"Software": None})
    fig.savefig(pdf, metadata={"CreationDate": None, "Creator": None, "Producer": None})
    plt.close(fig)
    return [png, pdf]


def of_figure(results: list[ClaimResult], name: str) -> list[ClaimResult]:
    """The claims whose figure is `name`."""
    return [r for r in results if Path(r.figure).stem == name]

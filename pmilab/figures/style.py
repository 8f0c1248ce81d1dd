"""The look every figure shares: colours, rc settings, the verdict banner and the saver.

Every figure carries a banner with the verdict of the claims it shows (PASS in green, FAIL in
red, with the measured value and threshold), so a reader can tell the outcome from the figure
alone. Files are written as PNG and PDF with fixed metadata, so regenerating them from the same
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


def banner(fig, results: list[ClaimResult], title: str) -> None:
    """Title plus one coloured line per claim: 'T2b PASS: measured 0.012 (threshold <= 0.05)'."""
    lines = [(title, "black", "bold")]
    width = int(fig.get_figwidth() * 15)  # characters that fit at 8.5 pt
    for r in results:
        m = f"{r.measured:.3g}" if isinstance(r.measured, float) else str(r.measured)
        if r.kind == "finding":
            text, color = f"{r.claim} finding (not judged): {m}", NOTE_COLOR
        elif r.kind == "control":
            verdict = "FAILS as it must" if not r.passed else "PASSES: the check cannot fail"
            text = f"{r.claim} control {verdict}: measured {m} (threshold {r.threshold})"
            color = NOTE_COLOR if not r.passed else FAIL_COLOR
        else:
            kind = " (implementation check)" if r.kind == "implementation" else ""
            text = f"{r.claim}{kind} {r.verdict}: measured {m} (threshold {r.threshold})"
            color = PASS_COLOR if r.passed else FAIL_COLOR
        for part in textwrap.wrap(text, width):
            lines.append((part, color, "normal"))
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
            fontsize=10 if weight == "bold" else 8.5,
        )
        top -= 0.045 if weight == "bold" else 0.04
    fig.subplots_adjust(top=top - 0.06)


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

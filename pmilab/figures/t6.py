"""T6 figure: Monte Carlo E_p[PMI] against the independent MI (z-scores, with the shuffled-pairs
control), and the trained error on a base distribution against its bijective transforms under
each measure, each divided by the sd of PMI under that measure (the spiral is a finding, the
shuffled-pairs head the control)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pmilab.experiments.claims.t6 import INV_TOL, MEASURES, SHUFFLED, SMOOTH, invariance_gaps
from pmilab.experiments.claims.tolerances import Z_TOL
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.figures.style import FAIL_COLOR, NOTE_COLOR, banner, of_figure, save

ORDER = ("none", "affine", "asinh", "halfcube", "spiral", SHUFFLED)


def draw(tables: dict[str, pd.DataFrame], results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    mc, inv = tables["t6-mc"], tables["t6-invariance"]
    fig, (a, *bars) = plt.subplots(
        1, 3, figsize=(17, 5.8), gridspec_kw={"width_ratios": [1.3, 1, 1]}
    )
    names = list(dict.fromkeys(mc.dist))
    for i, name in enumerate(names):
        g = mc[mc.dist == name]
        a.plot(np.full(len(g), i), g.z, "o", color="#0969da", label="T6a" if i == 0 else None)
        a.plot(
            np.full(len(g), i),
            g.z_shuffled,
            "X",
            color=FAIL_COLOR,
            ms=8,
            label="control: shuffled pairs, same z against I" if i == 0 else None,
        )
    a.axhspan(-Z_TOL, Z_TOL, color="#1a7f37", alpha=0.1, label=f"|z| <= {Z_TOL:g} (pass band)")
    a.axhline(0, color="black", lw=0.8)
    a.set_yscale("symlog", linthresh=Z_TOL)
    a.set_ylim(1.8 * min(-2 * Z_TOL, float(mc.z_shuffled.min())), 25 * Z_TOL)
    a.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
    a.set_ylabel("z = (MC mean of PMI - I) / SE  [SE units, symlog]")
    a.set_title("E_p[PMI] = I(X;Y), I without sampling (one dot per seed)")
    a.legend(loc="upper right", fontsize=7)
    above = (inv.pmi_rmse_product_above / inv.product_std).groupby(inv["transform"]).mean()
    for b, measure in zip(bars, MEASURES, strict=True):
        _invariance_panel(b, inv, measure, above)
    banner(fig, of_figure(results, "t6_invariance"), "T6: PMI identities and bijection invariance")
    fig.subplots_adjust(bottom=0.2, wspace=0.3, left=0.05, right=0.99)
    return save(fig, fig_dir, "t6_invariance")


def _color(t: str) -> str:
    if t == "none":
        return "#444444"
    if t == SHUFFLED:
        return FAIL_COLOR
    return "#8250df" if t in SMOOTH else NOTE_COLOR


def _label(t: str) -> str:
    if t == "none":
        return "base (none)"
    if t == SHUFFLED:
        return "control:\nshuffled"
    return t if t in SMOOTH else f"finding:\n{t}"


def _invariance_panel(b, inv: pd.DataFrame, measure: str, above: pd.Series) -> None:
    """Bars of rmse / sd(PMI) under one measure (mean over seeds, ± 1 SE); the axis is scaled
    to the judged bars, and a control bar that runs off it carries its value."""
    m, sem = invariance_gaps(inv, measure)
    order = [t for t in ORDER if t in m.index]
    shown = [t for t in order if t != SHUFFLED]
    top = 1.8 * float((m[shown] + sem[shown]).max())  # room for the legend
    b.bar(
        range(len(order)),
        m[order],
        yerr=sem[order],
        capsize=5,
        color=[_color(t) for t in order],
        label="mean over seeds, +/- 1 SE (reported, not judged)",
    )
    base = m["none"]
    b.axhspan(
        max(base - INV_TOL, 0),
        base + INV_TOL,
        color="#1a7f37",
        alpha=0.12,
        label=f"T6b passes if every smooth bar's mean is within base +/- {INV_TOL:g}",
    )
    if measure == "product":
        b.plot(
            range(len(order)),
            above[order],
            "D",
            color="#bf8700",
            ms=7,
            label="error on the likelier half of pairs (PMI > median)",
        )
    for i, t in enumerate(order):
        if m[t] > top:
            b.text(
                i, 0.45 * top, f"{m[t]:.2f}\n(off scale)", ha="center", fontsize=8, color="white"
            )
    b.set_ylim(0, top)
    b.set_xticks(range(len(order)), [_label(t) for t in order], fontsize=8)
    unit = "product_std" if measure == "product" else "joint_std"
    sd = float(inv[unit].iloc[0])
    b.set_xlabel("bijection on both modalities (affine, asinh: smooth, judged by T6b)")
    b.set_ylabel(f"rmse / sd(PMI), both under {MEASURES[measure]}  [dimensionless]")
    b.set_title(
        f"{inv.similarity.iloc[0]} head on {inv.dist.iloc[0].split(',transform')[0]}\n"
        f"error under {MEASURES[measure]}, divided by sd_{MEASURES[measure]}(PMI) = {sd:.3g}"
    )
    b.legend(loc="upper left", fontsize=7)

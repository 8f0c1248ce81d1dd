"""T6 figure: Monte Carlo E_p[PMI] against the exact MI (z-scores), and trained error on a base
distribution against its bijective transforms."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pmilab.experiments.claims.t6 import INV_TOL, MEASURES, SMOOTH, invariance_gaps
from pmilab.experiments.claims.tolerances import Z_TOL
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.figures.style import banner, of_figure, save


def draw(tables: dict[str, pd.DataFrame], results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    mc, inv = tables["t6-mc"], tables["t6-invariance"]
    fig, (a, *bars) = plt.subplots(
        1, 3, figsize=(17, 5.6), gridspec_kw={"width_ratios": [1.3, 1, 1]}
    )
    names = list(dict.fromkeys(mc.dist))
    for i, name in enumerate(names):
        z = mc[mc.dist == name].z
        a.plot(np.full(len(z), i), z, "o", color="#0969da")
    a.axhspan(-Z_TOL, Z_TOL, color="#1a7f37", alpha=0.1, label=f"|z| <= {Z_TOL:g} (pass band)")
    a.axhline(0, color="black", lw=0.8)
    a.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
    a.set_ylabel("z = (MC mean of PMI - exact I) / SE  [SE units]")
    a.set_title("E_p[PMI] = I(X;Y) on every built-in distribution (one dot per seed)")
    a.legend(loc="upper right")
    above = (inv.pmi_rmse_product_above / inv.product_std).groupby(inv["transform"]).mean()
    gaps = [invariance_gaps(inv, measure) for measure in MEASURES]
    top = 1.45 * max(float((m + Z_TOL * se).max()) for m, se in gaps)  # room for the legend
    for b, measure in zip(bars, MEASURES, strict=True):
        _invariance_panel(b, inv, measure, above, top)
    banner(fig, of_figure(results, "t6_invariance"), "T6: PMI identities and bijection invariance")
    fig.subplots_adjust(bottom=0.26, wspace=0.3, left=0.05, right=0.99)
    return save(fig, fig_dir, "t6_invariance")


def _invariance_panel(b, inv: pd.DataFrame, measure: str, above: pd.Series, top: float) -> None:
    """Bars of rmse/sd(PMI) under one measure, with the same SE as the T6b/T6c verdict."""
    m, sem = invariance_gaps(inv, measure)
    order = [t for t in ("none", "affine", "asinh", "halfcube", "spiral") if t in m.index]
    b.bar(
        order,
        m[order],
        yerr=Z_TOL * sem[order],
        capsize=5,
        color=["#444444"] + ["#8250df"] * (len(order) - 1),
        label=f"mean over seeds, +/- {Z_TOL:g} SE",
    )
    base = m["none"]
    b.axhspan(
        max(base - INV_TOL, 0),
        base + INV_TOL,
        color="#1a7f37",
        alpha=0.12,
        label=f"base error +/- {INV_TOL:g}: PASS if a bar's {Z_TOL:g}-SE bar reaches it",
    )
    if measure == "product":
        b.plot(
            order,
            above[order],
            "D",
            color="#bf8700",
            ms=7,
            label="error on the likelier half of pairs (PMI > median)",
        )
        for i, t in enumerate(order):
            if t not in SMOOTH and t != "none":
                b.annotate(
                    "finding:\nnot judged",
                    (i, m[t]),
                    xytext=(0, 6),
                    textcoords="offset points",
                    ha="center",
                    fontsize=7,
                    color="#57606a",
                )
    b.set_ylim(0, top)
    b.set_xticks(range(len(order)), ["base (none)"] + order[1:])
    b.set_xlabel("bijection on both modalities\n(affine, asinh: smooth; spiral: hard warp)")
    b.set_ylabel(f"rmse / sd(PMI) under {MEASURES[measure]}  [dimensionless]")
    judged = "T6b" if measure == "product" else "T6b and T6c"
    b.set_title(
        f"{inv.similarity.iloc[0]} head on {inv.dist.iloc[0].split(',transform')[0]}\n"
        f"error under {MEASURES[measure]} (judges {judged})"
    )
    b.legend(loc="upper left", fontsize=7)

"""T6 figure: Monte Carlo E_p[PMI] against the independent MI (z per seed and its mean over seeds
with an interval, with the shuffled-pairs control), and T6b's paired gaps rel(arm) − rel(base)
under each measure, each relative error divided by the sd of PMI under that measure: the smooth
bijections (judged), the calibration pair (x1 rounded: the 0.5x case must PASS, the 2x near
miss must FAIL), the spiral (a finding) and the shuffled-pairs head (the control)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pmilab import verdicts as V
from pmilab.experiments.claims.t6 import (
    INV_TOL,
    MEASURES,
    SHUFFLED,
    SMOOTH,
    paired_gaps,
    quantize_arm,
    rel_table,
)
from pmilab.experiments.claims.tolerances import REACH_TOL_MC, Z_TOL
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.experiments.tasks.t6_invariance import QUANTIZE
from pmilab.figures.style import FAIL_COLOR, NOTE_COLOR, PASS_COLOR, banner, of_figure, save

CALIB_HALF, CALIB_NEAR = "#1a7f37", "#bc4c00"
INTERVAL = "mean over seeds, 90% interval (one-sided 5% bounds, no Holm)"


def draw(tables: dict[str, pd.DataFrame], results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    mc, inv = tables["t6-mc"], tables["t6-invariance"]
    fig, (a, *bars) = plt.subplots(
        1, 3, figsize=(17, 6.8), gridspec_kw={"width_ratios": [1.3, 1, 1]}
    )
    _mc_panel(a, mc)
    steps = _calibration_steps(inv)
    for b, measure in zip(bars, MEASURES, strict=True):
        _gap_panel(b, inv, measure, steps)
    banner(fig, of_figure(results, "t6_invariance"), "T6: PMI identities and bijection invariance")
    handles = {}  # one legend for the figure, below the panels (off the data)
    for ax in (a, *bars):
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=3, fontsize=7)
    top = fig.subplotpars.top - 0.05  # room for the three-line panel titles under the banner
    fig.subplots_adjust(top=top, bottom=0.23, wspace=0.3, left=0.05, right=0.99)
    return save(fig, fig_dir, "t6_invariance")


def _interval(values) -> tuple[float, float, float]:
    """(mean, lower, upper): the mean over seeds and its two-sided 90% interval, i.e. the
    one-sided 5% bounds that `verdicts.judge_equivalence` reads (before any Holm adjustment)."""
    m, _, _, lo, hi = V.mean_ci(np.asarray(values, float), 0.10, "two")
    return m, lo, hi


def _mc_panel(a, mc: pd.DataFrame) -> None:
    names = list(dict.fromkeys(mc.dist))
    for i, name in enumerate(names):
        g = mc[mc.dist == name]
        for col, color, marker, label in (
            ("z", "#0969da", "o", "T6a: z per seed (mean: bar with interval)"),
            ("z_shuffled", FAIL_COLOR, "X", "control: shuffled pairs, z against I"),
        ):
            a.plot(np.full(len(g), i), g[col], marker, color=color, ms=4, alpha=0.45,
                   label=label if i == 0 else None)  # fmt: skip
            m, lo, hi = _interval(g[col])
            a.errorbar(i + 0.18, m, yerr=[[m - lo], [hi - m]], fmt="_", color=color, ms=10,
                       capsize=4, label=INTERVAL if (i == 0 and col == "z") else None)  # fmt: skip
    a.axhspan(-Z_TOL, Z_TOL, color=PASS_COLOR, alpha=0.1, label=f"T6a: mean z within +-{Z_TOL:g}")
    a.axhline(0, color="black", lw=0.8)
    a.set_yscale("symlog", linthresh=Z_TOL)
    a.set_ylim(1.8 * min(-2 * Z_TOL, float(mc.z_shuffled.min())), 25 * Z_TOL)
    a.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
    a.set_ylabel("z = (MC mean of PMI - I) / SE  [SE units, symlog]")
    a.set_title("E_p[PMI] = I(X;Y), I without sampling (implementation check)")


def _calibration_steps(inv: pd.DataFrame) -> list[float]:
    """The quantisation steps of the calibration arms in the table, largest (near miss) first."""
    arms = [t for t in dict.fromkeys(inv["transform"]) if str(t).startswith(f"{QUANTIZE}=")]
    return sorted((float(t.split("=", 1)[1]) for t in arms), reverse=True)


def _arms(inv: pd.DataFrame, steps: list[float]) -> list[tuple[str, str, str]]:
    """(transform, tick label, colour) of every arm compared with the base, in plot order."""
    present = list(dict.fromkeys(inv["transform"]))
    out = [(t, t, "#8250df") for t in SMOOTH if t in present]
    if len(steps) == 2:
        near, half = steps
        out += [
            (quantize_arm(half), f"calib. 0.5x\nx1 rounded\nh={half:g}", CALIB_HALF),
            (quantize_arm(near), f"calib. 2x\nx1 rounded\nh={near:g}", CALIB_NEAR),
        ]
    calib = {quantize_arm(h) for h in steps}
    out += [
        (t, f"finding:\n{t}", NOTE_COLOR)
        for t in present
        if t not in (*SMOOTH, "none", SHUFFLED, *calib)
    ]
    if SHUFFLED in present:
        out.append((SHUFFLED, "control:\nshuffled", FAIL_COLOR))
    return out


def _gap_panel(b, inv: pd.DataFrame, measure: str, steps: list[float]) -> None:
    """Paired gaps rel(arm) − rel(base) under one measure: per-seed dots and the mean with its
    interval; the tolerance band; symlog beyond 3 tolerances, so the control stays in view."""
    arms = _arms(inv, steps)
    for i, (t, _, color) in enumerate(arms):
        g = paired_gaps(inv, t, measure)
        b.plot(np.full(len(g), i), g, "o", color=color, ms=4, alpha=0.45,
               label="paired gap per seed" if i == 0 else None)  # fmt: skip
        m, lo, hi = _interval(g)
        b.errorbar(i + 0.2, m, yerr=[[m - lo], [hi - m]], fmt="_", color=color, ms=12, capsize=4)
    b.axhspan(-INV_TOL, INV_TOL, color=PASS_COLOR, alpha=0.12,
              label=f"T6b: gap within +-{INV_TOL:g}")  # fmt: skip
    b.axhline(0, color="black", lw=0.8)
    b.set_yscale("symlog", linthresh=3 * INV_TOL)
    lo_all, hi_all = b.get_ylim()
    b.set_ylim(min(lo_all, -3 * INV_TOL) * 1.3, max(hi_all, 3 * INV_TOL) * 1.3)
    b.set_xticks(range(len(arms)), [lab for _, lab, _ in arms], fontsize=7)
    rel = rel_table(inv)[(measure, "none")].dropna()
    m, lo, hi = _interval(rel)
    sd = float(inv["product_std" if measure == "product" else "joint_std"].iloc[0])
    b.set_ylabel(f"rel(arm) - rel(base) under {MEASURES[measure]}  [symlog beyond {3 * INV_TOL:g}]")
    b.set_title(
        f"T6b under {MEASURES[measure]}: {inv.similarity.iloc[0]} head, arms paired by seed\n"
        f"rel = rmse / sd(PMI) under {MEASURES[measure]} (sd = {sd:.3g})\n"
        f"base rel {m:.3f} [{lo:.3f}, {hi:.3f}], must be < {REACH_TOL_MC:g}"
    )

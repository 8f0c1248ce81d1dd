"""T1 figures: convergence to PMI + C (discrete, continuous, one-sided contrast) with the
calibration cases, and the InfoNCE estimate against log N (the bracket, and the approach to
log N when I > log N).

Every plotted point is a mean over seeds; its error bar is ±1 SE over seeds (the seed is the
replicate, as in the verdicts). Legends sit below the axes, off the data.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pmilab import registry
from pmilab.experiments.claims.t1 import (
    EVIDENCE_HEADS,
    SAT_MARGIN,
    SAT_TOL,
    is_control,
    saturated_sizes,
    saturation_long,
)
from pmilab.experiments.claims.tolerances import REACH_TOL, REACH_TOL_MC
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.figures.style import HEAD_COLORS, banner, of_figure, save
from pmilab.stats import group_mean_se

CAL_COLOR = "#cf222e"
FLOOR = 1e-7  # log axes: values at or below it (exact zeros, float32 floors) are drawn here


def _point(ax, x, values: pd.Series, color, marker="o", hollow=False, label=None):
    """Mean over seeds ± 1 SE at x."""
    v = values.to_numpy(float)
    m = max(v.mean(), FLOOR)
    se = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else 0.0
    ax.errorbar(
        [x],
        [m],
        yerr=[[min(se, m - FLOOR)], [se]],
        fmt=marker,
        ms=7,
        capsize=4,
        color=color,
        mfc="white" if hollow else color,
        label=label,
    )


def _legend_below(ax, ncol=2):
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=ncol, fontsize=7, frameon=False)


def _reach_panel(ax, groups, cal, tol, title):
    """groups: [(label, values, color, control?)]; cal: [(label, near values, half values)]."""
    labels = []
    for i, (lab, vals, color, ctl) in enumerate(groups):
        _point(ax, i, vals, color, marker="x" if ctl else "o")
        labels.append(lab)
    x0 = len(groups)
    for i, (lab, near, half) in enumerate(cal):
        x = x0 + i
        _point(ax, x - 0.12, near, CAL_COLOR, "v", True, "calibration: 2x tolerance (must FAIL)")
        _point(ax, x + 0.12, half, CAL_COLOR, "^", True, "calibration: 0.5x (must PASS)")
        labels.append(lab)
    ax.set_xticks(np.arange(len(labels)), labels, rotation=20, ha="right", fontsize=7)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.axhline(tol, color="red", ls=":", label=f"tolerance {tol}")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_ylabel("rmse / sd(PMI), mean ± SE over seeds")
    handles, names = ax.get_legend_handles_labels()
    keep = dict(zip(names, handles, strict=True))  # one entry per label
    ax.legend(
        keep.values(),
        keep.keys(),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.22),
        ncol=1,
        fontsize=7,
        frameon=False,
    )


def _convergence(tables, results, fig_dir: Path) -> list[Path]:
    d = tables["t1-discrete"]
    c = tables["t1-continuous"]
    fig, (a, b, e) = plt.subplots(1, 3, figsize=(14, 6.2))
    sym = d[d.objective == "symmetric"]
    groups = [
        (s, sym[registry.builtin_mask(sym.similarity, s)].t1_rel, HEAD_COLORS[s], False)
        for s in EVIDENCE_HEADS
    ]
    ctl = sym[registry.builtin_mask(sym.similarity, "linear")]
    groups.append(("control: linear d=2", ctl.t1_rel, "#0969da", True))
    tab = sym[registry.builtin_mask(sym.similarity, "tabular")]
    _reach_panel(
        a,
        groups,
        [("tabular + noise", tab.cal_rel_near, tab.cal_rel_half)],
        REACH_TOL,
        "T1a: discrete latent 24x20, K=4 (exact population loss)",
    )
    c = c.assign(rel=c.pmi_rmse_product / c.product_std, joint=c.dist.str.split(":").str[0])
    ev, ctl = c[~is_control(c.dist)], c[is_control(c.dist)]
    joints = sorted(ev.joint.unique())
    groups = [(f"{j} / kme", ev[ev.joint == j].rel, HEAD_COLORS["kme"], False) for j in joints]
    groups.append(("control: gaussian shuffled", ctl.rel, "#0969da", True))
    cal = [
        (f"{j}: PMI + noise", ev[ev.joint == j].cal_rel_near, ev[ev.joint == j].cal_rel_half)
        for j in joints
    ]
    _reach_panel(b, groups, cal, REACH_TOL_MC, "T1b: continuous joints (minibatches, Monte Carlo)")
    one = d[registry.builtin_mask(d.similarity, "tabular") & (d.objective == "one_sided")]
    for i, (vals, color) in enumerate(((one.t1_off, "#8250df"), (tab.t1_off, "#444444"))):
        _point(e, i, vals, color, "s")
    _point(e, 2 - 0.12, tab.cal_off_near, CAL_COLOR, "v", True, "calibration: 2x (must FAIL)")
    _point(e, 2 + 0.12, tab.cal_off_half, CAL_COLOR, "^", True, "calibration: 0.5x (must PASS)")
    e.set_xticks([0, 1, 2], ["one-sided head", "symmetric head", "symmetric + c(x)"], fontsize=7)
    e.set_xlim(-0.6, 2.6)
    e.axhline(REACH_TOL, color="red", ls=":", label=f"tolerance {REACH_TOL}")
    e.set_yscale("log")
    e.set_ylabel("sd of row offsets c(x) / sd(PMI), mean ± SE")
    e.set_title("T1c: one-sided InfoNCE leaves logit = PMI + c(x)")
    e.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1, fontsize=7, frameon=False)
    banner(fig, of_figure(results, "t1_convergence"), "T1: trained logits converge to PMI + C")
    fig.subplots_adjust(bottom=0.3, wspace=0.32)
    return save(fig, fig_dir, "t1_convergence")


def _mean_se(t: pd.DataFrame, col: str) -> pd.DataFrame:
    return group_mean_se(t, ["N"], col)


def _saturation(tables, results, fig_dir: Path) -> list[Path]:
    df = tables["t1-saturation"]
    t = saturation_long(df)
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 6.0))
    far_spec = df.loc[df.cal_mass_near.notna(), "dist"]
    far_spec = far_spec.iloc[0] if len(far_spec) else None
    colors = {}
    for spec, g in t.groupby("dist", sort=False):
        color = "#1a7f37" if spec == far_spec else "#0969da"
        colors[spec] = color
        s = _mean_se(g, "est")
        m = g.groupby("N", as_index=False).mean(numeric_only=True)
        name = spec.split(",noise")[0].replace("diag:", "diag ")
        a.errorbar(
            s.N,
            s["mean"],
            yerr=s.se,
            marker="o",
            capsize=3,
            color=color,
            label=f"{name}, I = {m.mi.iloc[0]:.2f}: head's log N - loss_N",
        )
        a.plot(m.N, m.pmi, "x", color="black", ms=5)
        a.fill_between(m.N, m.lower, m.upper, color=color, alpha=0.12)
        a.axhline(m.mi.iloc[0], color=color, ls=":", lw=1)
    a.plot([], [], "x", color="black", label="exact PMI critic")
    a.fill_between(
        [], [], [], color="grey", alpha=0.2, label="bracket [log N - B_N - 2Δ, min(I, log N)]"
    )
    n_all = np.array(sorted(t.N.unique()))
    a.plot(n_all, np.log(n_all), "k--", label="log N (hard cap)")
    a.set_xscale("log", base=2)
    a.set_xlabel("batch size N")
    a.set_ylabel("MI estimate [nats], mean ± SE over seeds")
    a.set_title("the estimate within its bracket (dotted: I of each joint)")
    _legend_below(a)
    # right: the relative shortfall (log N - estimate) / log N, the T1d evidence
    for spec, g in t.groupby("dist", sort=False):
        g = g.assign(short=(g.log_n - g.est) / g.log_n)
        s = _mean_se(g, "short")
        name = spec.split(",noise")[0].replace("diag:", "diag ")
        b.errorbar(
            s.N,
            s["mean"].clip(lower=1e-4),
            yerr=s.se,
            marker="o",
            capsize=3,
            color=colors[spec],
            label=f"{name}: trained head",
        )
    if far_spec is not None:
        far = t[t.dist == far_spec]
        ns = saturated_sizes(far)
        for col, marker, lab in (
            ("cal_near", "v", "calibration: 2x (must FAIL)"),
            ("cal_half", "^", "calibration: 0.5x (must PASS)"),
        ):
            g = far[far.N.isin(ns)]
            s = _mean_se(g.assign(short=(g.log_n - g[col]) / g.log_n), "short")
            b.errorbar(
                s.N, s["mean"], yerr=s.se, fmt=marker, ms=7, capsize=3, color=CAL_COLOR,
                mfc="white", label=lab,
            )  # fmt: skip
        b.axvspan(
            min(ns) / 1.3,
            max(ns) * 1.3,
            color="#1a7f37",
            alpha=0.08,
            label=f"judged: log N <= I - {SAT_MARGIN:g} (far joint)",
        )
        shuf = ((far.log_n - far.shuf) / far.log_n)[far.N.isin(ns)].mean()
        b.text(
            0.02,
            0.02,
            f"control, broken pairs: shortfall {shuf:.3g} (off scale)",
            transform=b.transAxes,
            fontsize=7,
            color="#57606a",
        )
    b.axhline(SAT_TOL, color="red", ls=":", label=f"tolerance {SAT_TOL}")
    b.set_xscale("log", base=2)
    b.set_yscale("log")
    b.set_xlabel("batch size N")
    b.set_ylabel("(log N - estimate) / log N, mean ± SE over seeds")
    b.set_title("T1d: the estimate approaches log N when I > log N")
    _legend_below(b)
    banner(fig, of_figure(results, "t1_saturation"), "T1: the InfoNCE estimate saturates at log N")
    fig.subplots_adjust(bottom=0.25, wspace=0.28)
    return save(fig, fig_dir, "t1_saturation")


def draw(tables: dict[str, pd.DataFrame], results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    return _convergence(tables, results, fig_dir) + _saturation(tables, results, fig_dir)

"""Figures of the report card (`pmilab check`, `pmilab.experiments.check`): the checked head
beside the built-in heads, drawn from the card's run tables and verdict rows.

- hc_capacity: the PMI error against each head's size parameter at the curve K's (HC2), at the
  largest size for every K (HC1), and on the Gaussian (HC5);
- hc_bound: |constructed − ε| against Δ per run, with the bound's line 2Δ (HC3);
- hc_batch: the held-out loss_N gap to PMI's against N, with the ±LOSSN_TOL band (HC4).

The checked head is the first head of the tables (`HeadCard.plans` lists it first); it is
drawn in black, thicker. Points are means over seeds with their standard errors.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pmilab.experiments.check import CONTINUOUS, DISCRETE, short
from pmilab.experiments.claims.t5 import LOSSN_TOL
from pmilab.experiments.claims.tolerances import REACH_TOL, REACH_TOL_MC, rel_error
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.figures.style import HEAD_COLORS, HEAD_MARKERS, banner, of_figure, save
from pmilab.stats import group_mean_se


def _with_cap(df: pd.DataFrame) -> pd.DataFrame:
    size = df["size"].astype(str)
    cap = np.where(size == "dim", df["dim"], np.where(size == "points", df["points"], 1))
    df = df.assign(rel=rel_error(df), cap=cap)
    return df.assign(top=df.cap == df.groupby("similarity").cap.transform("max"))


def _heads(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df.similarity))


def _style(spec: str, mine: str) -> dict:
    if spec == mine:
        return {"color": "black", "marker": "*", "lw": 2.2, "ms": 9, "zorder": 5}
    return {"color": HEAD_COLORS.get(spec, "#888888"), "marker": HEAD_MARKERS.get(spec, "o"),
            "lw": 1.2, "ms": 5, "alpha": 0.85}  # fmt: skip


def _label(spec: str, mine: str) -> str:
    return f"{short(spec)} (checked)" if spec == mine else short(spec)


def _legend(fig, axes) -> None:
    handles: dict[str, object] = {}
    for ax in np.atleast_1d(axes):
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(6, len(handles)),
               frameon=False)  # fmt: skip


def _capacity(disc: pd.DataFrame, cont: pd.DataFrame, results, fig_dir: Path) -> list[Path]:
    mine = _heads(disc)[0]
    curve_ks = sorted(
        k for k, g in disc.groupby("k") if g.groupby("similarity").cap.nunique().max() > 1
    )
    n = len(curve_ks) + 2
    fig, axes = plt.subplots(1, n, figsize=(max(3.3 * n, 9.0), 5.4))
    for ax, k in zip(axes, curve_ks, strict=False):
        for spec, g in disc[disc.k == k].groupby("similarity", sort=False):
            s = group_mean_se(g, ["cap"], "rel")
            ax.errorbar(s.cap, s["mean"], yerr=s["se"], capsize=3, label=_label(spec, mine),
                        **_style(spec, mine))  # fmt: skip
        ax.axhline(REACH_TOL, color="grey", ls="--", lw=1, label=f"REACH_TOL = {REACH_TOL}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("the head's size parameter (D or M)")
        ax.set_title(f"error against size, K = {k}")
    axes[0].set_ylabel("PMI error rmse / sd(PMI)  [mean ± SE over seeds]")
    ax = axes[-2]
    top = disc[disc.top]
    heads = _heads(top)
    for i, (spec, g) in enumerate(top.groupby("similarity", sort=False)):
        s = group_mean_se(g, ["k"], "rel")
        x = np.arange(len(s)) + (i - len(heads) / 2) * 0.08
        ax.errorbar(x, s["mean"], yerr=s["se"], capsize=3, ls="none", label=_label(spec, mine),
                    **_style(spec, mine))  # fmt: skip
    ks = sorted(top.k.unique())
    ax.set_xticks(range(len(ks)), [f"K = {k}" for k in ks])
    ax.axhline(REACH_TOL, color="grey", ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_title("largest size, every K (HC1)")
    ax = axes[-1]
    if len(cont):
        c = cont.assign(rel=rel_error(cont))
        heads = _heads(c)
        for i, (spec, g) in enumerate(c.groupby("similarity", sort=False)):
            v = g.rel.to_numpy(float)
            se = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else 0.0
            st = _style(spec, mine)
            ax.bar(i, v.mean(), yerr=se, color=st["color"], capsize=3, alpha=0.8)
        ax.set_xticks(range(len(heads)), [short(h) for h in heads], rotation=30, ha="right")
        ax.axhline(
            REACH_TOL_MC, color="grey", ls="--", lw=1, label=f"REACH_TOL_MC = {REACH_TOL_MC}"
        )
    ax.set_title("continuous joint, largest size (HC5)")
    _legend(fig, axes)
    banner(
        fig, of_figure(results, "hc_capacity"), f"Report card of {short(mine)}: reach and capacity"
    )
    fig.subplots_adjust(bottom=0.24, wspace=0.3)
    return save(fig, fig_dir, "hc_capacity")


def _bound(disc: pd.DataFrame, results, fig_dir: Path) -> list[Path]:
    mine = _heads(disc)[0]
    b = disc[disc.probe_n > 0]
    gap = (b.constructed_excess - b.epsilon).abs()
    b = b.assign(gap=gap)
    fig, ax = plt.subplots(figsize=(7.0, 6.0))
    for spec, g in b.groupby("similarity", sort=False):
        st = _style(spec, mine)
        ax.scatter(g.pmi_delta, g.gap.clip(lower=1e-12), color=st["color"], marker=st["marker"],
                   s=40 if spec == mine else 18, label=_label(spec, mine), zorder=st.get("zorder", 2))  # fmt: skip
    lo, hi = max(float(b.pmi_delta.min()), 1e-6), max(float(b.pmi_delta.max()), 1e-5)
    d = np.geomspace(lo, hi, 50)
    ax.plot(d, 2 * d, color="grey", ls="--", label="the bound 2 Delta")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Delta = max |logit - PMI - C| (nats)")
    ax.set_ylabel("|constructed excess risk - eps| (nats)")
    _legend(fig, ax)
    banner(
        fig, of_figure(results, "hc_bound"), f"Report card of {short(mine)}: the excess-risk bound"
    )
    fig.subplots_adjust(bottom=0.2)
    return save(fig, fig_dir, "hc_bound")


def _batch(disc: pd.DataFrame, results, fig_dir: Path) -> list[Path]:
    mine = _heads(disc)[0]
    top = disc[disc.top]
    ns = sorted(int(c.rsplit("_N", 1)[1]) for c in top.columns if c.startswith("lossn_diff_N"))
    ks = sorted(top.k.unique())
    fig, axes = plt.subplots(1, len(ks), figsize=(max(4.0 * len(ks), 7.0), 5.2), squeeze=False)
    for ax, k in zip(axes[0], ks, strict=True):
        for spec, g in top[top.k == k].groupby("similarity", sort=False):
            v = np.array([[r[f"lossn_diff_N{n}"] for n in ns] for _, r in g.iterrows()], float)
            se = v.std(axis=0, ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.zeros(len(ns))
            ax.errorbar(ns, v.mean(axis=0), yerr=se, capsize=3, label=_label(spec, mine),
                        **_style(spec, mine))  # fmt: skip
        ax.axhspan(
            -LOSSN_TOL, LOSSN_TOL, color="grey", alpha=0.2, label=f"±LOSSN_TOL = {LOSSN_TOL:g}"
        )
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("symlog", linthresh=LOSSN_TOL)
        ax.set_xlabel("batch size N")
        ax.set_title(f"K = {k}, each head at its largest size")
    axes[0][0].set_ylabel("E loss_N(head) - E loss_N(PMI)  (nats, mean ± SE)")
    _legend(fig, axes[0])
    banner(
        fig,
        of_figure(results, "hc_batch"),
        f"Report card of {short(mine)}: the finite-batch optimum",
    )
    fig.subplots_adjust(bottom=0.22)
    return save(fig, fig_dir, "hc_batch")


def draw(tables: dict, results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    disc = _with_cap(tables[DISCRETE])
    cont = tables[CONTINUOUS]
    cont = _with_cap(cont) if len(cont) else cont
    return [
        *_capacity(disc, cont, results, fig_dir),
        *_bound(disc, results, fig_dir),
        *_batch(disc, results, fig_dir),
    ]

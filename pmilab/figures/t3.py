"""T3 figures.

- t3_excess_risk: the bound (implementation checks T3a-T3c). Left: the probe's excess risk
  against ε + 2Δ (T3's ladder of linear heads, judged; the heads it does not judge; KME's prompt
  ensemble against ε_ens + 2Δ; the random heads against ε alone, the strawman control, and
  against the full bound). Right: constructed excess − ε against Δ, inside the wedge ±2Δ.
- t3_delta_order: the falsifiable neighbour (T3d-T3g). Left: |constructed − ε| (and KME's
  |ensemble − ε_ens|) against Δ, every head of the heads sweep. Middle: the linear probe's
  excess risk against Δ along the ladder. Right: each row's discordance with its interval, beside
  its calibration pair, against the tolerance.

Every point is a mean over seeds with its standard error (both axes); legends sit outside the
axes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from pmilab import registry
from pmilab.experiments.claims.t3 import (
    NEAR_MISS,
    ORDER_ROWS,
    ORDER_TOL,
    covered,
    probe_dim_limit,
    with_bounds,
)
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.figures.style import (
    FAIL_COLOR,
    HEAD_COLORS,
    HEAD_MARKERS,
    NOTE_COLOR,
    PASS_COLOR,
    banner,
    of_figure,
    save,
)

FLOOR = 1e-12  # log axes: values below are drawn at the floor
HEADS = ("tabular", "linear", "wpse", "kme")  # the built-in heads of the heads sweep


def mean_se(df: pd.DataFrame, keys: list[str], cols: list[str]) -> pd.DataFrame:
    """Per head (keys): the mean over seeds of each column and its standard error `<col>_se`
    (sd / sqrt(n), 0 for one seed)."""
    g = df.groupby(keys, as_index=False)
    out = g[cols].mean()
    sd = g[cols].std(ddof=1).fillna(0.0)
    n = g.size()["size"].to_numpy()
    for c in cols:
        out[f"{c}_se"] = sd[c].to_numpy() / np.sqrt(n)
    return out


def _bars(ax, x, y, xse, yse, log: bool, **kw) -> None:
    """Error bars of ±SE in both axes; on a log axis the lower bar stops above zero."""
    x, y = np.maximum(np.asarray(x, float), FLOOR), np.maximum(np.asarray(y, float), FLOOR)
    xse, yse = np.asarray(xse, float), np.asarray(yse, float)
    if log:
        xerr = [np.minimum(xse, 0.9 * x), xse]
        yerr = [np.minimum(yse, 0.9 * y), yse]
    else:
        xerr, yerr = xse, yse
    ax.errorbar(x, y, xerr=xerr, yerr=yerr, linestyle="none", capsize=2, elinewidth=0.8, **kw)


def _bound_panel(a, heads, lad, rand, limit) -> None:
    cols = ["risk_bound", "probe_excess", "ens_bound", "ensemble_excess", "epsilon"]
    lm = mean_se(lad, ["k", "dim"], cols)
    c, mk = HEAD_COLORS["linear"], HEAD_MARKERS["linear"]
    _bars(a, lm.risk_bound, lm.probe_excess, lm.risk_bound_se, lm.probe_excess_se, True,
          color=c, marker=mk, label=f"T3a: linear probe on f(x), d <= {limit} (ladder)")  # fmt: skip
    other = heads[~covered(heads)]
    for sim in HEADS:
        s = other[registry.builtin_mask(other.similarity, sim)]
        if not len(s):
            continue
        m = mean_se(s, ["k", "dim", "points"], cols)
        c, mk = HEAD_COLORS[sim], HEAD_MARKERS[sim]
        _bars(a, m.risk_bound, m.probe_excess, m.risk_bound_se, m.probe_excess_se, True,
              color=c, marker=mk, mfc="none",
              label=f"{sim}: probe on {int(s.probe_dim.max())}-dim features (not judged)")  # fmt: skip
        if registry.is_builtin(sim, "kme"):
            _bars(a, m.ens_bound, m.ensemble_excess, m.ens_bound_se, m.ensemble_excess_se,
                  True, color=c, marker="P", label="T3c: KME prompt ensemble vs eps_ens + 2 Delta")  # fmt: skip
    rm = mean_se(rand, ["k", "dim"], cols)
    _bars(a, rm.epsilon, rm.probe_excess, rm.epsilon_se, rm.probe_excess_se, True,
          color=FAIL_COLOR, marker="X", ms=7,
          label="control: random head, probe vs eps (2 Delta removed): above the line")  # fmt: skip
    _bars(a, rm.risk_bound, rm.probe_excess, rm.risk_bound_se, rm.probe_excess_se, True,
          color=FAIL_COLOR, marker="X", mfc="none", ms=7,
          label="random head vs the full eps + 2 Delta")  # fmt: skip
    vals = pd.concat([heads.risk_bound, heads.ens_bound, rand.epsilon, rand.risk_bound])
    lo, hi = max(1e-4, vals.min() / 2), vals.max() * 1.5
    a.plot([lo, hi], [lo, hi], "k--", lw=1, label="excess risk = bound (must stay below)")
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_ylim(bottom=1e-5)
    a.set_xlabel("bound  [nats]")
    a.set_ylabel("excess risk over H(C|X)  [nats]")
    a.set_title("T3a, T3c: below the diagonal (mean ± SE over seeds)")
    a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=7, ncol=2, frameon=False)


def _wedge_panel(b, df) -> None:
    df = df.assign(gap=df.constructed_excess - df.epsilon)
    d = np.linspace(0, df.pmi_delta.max() * 1.05, 50)
    b.fill_between(d, -2 * d, 2 * d, color=PASS_COLOR, alpha=0.1, label="allowed: |y| <= 2 Delta")
    b.plot(d, 2 * d, "k--", lw=1)
    b.plot(d, -2 * d, "k--", lw=1)
    b.axhline(0, color="grey", lw=0.8)
    for sim in HEADS:
        s = df[registry.builtin_mask(df.similarity, sim)]
        if not len(s):
            continue
        m = mean_se(s, ["k", "dim", "points"], ["pmi_delta", "gap"])
        _bars(b, m.pmi_delta, m.gap, m.pmi_delta_se, m.gap_se, False,
              color=HEAD_COLORS[sim], marker=HEAD_MARKERS[sim], label=f"{sim}")  # fmt: skip
    b.set_xlabel("Delta = half-range of (logit - PMI)  [nats]")
    b.set_ylabel("constructed excess risk - eps  [nats]")
    b.set_title("T3b: every head inside the wedge (mean ± SE)")
    b.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=7, ncol=3, frameon=False)


def _gap_panel(a, heads) -> None:
    for sim in HEADS:
        s = heads[registry.builtin_mask(heads.similarity, sim)]
        if not len(s):
            continue
        m = mean_se(s, ["k", "dim", "points"], ["pmi_delta", "constructed_gap", "ensemble_gap"])
        _bars(a, m.pmi_delta, m.constructed_gap, m.pmi_delta_se, m.constructed_gap_se, True,
              color=HEAD_COLORS[sim], marker=HEAD_MARKERS[sim],
              label=f"{sim}: |constructed - eps|")  # fmt: skip
        if registry.is_builtin(sim, "kme"):
            _bars(a, m.pmi_delta, m.ensemble_gap, m.pmi_delta_se, m.ensemble_gap_se, True,
                  color=HEAD_COLORS[sim], marker="P", mfc="none",
                  label="kme: |ensemble - eps_ens| (T3g)")  # fmt: skip
    d = np.geomspace(max(FLOOR, heads.pmi_delta.min() / 2), heads.pmi_delta.max() * 2, 50)
    a.plot(d, 2 * d, "k--", lw=1, label="2 Delta (the theorem's envelope)")
    a.set_xscale("log")
    a.set_yscale("log")
    a.xaxis.set_minor_formatter(NullFormatter())
    a.set_xlabel("Delta  [nats]")
    a.set_ylabel("excess risk the head adds  [nats]")
    a.set_title("T3e-T3g: every head (mean ± SE)")
    a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=7, ncol=1, frameon=False)


def _ladder_panel(b, lad) -> None:
    m = mean_se(lad, ["k", "dim"], ["pmi_delta", "probe_excess"])
    for i, (k, g) in enumerate(m.groupby("k")):
        g = g.sort_values("dim")
        color = plt.get_cmap("viridis")(i / max(1, m.k.nunique() - 1) * 0.8)
        _bars(b, g.pmi_delta, g.probe_excess, g.pmi_delta_se, g.probe_excess_se, True,
              color=color, marker="o", label=f"K = {int(k)}, d = {int(g.dim.min())}..{int(g.dim.max())}")  # fmt: skip
        b.plot(np.maximum(g.pmi_delta, FLOOR), np.maximum(g.probe_excess, FLOOR), color=color,
               lw=0.8, alpha=0.6)  # fmt: skip
    b.set_xscale("log")
    b.set_yscale("log")
    b.xaxis.set_minor_formatter(NullFormatter())
    b.yaxis.set_minor_formatter(NullFormatter())
    b.set_xlabel("Delta  [nats]")
    b.set_ylabel("linear probe excess risk  [nats]")
    b.set_title("T3d: the ladder of linear heads (mean ± SE)")
    b.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=7, ncol=1, frameon=False)


def _order_panel(c, results: list[ClaimResult]) -> None:
    ids = [row[0] for row in ORDER_ROWS]
    styles = {
        ("evidence", ""): ("k", "o", "the claim"),
        ("calibration", "FAIL"): (FAIL_COLOR, "v", "near miss (2x tol): must FAIL"),
        ("calibration", "PASS"): (PASS_COLOR, "^", "half miss (0.5x tol): must PASS"),
    }
    seen = set()
    for r in results:
        if r.claim not in ids or r.judged is None or (r.kind, r.expect) not in styles:
            continue
        color, mk, label = styles[(r.kind, r.expect)]
        off = {"": 0.0, "FAIL": 0.2, "PASS": -0.2}[r.expect]
        x = ids.index(r.claim) + off
        j = r.judged
        c.errorbar([x], [j.estimate], yerr=[[j.estimate - j.ci_low], [j.ci_high - j.estimate]],
                   color=color, marker=mk, capsize=3, linestyle="none",
                   label=None if (r.kind, r.expect) in seen else label)  # fmt: skip
        seen.add((r.kind, r.expect))
    c.axhline(ORDER_TOL, color="k", ls="--", lw=1, label=f"tolerance {ORDER_TOL:g}")
    c.axhline(NEAR_MISS, color=NOTE_COLOR, ls=":", lw=1, label="no dependence on Delta")
    c.set_xticks(range(len(ids)), ids)
    c.set_xlim(-0.6, len(ids) - 0.4)
    c.set_ylim(-0.05, 1.0)
    c.set_ylabel("discordant fraction of head pairs")
    c.set_title("mean over seeds, 90% two-sided interval")
    c.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize=7, ncol=1, frameon=False)


def draw(tables: dict[str, pd.DataFrame], results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    heads = with_bounds(tables["heads"])
    lad = with_bounds(tables["t3-linear"])
    rand = with_bounds(tables["t3-random"])
    limit = int(probe_dim_limit(lad).max())
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 6.8))
    _bound_panel(a, heads, lad, rand, limit)
    _wedge_panel(b, pd.concat([heads, lad], ignore_index=True))
    banner(fig, of_figure(results, "t3_excess_risk"), "T3: the bound eps + 2 Delta")
    fig.subplots_adjust(bottom=0.3)
    paths = save(fig, fig_dir, "t3_excess_risk")

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 6.2))
    _gap_panel(a, heads)
    _ladder_panel(b, lad)
    _order_panel(c, results)
    banner(fig, of_figure(results, "t3_delta_order"), "T3: the excess risk shrinks with Delta")
    fig.subplots_adjust(bottom=0.3, wspace=0.3)
    return paths + save(fig, fig_dir, "t3_delta_order")

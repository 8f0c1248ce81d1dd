"""T3 figure: probe excess risk against the bound ε + 2Δ (the covered heads, the heads T3a does
not judge, and the random-head control against ε alone), and the constructed classifier against Δ."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pmilab.experiments.claims.t3 import covered, probe_dim_limit, with_bounds
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.figures.style import FAIL_COLOR, HEAD_COLORS, HEAD_MARKERS, banner, of_figure, save


def draw(tables: dict[str, pd.DataFrame], results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    df = with_bounds(tables["heads"])
    rand = with_bounds(tables["t3-random"])
    limit = int(probe_dim_limit(df).max())
    df["judged"] = covered(df)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 5.2))
    floor = 1e-4
    clip = lambda v: v.clip(lower=floor)  # noqa: E731  (log axes)
    for sim in ("tabular", "linear", "wpse", "kme"):
        s = df[df.similarity == sim]
        if not len(s):
            continue
        c, mk = HEAD_COLORS[sim], HEAD_MARKERS[sim]
        judged = s[s.judged]
        rest = s.drop(judged.index)
        if len(judged):
            a.scatter(
                judged.risk_bound,
                clip(judged.probe_excess),
                color=c,
                marker=mk,
                s=40,
                label=f"T3a: linear probe on f(x), d <= {limit}",
            )
        if sim == "kme":
            a.scatter(
                s.ens_bound,
                clip(s.ensemble_excess),
                color=c,
                marker=mk,
                label="T3c: KME prompt ensemble vs eps_ens + 2 Delta",
            )
        if len(rest):
            a.scatter(
                rest.risk_bound,
                clip(rest.probe_excess),
                facecolors="none",
                edgecolors=c,
                marker=mk,
                label=f"{sim}: probe on {int(rest.probe_dim.max())}-dim features (not judged)",
            )
        b.scatter(
            s.pmi_delta,
            s.constructed_excess - s.epsilon,
            color=c,
            marker=mk,
            label=f"{sim} constructed classifier",
        )
    a.scatter(
        rand.epsilon,
        clip(rand.probe_excess),
        color=FAIL_COLOR,
        marker="X",
        s=60,
        label="control: random head, probe vs eps (2 Delta removed)",
    )
    a.scatter(
        rand.risk_bound,
        clip(rand.probe_excess),
        facecolors="none",
        edgecolors=FAIL_COLOR,
        marker="X",
        s=60,
        label="control's random head vs the full eps + 2 Delta",
    )
    lo = max(floor, min(df.risk_bound.min(), df.ens_bound.min(), rand.epsilon.min()) / 2)
    hi = max(df.risk_bound.max(), df.ens_bound.max(), rand.risk_bound.max()) * 1.5
    a.plot([lo, hi], [lo, hi], "k--", label="probe = bound (must stay below)")
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("bound  [nats]")
    a.set_ylabel("excess risk over H(C|X)  [nats]")
    a.set_title("filled: judged, below the diagonal; red X above it: the control FAILs")
    a.legend(loc="upper left", fontsize=6.5)
    d = np.linspace(0, df.pmi_delta.max() * 1.05, 50)
    b.fill_between(d, -2 * d, 2 * d, color="#1a7f37", alpha=0.1, label="allowed: |y| <= 2 Delta")
    b.plot(d, 2 * d, "k--", lw=1)
    b.plot(d, -2 * d, "k--", lw=1)
    b.axhline(0, color="grey", lw=0.8)
    b.set_xlabel("Delta = half-range of (logit - PMI)  [nats]")
    b.set_ylabel("constructed excess risk - eps  [nats]")
    b.set_title("T3b (implementation check): every point in the wedge")
    b.legend(loc="upper left", fontsize=7)
    banner(
        fig,
        of_figure(results, "t3_excess_risk"),
        "T3: downstream excess risk against eps + 2 Delta",
    )
    return save(fig, fig_dir, "t3_excess_risk")

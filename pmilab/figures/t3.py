"""T3 figure: probe excess risk against the bound ε + 2Δ, and both against Δ."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pmilab.experiments.claims.t3 import with_bounds
from pmilab.experiments.framework.claim import ClaimResult
from pmilab.figures.style import HEAD_COLORS, HEAD_MARKERS, banner, of_figure, save


def draw(tables: dict[str, pd.DataFrame], results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    df = with_bounds(tables["heads"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.8))
    floor = 1e-4
    for sim in ("tabular", "linear", "wpse", "kme"):
        s = df[df.similarity == sim]
        if not len(s):
            continue
        c, mk = HEAD_COLORS[sim], HEAD_MARKERS[sim]
        if sim == "kme":
            a.scatter(
                s.ens_bound,
                s.ensemble_excess.clip(lower=floor),
                color=c,
                marker=mk,
                label="KME prompt ensemble vs eps_ens + 2 Delta",
            )
            a.scatter(
                s.risk_bound,
                s.probe_excess.clip(lower=floor),
                facecolors="none",
                edgecolors=c,
                marker=mk,
                label="KME linear probe on mu_x (not covered)",
            )
        else:
            a.scatter(
                s.risk_bound,
                s.probe_excess.clip(lower=floor),
                color=c,
                marker=mk,
                label=f"{sim} linear probe",
            )
        b.scatter(
            s.pmi_delta,
            s.constructed_excess - s.epsilon,
            color=c,
            marker=mk,
            label=f"{sim} constructed classifier",
        )
    lo = max(floor, min(df.risk_bound.min(), df.ens_bound.min()) / 2)
    hi = max(df.risk_bound.max(), df.ens_bound.max()) * 1.5
    a.plot([lo, hi], [lo, hi], "k--", label="probe = bound (must stay below)")
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("bound eps + 2 Delta  [nats]")
    a.set_ylabel("excess risk over H(C|X)  [nats]")
    a.set_title("every point must lie below the diagonal")
    a.legend(loc="upper left", fontsize=7)
    d = np.linspace(0, df.pmi_delta.max() * 1.05, 50)
    b.fill_between(d, -2 * d, 2 * d, color="#1a7f37", alpha=0.1, label="allowed: |y| <= 2 Delta")
    b.plot(d, 2 * d, "k--", lw=1)
    b.plot(d, -2 * d, "k--", lw=1)
    b.axhline(0, color="grey", lw=0.8)
    b.set_xlabel("Delta = half-range of (logit - PMI)  [nats]")
    b.set_ylabel("constructed excess risk - eps  [nats]")
    b.set_title("two-sided: the bound closes onto eps as Delta -> 0 (every point in the wedge)")
    b.legend(loc="upper left", fontsize=7)
    banner(
        fig,
        of_figure(results, "t3_excess_risk"),
        "T3: downstream excess risk against eps + 2 Delta",
    )
    return save(fig, fig_dir, "t3_excess_risk")

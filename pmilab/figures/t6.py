"""T6 figure: Monte Carlo E_p[PMI] against the exact MI (z-scores), and trained error on a base
distribution against its bijective transforms."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pmilab.experiments.claims import ClaimResult
from pmilab.experiments.common import Z_TOL
from pmilab.experiments.t6 import INV_TOL
from pmilab.figures import banner, of_figure, save


def draw(tables: dict[str, pd.DataFrame], results: list[ClaimResult], fig_dir: Path) -> list[Path]:
    mc, inv = tables["t6-mc"], tables["t6-invariance"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1.4, 1]})
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
    rel = inv.pmi_rmse_product / inv.product_std
    se = inv.pmi_rmse_product_se / inv.product_std
    g = pd.DataFrame({"t": inv["transform"], "rel": rel, "se": se}).groupby("t", sort=False)
    n = g.rel.count()  # the same standard error as the T6b/T6c verdict (MC and seed spread)
    m, sem = g.rel.mean(), np.sqrt((g.se.mean() ** 2 + g.rel.var(ddof=1).fillna(0)) / n)
    order = [t for t in ("none", "affine", "asinh", "halfcube", "spiral") if t in m.index]
    b.bar(order, m[order], yerr=Z_TOL * sem[order], capsize=5,
          color=["#444444"] + ["#8250df"] * (len(order) - 1), label=f"mean over seeds, +/- {Z_TOL:g} SE")
    base = m["none"]
    b.axhspan(max(base - INV_TOL, 0), base + INV_TOL, color="#1a7f37", alpha=0.12,
              label=f"base error +/- {INV_TOL:g}: PASS if a bar's {Z_TOL:g}-SE bar reaches it")
    b.set_xticks(range(len(order)), ["base (none)"] + order[1:])
    b.set_xlabel("bijection applied to both modalities (affine, asinh: smooth; spiral: hard warp)")
    b.set_ylabel("rmse / sd(PMI)  [dimensionless]")
    b.set_title(f"{inv.similarity.iloc[0]} head on {inv.dist.iloc[0].split(',transform')[0]}")
    b.legend()
    banner(fig, of_figure(results, "t6_invariance"), "T6: PMI identities and bijection invariance")
    fig.subplots_adjust(bottom=0.24, wspace=0.25)
    return save(fig, fig_dir, "t6_invariance")

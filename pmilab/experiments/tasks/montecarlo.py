"""T6a's task: the Monte Carlo mean of the exact PMI against the exact I(X;Y)."""

from __future__ import annotations

import math

from pmilab.stats import mean_se

MC_METRICS = ["mi_exact", "mi_exact_se", "pmi_mean", "pmi_mean_se", "z"]


def mc_check(p: dict) -> dict:
    """E_p[PMI] by Monte Carlo against the exact I(X;Y) (T6): z = (MC − exact) / combined SE."""
    from pmilab.dists import builtin

    d = builtin()[p["dist"]]
    x, y = d.sample(int(p["n"]), seed=int(p["seed"]))
    v = d.pmi(x, y)
    est = mean_se(v)
    mean, se = float(est), est.se
    mi = d.mutual_information()
    mi_se = float(getattr(mi, "se", 0.0))
    z = (mean - float(mi)) / math.sqrt(se**2 + mi_se**2)
    return {
        "mi_exact": float(mi),
        "mi_exact_se": mi_se,
        "pmi_mean": mean,
        "pmi_mean_se": se,
        "z": z,
    }

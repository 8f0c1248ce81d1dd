"""T6a's task: the Monte Carlo mean of the exact PMI against an MI computed independently of
that Monte Carlo, and the same mean on shuffled pairs (the row's negative control)."""

from __future__ import annotations

import torch

from pmilab.stats import mean_se

MC_METRICS = [
    "mi_exact",
    "mi_exact_se",
    "mi_source",
    "pmi_mean",
    "pmi_mean_se",
    "z",
    "pmi_shuffled_mean",
    "pmi_shuffled_se",
    "z_shuffled",
]


def independent_mi(d) -> tuple[float, str]:
    """I(X;Y) computed without sampling: an exact sum or a closed form (`mutual_information()`
    with se 0), or, for the latent Gaussian mixture, Gauss–Hermite quadrature. A Monte Carlo
    value is refused: T6a would compare Monte Carlo with Monte Carlo of the same estimator."""
    quad = getattr(d, "mutual_information_quadrature", None)
    if quad is not None:
        return float(quad()), "quadrature"
    mi = d.mutual_information()
    if float(getattr(mi, "se", 0.0)) > 0:
        raise ValueError(f"{d!r}: its I(X;Y) is a Monte Carlo estimate, not an independent value")
    return float(mi), "exact"


def mc_check(p: dict) -> dict:
    """E_p[PMI] by Monte Carlo against the independent I(X;Y) (T6): z = (MC − I) / SE. The
    control: the same mean on shuffled pairs (x_i, y_{i+1}), independent draws from
    p(x)p(y), whose mean is −KL(p(x)p(y) ‖ p(x, y)), not I."""
    from pmilab.dists import builtin

    d = builtin()[p["dist"]]
    x, y = d.sample(int(p["n"]), seed=int(p["seed"]))
    mi, source = independent_mi(d)
    est = mean_se(d.pmi(x, y))
    shuf = mean_se(d.pmi(x, torch.roll(y, 1, dims=0)))
    return {
        "mi_exact": mi,
        "mi_exact_se": 0.0,
        "mi_source": source,
        "pmi_mean": float(est),
        "pmi_mean_se": est.se,
        "z": (float(est) - mi) / est.se,
        "pmi_shuffled_mean": float(shuf),
        "pmi_shuffled_se": shuf.se,
        "z_shuffled": (float(shuf) - mi) / shuf.se,
    }

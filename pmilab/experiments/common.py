"""Helpers the claim modules share: run ids, seed lists, thresholds and per-seed aggregation.

Thresholds used by several claims live here, each with the reason for its value.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pmilab.experiments.sweep import make_id

# A head "reaches PMI + C" on a discrete joint trained on the exact population loss when its
# pmi_rmse_product is <= 5% of the PMI spread sd_{p(x)p(y)}(PMI). Why 5%: the alternatives the
# claims must tell apart sit far above it: the Eckart–Young floor of a rank-K linear head on the
# K=4 latent table is 13% (theory.optimum.rank_floor, exact), and the one-sided optimum's
# row offsets c(x) are ~20% (T1 measures it); float32 Adam reaches < 1% on the tabular head.
REACH_TOL = 0.05
# The same on continuous joints, where MLP encoders are trained on minibatches and scored by
# Monte Carlo: 15% (3x REACH_TOL). The Monte Carlo SE of the estimate is ~1% of the spread, and
# the restricted alternative (a bilinear head on a Gaussian) has an exact floor of >= 50%.
REACH_TOL_MC = 0.15
# Monte Carlo agreement: |estimate − exact| <= 4 SE. Under the null a |z| > 4 happens with
# probability 6e-5 per check, so a suite of ~10 such checks fails by chance < 1e-3 of the time.
Z_TOL = 4.0


def dist_id(spec: str) -> str:
    """'latent:nx=24,ny=20,k=4,seed=0' -> 'latent-24-20-4-0' (bmi style: values in the id)."""
    name, _, rest = spec.partition(":")
    vals = [kv.split("=", 1)[1] for kv in rest.split(",") if "=" in kv]
    return make_id(name, *vals)


def seed_list(n: int) -> list[int]:
    return list(range(int(n)))


def rel_error(df: pd.DataFrame, col: str = "pmi_rmse_product") -> pd.Series:
    """The error in units of the PMI spread (dimensionless, comparable across joints)."""
    return df[col] / df["product_std"]


def over_seeds(df: pd.DataFrame, by: list[str], col: str) -> pd.DataFrame:
    """mean, sem (0 with one seed) and n of `col` per group, sorted by the group keys."""
    g = df.groupby(by, sort=True)[col]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out["sem"] = (out["std"] / np.sqrt(out["count"])).fillna(0.0)
    return out.rename(columns={"count": "n"})


def fmt(v: float, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return f"{v:.{digits}g}"


def fig(name: str) -> str:
    """Report-relative path of a figure."""
    return f"figures/{name}.png"

"""Thresholds that several claims share, each with the reason for its value.

They are fixed before any run (docs/theory.md, "Thresholds are fixed before the run"); a claim
that does not meet them is reported as FAIL, never re-tuned.
"""

from __future__ import annotations

import pandas as pd

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


def rel_error(df: pd.DataFrame, col: str = "pmi_rmse_product") -> pd.Series:
    """The error in units of the PMI spread (dimensionless, comparable across joints)."""
    return df[col] / df["product_std"]

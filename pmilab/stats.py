"""Mean ± standard error: the one owner of that rule (docs/architecture.md).

Every module that reports an average with its uncertainty uses these:
- `Estimate`: a float that carries its standard error (`se`; 0.0 when the value is exact);
- `mean_se(values)`: the mean of i.i.d. values with the SE sd/sqrt(n) (unbiased sd; SE is NaN
  for n < 2, since one value says nothing about its spread);
- `group_mean_se(df, by, col)`: the same per group of a results table (SE 0.0 for a group of
  one: one seed has no spread to show, and figures draw a zero-length error bar).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class Estimate(float):
    """A float that carries its standard error (`se`, 0.0 when the value is exact)."""

    se: float

    def __new__(cls, value: float, se: float = 0.0) -> Estimate:
        obj = super().__new__(cls, value)
        obj.se = float(se)
        return obj

    def __repr__(self) -> str:
        return f"{float(self):.6g} ± {self.se:.2g}" if self.se else f"{float(self):.6g}"


def mean_se(values: Tensor) -> Estimate:
    """Mean of i.i.d. values (any shape, flattened) with its standard error sd/sqrt(n)."""
    v = torch.as_tensor(values)
    n = v.numel()
    se = (v.std(unbiased=True) / math.sqrt(n)).item() if n > 1 else math.nan
    return Estimate(v.mean().item(), se)


def group_mean_se(df, by: list[str], col: str):
    """Per group of `df` (sorted by the keys): columns mean, std, count and se of `col`."""
    import numpy as np

    out = df.groupby(by, sort=True)[col].agg(["mean", "std", "count"]).reset_index()
    out["se"] = (out["std"] / np.sqrt(out["count"])).fillna(0.0)
    return out

"""Finite joints p(x, y) given as a table, with exact PMI and MI (docs/theory.md T1, T6).

Inputs are integer indices: x in {0..nx-1}, y in {0..ny-1}.

Validation (at the boundary, one clear sentence each): the table must be 2-D, finite,
nonnegative and sum to 1 (or pass `normalize=True`).

All-zero rows or columns are rejected: a state with p(x) = 0 is never sampled and its PMI is
undefined (0/0), so it carries no information and would only poison the product-measure
metrics. Remove it, or pass `drop_empty=True` to remove it for you. Zero *cells* inside nonzero
rows and columns are allowed; their PMI is -inf (the pair never co-occurs).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from pmilab.dists.base import (
    F64,
    TABLE_COPIES,
    Estimate,
    check_n,
    check_pmi_matrix,
    check_table,
    generator,
)
from pmilab.errors import InputError

SUM_ATOL = 1e-6  # tolerance on sum(table) == 1; float32 tables saved by users sum to ~1e-7


class Discrete:
    """Any finite joint distribution over (x, y) given by an (nx, ny) table."""

    discrete = True
    # What one draw of `sample` holds: the flat index multinomial draws, x, y and a quotient.
    draw_bytes = 4 * F64

    def __init__(self, table, normalize: bool = False, drop_empty: bool = False) -> None:
        t = validate_table(table, normalize=normalize, drop_empty=drop_empty)
        self.table: Tensor = t  # (nx, ny) float64, sums to 1
        self.px: Tensor = t.sum(1)  # (nx,)
        self.py: Tensor = t.sum(0)  # (ny,)
        self.nx, self.ny = t.shape

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(nx={self.nx}, ny={self.ny}, I={self.mutual_information():.4f})"
        )

    # --- ground truth -------------------------------------------------------------------
    def pmi_table(self) -> Tensor:
        """(nx, ny) PMI; -inf where p(x, y) = 0."""
        with torch.no_grad():
            return torch.log(self.table) - torch.log(self.px)[:, None] - torch.log(self.py)[None, :]

    def pmi(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = self._index(x, "x", self.nx), self._index(y, "y", self.ny)
        if x.shape != y.shape:
            raise InputError(
                f"pmi needs paired inputs of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        return self.pmi_table()[x, y]

    def pmi_matrix(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = self._index(x, "x", self.nx), self._index(y, "y", self.ny)
        # the (n, m) result, the (n, ny) rows it is cut from, and the PMI table's temporaries
        table = F64 * (x.numel() * self.ny + TABLE_COPIES * self.nx * self.ny)
        check_pmi_matrix(x.numel(), y.numel(), F64, fixed=table)
        return self.pmi_table()[x][:, y]

    def mutual_information(self) -> Estimate:
        """Exact I(X;Y) = sum_{p>0} p(x,y) PMI(x,y), in nats."""
        p = self.table
        mask = p > 0
        return Estimate(float((p[mask] * self.pmi_table()[mask]).sum()))

    def entropy_x(self) -> float:
        p = self.px[self.px > 0]
        return float(-(p * p.log()).sum())

    # --- sampling -----------------------------------------------------------------------
    def sample(self, n: int, seed: int | None = 0) -> tuple[Tensor, Tensor]:
        """n i.i.d. pairs of int64 indices; identical for identical seeds."""
        flat = self._sample_flat(n, seed)
        return flat // self.ny, flat % self.ny

    def _sample_flat(self, n: int, seed: int | None) -> Tensor:
        n = check_n(n, self.draw_bytes)
        return torch.multinomial(
            self.table.flatten(), n, replacement=True, generator=generator(seed)
        )

    def _index(self, v, name: str, size: int) -> Tensor:
        v = torch.as_tensor(v)
        if v.is_floating_point() or v.is_complex():
            if not torch.equal(v, v.round()):
                raise InputError(f"{name} must hold integer state indices for a discrete joint")
            v = v.long()
        if v.numel() and (v.min() < 0 or v.max() >= size):
            raise InputError(
                f"{name} indices must lie in [0, {size - 1}], got range [{int(v.min())}, {int(v.max())}]"
            )
        return v.long()


def validate_table(table, normalize: bool = False, drop_empty: bool = False) -> Tensor:
    """A user table as a validated float64 (nx, ny) tensor that sums to 1."""
    if table.is_complex() if torch.is_tensor(table) else np.iscomplexobj(table):
        raise InputError("the joint table holds complex numbers; a joint table must be real")
    try:
        t = torch.as_tensor(table, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as e:
        raise InputError(f"the joint table must be a 2-D array of numbers ({e})") from None
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise InputError(f"the joint table must be 2-D (nx, ny), got shape {tuple(t.shape)}")
    check_table(*t.shape)
    if not torch.isfinite(t).all():
        raise InputError(
            "the joint table contains NaN or inf; every entry must be a finite probability"
        )
    if (t < 0).any():
        i, j = (t < 0).nonzero()[0].tolist()
        raise InputError(
            f"the joint table has negative entries (e.g. [{i}, {j}] = {t[i, j]:.4g}); probabilities must be >= 0"
        )
    total = float(t.sum())
    if total <= 0:
        raise InputError("the joint table is all zeros; it needs positive mass")
    if normalize:
        t = t / total
    elif not math.isclose(total, 1.0, abs_tol=SUM_ATOL, rel_tol=0):
        raise InputError(
            f"the joint table sums to {total:.9g}, not 1; divide it by its sum, or rescale it with Discrete(table, normalize=True) (CLI: --normalize, or SPEC?normalize)"
        )
    rows, cols = t.sum(1) == 0, t.sum(0) == 0
    if rows.any() or cols.any():
        if not drop_empty:
            what = (
                f"rows {rows.nonzero().flatten().tolist()}"
                if rows.any()
                else f"columns {cols.nonzero().flatten().tolist()}"
            )
            raise InputError(
                f"the joint table has all-zero {what}: p(x) or p(y) = 0 leaves PMI undefined; remove them, or drop them with Discrete(table, drop_empty=True) (CLI: --drop-empty, or SPEC?drop_empty)"
            )
        t = t[~rows][:, ~cols]
    return t / t.sum()

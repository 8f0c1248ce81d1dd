"""Transformed(base, fx, fy): the law of (fx(X), fy(Y)), whose PMI is the base PMI at the
pre-images (docs/theory.md T6). Discrete bases take `Permutation` bijections and stay discrete."""

from __future__ import annotations

import torch
from torch import Tensor

from pmilab.dists.base import F64, Estimate, check_n, check_xy
from pmilab.dists.bijections import Bijection, Identity, Permutation
from pmilab.dists.discrete import Discrete
from pmilab.errors import InputError


class Transformed:
    def __init__(self, base, fx: Bijection | None = None, fy: Bijection | None = None) -> None:
        self.base, self.fx, self.fy = base, fx or Identity(), fy or Identity()
        self.discrete = bool(base.discrete)
        if self.discrete:
            for f, n, name in ((self.fx, base.nx, "fx"), (self.fy, base.ny, "fy")):
                if not isinstance(f, Permutation | Identity):
                    raise InputError(
                        f"a discrete base needs Permutation bijections, got {name}={f!r}"
                    )
                if isinstance(f, Permutation) and f.perm.numel() != n:
                    raise InputError(
                        f"{name} permutes {f.perm.numel()} states but the base has {n}"
                    )
            # The permuted table: table'[fx(i), fy(j)] = table[i, j].
            ix, iy = torch.arange(base.nx), torch.arange(base.ny)
            t = base.table[self.fx.inverse(ix)][:, self.fy.inverse(iy)]
            self._table = Discrete(t)
            self.table, self.px, self.py = self._table.table, self._table.px, self._table.py
            self.nx, self.ny = base.nx, base.ny
        else:
            self.dim_x, self.dim_y = base.dim_x, base.dim_y
        # One draw holds the base's draw and the mapped copies (x and y, or two indices).
        width = 2 if self.discrete else self.dim_x + self.dim_y
        self.draw_bytes = getattr(base, "draw_bytes", 0) + 2 * F64 * width
        if hasattr(base, "pair_bytes"):
            self.pair_bytes = base.pair_bytes

    def __repr__(self) -> str:
        return f"Transformed({self.base!r}, fx={self.fx!r}, fy={self.fy!r})"

    def sample(self, n: int, seed: int | None = 0) -> tuple[Tensor, Tensor]:
        check_n(n, self.draw_bytes)
        x, y = self.base.sample(n, seed)
        return self.fx.forward(x), self.fy.forward(y)

    def sample_with_latent(self, n: int, seed: int | None = 0):
        if not hasattr(self.base, "sample_with_latent"):
            raise InputError(f"{self.base!r} has no latent to sample")
        check_n(n, self.draw_bytes)
        x, y, z = self.base.sample_with_latent(n, seed)
        return self.fx.forward(x), self.fy.forward(y), z

    def _inputs(self, x, y, paired: bool) -> tuple:
        """Continuous inputs checked here (shape, finite) before the inverse maps them: an
        inverse of a NaN is NaN, and of a wrongly shaped input a torch error."""
        if self.discrete:
            return x, y
        return check_xy(x, y, self.dim_x, self.dim_y, paired)

    def pmi(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = self._inputs(x, y, paired=True)
        return self.base.pmi(self.fx.inverse(x), self.fy.inverse(y))

    def pmi_matrix(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = self._inputs(x, y, paired=False)
        return self.base.pmi_matrix(self.fx.inverse(x), self.fy.inverse(y))

    def pmi_table(self) -> Tensor:
        if not self.discrete:
            raise InputError("pmi_table exists only for discrete joints")
        return self._table.pmi_table()

    def mutual_information(self) -> Estimate:
        return self.base.mutual_information()

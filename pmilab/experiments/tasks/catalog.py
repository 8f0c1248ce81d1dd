"""Distributions the experiments use, by spec string (so a run's parameters stay plain text).

Everything `pmilab.dists.parse_spec` accepts, plus

    diag:n=32,noise=0.1     p(x, y) = (1 − noise)/n · 1[x = y] + noise/n²  (an n×n table)

a near-deterministic pairing whose I(X;Y) (≈ log n for small noise) exceeds log N for small
batches: the regime where the InfoNCE estimate saturates at log N (docs/theory.md T1c, T5).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from pmilab.dists import Discrete, parse_spec
from pmilab.errors import InputError


def diagonal_table(n: int, noise: float) -> torch.Tensor:
    """(n, n) float64 noisy-diagonal joint table."""
    if n < 2 or not 0 < noise <= 1:
        raise InputError(f"diag needs n >= 2 and 0 < noise <= 1, got n={n}, noise={noise}")
    t = torch.full((n, n), noise / n**2, dtype=torch.float64)
    t += torch.eye(n, dtype=torch.float64) * (1 - noise) / n
    return t


@lru_cache(maxsize=32)
def make_dist(spec: str):
    """A distribution from a spec string (cached: specs are immutable and seeded)."""
    name, _, rest = spec.partition(":")
    if name == "diag":
        kv = dict(item.split("=", 1) for item in rest.split(",") if item)
        return Discrete(diagonal_table(int(kv.get("n", 32)), float(kv.get("noise", 0.1))))
    return parse_spec(spec)

"""Distributions the experiments use, by spec string (so a run's parameters stay plain text).

Everything `pmilab.dists.parse_spec` accepts, plus

    diag:n=32,noise=0.1     p(x, y) = (1 − noise)/n · 1[x = y] + noise/n²  (an n×n table)

a near-deterministic pairing whose I(X;Y) (≈ log n for small noise) exceeds log N for small
batches: the regime where the InfoNCE estimate saturates at log N (docs/theory.md T1d, T5);

    <spec>|shuffled         the negative control "shuffled pairs" (docs/theory.md): x and y are
                            drawn independently, from the same marginals, but every score is
                            against the original joint's PMI
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


class ShuffledPairs:
    """`base` with its pairs broken: x and y are independent draws from the base's marginals.

    Everything else (PMI, MI, the joint table the scores weight by) is the base's, so a head
    trained on these pairs is scored against the PMI it never saw: InfoNCE on independent pairs
    has the constant logit as its optimum, and its PMI error is about sd(PMI). A check of
    "reaches PMI" must FAIL on it. Train it on samples: population training reads the base's
    joint table (`fitting.fit_run` refuses the combination).
    """

    def __init__(self, base) -> None:
        self.base = base

    def __getattr__(self, name: str):
        return getattr(self.base, name)

    def __repr__(self) -> str:
        return f"ShuffledPairs({self.base!r})"

    def sample(self, n: int, seed: int | None = 0):
        x, _ = self.base.sample(n, seed=seed)
        other = None if seed is None else (int(seed) * 2654435761 + 97) % 2**62
        _, y = self.base.sample(n, seed=other)
        return x, y


@lru_cache(maxsize=32)
def make_dist(spec: str):
    """A distribution from a spec string (cached: specs are immutable and seeded)."""
    spec, bar, suffix = spec.partition("|")
    if bar:
        if suffix != "shuffled":
            raise InputError(f"unknown spec suffix |{suffix}; the one suffix is |shuffled")
        return ShuffledPairs(make_dist(spec))
    name, _, rest = spec.partition(":")
    if name == "diag":
        kv = dict(item.split("=", 1) for item in rest.split(",") if item)
        return Discrete(diagonal_table(int(kv.get("n", 32)), float(kv.get("noise", 0.1))))
    return parse_spec(spec)

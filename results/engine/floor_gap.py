"""How early the heads sweep's point-set cells reach their exact floor (results/engine/quick_budget.md).

    .venv/bin/python results/engine/floor_gap.py kme:8:4 kme:2:2 wpse:8:4   # head:M:K per cell

Trains each quick heads cell (8 seeds batched, 10,000 steps, exactly as `pmilab verify --quick`)
and prints, per gap g, the first step at which every seed's excess loss + I(X;Y) (the exact
population loss's floor is -I) is below g, from the float32 training-loss history.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from pmilab.experiments.claims.heads import heads_config, run_params
from pmilab.experiments.tasks.catalog import make_dist
from pmilab.experiments.tasks.fitting import SWEEP_RUN, fit_kwargs
from pmilab.metrics import mutual_information_table
from pmilab.training import fit

GAPS = (1e-5, 1e-6, 3e-7, 1e-7, 3e-8)


def first_below(excess: np.ndarray) -> dict[float, int | None]:
    """excess (R, steps) -> {g: first step where every replicate is below g, or None}."""
    out = {}
    for g in GAPS:
        ok = (excess < g).all(0)
        out[g] = int(np.argmax(ok)) if ok.any() else None
    return out


def main(cells: list[str]) -> None:
    torch.set_num_threads(1)
    cfg = heads_config("quick")
    for cell in cells:
        sim, m, k = cell.split(":")
        p = run_params(cfg, int(k), sim, cfg.point_dim, int(m), 0)
        kw = fit_kwargs(p)
        kw.pop("seed")
        dist = make_dist(p["dist"])
        runs = fit(dist, seeds=list(range(8)), progress=False, **{**kw, **SWEEP_RUN})
        excess = np.array([r.history for r in runs]) + mutual_information_table(dist.table)
        print(cell, "final", excess[:, -1].max(), first_below(excess), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

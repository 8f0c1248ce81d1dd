"""Why the T2 point-set heads get 10000 steps: the K=2 KME plateau (see HeadsConfig.point_steps).

Trains KME with M = K points (point_dim 2, lr 0.1, exact population loss, the T2 settings) on the
K = 2, 4, 8 latent joints of `pmilab verify`, at budgets of 2000 and 10000 steps, 3 seeds, and
records the loss history of one 20000-step K=2 run. Writes plateau.csv and plateau.md here.

Regenerate: `.venv/bin/python results/t2/plateau.py` (about 3 minutes on 2 cores).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from pmilab.experiments.claims.heads import PRESETS
from pmilab.experiments.tasks.catalog import make_dist
from pmilab.theory import optimum as opt
from pmilab.training import fit

FULL = PRESETS["full"]
HERE = Path(__file__).parent
CHECKPOINTS = (100, 1000, 2000, 4000, 6000, 8000, 12000, 19999)


def train(k: int, steps: int, seed: int):
    d = make_dist(FULL.spec(k))
    t0 = time.perf_counter()
    run = fit(
        d,
        similarity="kme",
        dim=FULL.point_dim,
        points=k,
        normalize=False,
        bias=True,
        objective="symmetric",
        population=True,
        steps=steps,
        lr=FULL.lr,
        seed=seed,
        progress=False,
        device="cpu",
        threads=1,
    )
    sd = opt.product_std(d.pmi_table(), d.px, d.py)
    row = {
        "k": k,
        "points": k,
        "steps": steps,
        "seed": seed,
        "rel_error": run.metrics["pmi_rmse_product"] / sd,
        "excess_loss": run.metrics["excess_loss"],
        "seconds": time.perf_counter() - t0,
    }
    return row, np.asarray(run.history)


def main() -> None:
    rows = []
    for k in (2, 4, 8):
        for steps in (2000, 10000):
            for seed in range(3):
                rows.append(train(k, steps, seed)[0])
                print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(HERE / "plateau.csv", index=False)
    _, hist = train(2, 20000, 0)
    final = hist[-1]
    lines = [
        "# The K=2 KME plateau (why T2's point-set heads train 10000 steps)",
        "",
        f"KME with M = K points in {FULL.point_dim} dimensions on `{FULL.spec(2)}` (and k=4, 8),",
        f"exact population loss, AdamW lr {FULL.lr} with cosine decay, float32, CPU. `rel_error` is",
        "pmi_rmse_product / sd(PMI) under p(x)p(y); `excess_loss` is L(head) - L(PMI) in nats.",
        "",
        "Regenerate: `.venv/bin/python results/t2/plateau.py` (writes plateau.csv and this file).",
        "",
        "| K | steps | rel_error (seeds 0, 1, 2) | excess_loss (max) |",
        "|---|---|---|---|",
    ]
    for (k, steps), g in df.groupby(["k", "steps"]):
        errs = ", ".join(f"{v:.3g}" for v in g.rel_error)
        lines.append(f"| {k} | {steps} | {errs} | {g.excess_loss.max():.2g} |")
    lines += [
        "",
        "Loss of one 20000-step K=2 run (seed 0) above its final value, in nats:",
        "",
        "| step | " + " | ".join(str(s) for s in CHECKPOINTS) + " |",
        "|---|" + "---|" * len(CHECKPOINTS),
        "| loss - final | " + " | ".join(f"{hist[s] - final:.2g}" for s in CHECKPOINTS) + " |",
        "",
        "Reading: at K=2 the loss sits ~1e-5 nats above its optimum for thousands of steps (a",
        "plateau, not a floor: it then falls to ~1e-7 and below), so a 2000-step budget stops on",
        "the plateau. K=4 and K=8 converge within 2000 steps. The verify budget for point-set heads",
        "(10000 steps) is the smallest of the two budgets measured here that converges at every K.",
    ]
    (HERE / "plateau.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

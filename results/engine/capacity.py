"""docs/theory.md T2 capacity ordering on a 24×20 latent-class table (K = 4), exact population loss.

Regenerate (about 2–4 minutes on 2 CPU cores):

    .venv/bin/python results/engine/capacity.py            # writes capacity.csv and capacity.md

Every head trains on the exact population loss L∞ (full batch, no sampling noise) with the same
AdamW step size, cosine schedule and step count, so differences come from what each family can
represent: Linear has rank ≤ d, KME matches exp(PMI) of rank ≤ K with M ≥ K points, WPSE
improves with M, Tabular is unconstrained.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

import pmilab as pl

HERE = Path(__file__).resolve().parent
SPEC = "latent:nx=24,ny=20,k=4,seed=0,concentration=0.5"
STEPS = 3000
LR = 0.03  # one step size for every family; tabular / KME / WPSE all converge at it (see csv)
GRID = (
    [("tabular", {})]
    + [("linear", {"dim": d}) for d in (2, 4, 8, 16)]
    + [("kme", {"dim": 4, "points": m}) for m in (1, 2, 4)]
    + [("wpse", {"dim": 4, "points": m}) for m in (1, 4, 8)]
)


def capacity_table(
    spec: str = SPEC, steps: int = STEPS, lr: float = LR, seed: int = 0
) -> pd.DataFrame:
    dist = pl.dists.parse_spec(spec)
    rows = []
    for sim, kw in GRID:
        t0 = time.perf_counter()
        run = pl.fit(
            dist,
            similarity=sim,
            population=True,
            steps=steps,
            lr=lr,
            seed=seed,
            progress=False,
            **kw,
        )
        m = run.metrics
        rows.append(
            {
                "similarity": sim,
                "dim": kw.get("dim", ""),
                "points": kw.get("points", ""),
                "pmi_rmse_product": m["pmi_rmse_product"],
                "pmi_rmse_joint": m["pmi_rmse_joint"],
                "pmi_delta": m["pmi_delta"],
                "excess_loss": m["excess_loss"],
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        print(rows[-1], file=sys.stderr)
    return pd.DataFrame(rows)


def markdown_table(df: pd.DataFrame) -> str:
    cols = [
        "similarity",
        "dim",
        "points",
        "pmi_rmse_product",
        "pmi_rmse_joint",
        "pmi_delta",
        "excess_loss",
        "seconds",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = [f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in cols]
        lines.append("| " + " | ".join(c if c != "nan" else "" for c in cells) + " |")
    return "\n".join(lines)


def write_markdown(df: pd.DataFrame) -> None:
    dist = pl.dists.parse_spec(SPEC)
    text = f"""# Capacity ordering (docs/theory.md T2)

Distribution `{SPEC}` (K = 4 latent classes), I(X;Y) = {float(dist.mutual_information()):.4f}
nats. Exact population loss L∞, AdamW lr={LR}, cosine schedule, {STEPS} full-batch steps, seed 0,
float32, CPU. `seconds` is wall time on a shared, loaded 2-core machine (noisy).

Regenerate: `.venv/bin/python results/engine/capacity.py` (writes capacity.csv and this file).

{markdown_table(df)}

Reading (docs/theory.md T2's expected shape, reproduced):
- Tabular reaches PMI (excess loss ~1e-13).
- Linear (CLIP, cosine): large error for d <= K = 4, falling slowly beyond (d = 8, 16).
- KME collapses at M = K = 4 points (error 20-200x below M = 1, 2).
- WPSE improves steadily with M (M = 8 reaches float32 precision on this 24x20 table).
- Not predicted by T2 but explained by it: KME with M = 1 already beats Linear d = 4 because
  −‖u − v‖²/(2σ²) carries the per-input norms ‖u‖², ‖v‖² (a rank d + 2 table, unnormalised).
"""
    (HERE / "capacity.md").write_text(text)


def main() -> None:
    if "--markdown-only" in sys.argv:  # re-render capacity.md from the recorded csv
        write_markdown(pd.read_csv(HERE / "capacity.csv", keep_default_na=False))
        return
    df = capacity_table()
    df.to_csv(HERE / "capacity.csv", index=False)
    write_markdown(df)


if __name__ == "__main__":
    main()

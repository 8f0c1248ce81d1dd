"""Largest relative change per sweep between two verify results.csv files (shared run ids).

    .venv/bin/python results/refactor/batched_seeds/compare.py OLD/results.csv NEW/results.csv

Timing columns are skipped; NaN equals NaN. Prints: sweep, shared runs, differing cells, the
largest relative difference |a - b| / max(|a|, |b|) and its column.
"""

import sys

import pandas as pd

a = pd.read_csv(sys.argv[1]).set_index("run_id")
b = pd.read_csv(sys.argv[2]).set_index("run_id")
shared = [r for r in a.index if r in b.index]
skip = {"seconds", "cpu_seconds", "sweep"}
worst: dict[str, tuple[int, float, str | None]] = {}
for rid in shared:
    sw = a.at[rid, "sweep"]
    for c in a.columns:
        if c in skip or c not in b.columns:
            continue
        x, y = a.at[rid, c], b.at[rid, c]
        if (pd.isna(x) and pd.isna(y)) or x == y:
            continue
        try:
            rel = abs(float(x) - float(y)) / max(abs(float(x)), abs(float(y)), 1e-300)
        except (TypeError, ValueError):
            rel = float("inf")
        n, w, col = worst.get(sw, (0, 0.0, None))
        worst[sw] = (n + 1, max(w, rel), c if rel > w else col)
for sw in sorted(set(a.loc[shared, "sweep"])):
    n, w, col = worst.get(sw, (0, 0.0, None))
    runs = int((a.loc[shared, "sweep"] == sw).sum())
    print(f"| {sw} | {runs} | {n} | {w:.2e} | {col or ''} |")

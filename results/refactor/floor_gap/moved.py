"""What the heads sweep's exact-floor stop moved (issue 22): two verify results.csv, before and after.

    .venv/bin/python results/refactor/floor_gap/moved.py OLD/results.csv NEW/results.csv

Runs are matched by their id without the trailing parameter hash. Prints markdown: per sweep,
how many shared runs are identical in every non-timing column
(`scripts/compare_results.py`'s rule); then per heads cell (head, d, M, K), the seeds, the mean
steps run and how many seeds stopped at the floor, and for each judged metric the mean before
and after and the largest change of one seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from scripts.compare_results import TIMING, same  # noqa: E402

METRICS = [
    "pmi_rmse_product",
    "pmi_rmse_joint",
    "excess_loss",
    "final_loss",
    "probe_excess",
    "rel_plus_half",
    "rel_plus_double",
]
CELL = ["similarity", "dim", "points", "k"]


def readable(df: pd.DataFrame) -> pd.DataFrame:
    """Runs keyed by their id without its parameter hash (the new `floor_gap` parameter of the
    heads runs changes the hash, not the parameters a reader needs)."""
    return df.assign(key=df["run_id"].str.rsplit("-", n=1).str[0]).set_index("key")


def sweep_table(old: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    o, n = readable(old), readable(new)
    cols = [c for c in o.columns if c not in (*TIMING, "run_id") and c in n.columns]
    lines = ["| sweep | shared runs | identical | differing | only before | only after |"]
    lines.append("|---|---|---|---|---|---|")
    for sweep in sorted(set(old["sweep"]) | set(new["sweep"])):
        ids_o = set(o.index[o["sweep"] == sweep])
        ids_n = set(n.index[n["sweep"] == sweep])
        shared = sorted(ids_o & ids_n)
        diff = sum(any(not same(str(o.at[i, c]), str(n.at[i, c])) for c in cols) for i in shared)
        lines.append(
            f"| {sweep} | {len(shared)} | {len(shared) - diff} | {diff} | "
            f"{len(ids_o - ids_n)} | {len(ids_n - ids_o)} |"
        )
    return lines


def heads_table(old: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    o, n = readable(old[old["sweep"] == "heads"]), readable(new[new["sweep"] == "heads"])
    ids = o.index.intersection(n.index)
    o, n = o.loc[ids], n.loc[ids]
    head = "| head | d | M | K | seeds | steps run (mean) | stopped at floor |"
    head += "".join(f" {m}: before → after (largest seed change) |" for m in METRICS)
    lines = [head, "|" + "---|" * (7 + len(METRICS))]
    for key, idx in n.groupby(CELL).groups.items():
        sim, dim, pts, k = key
        row = f"| {sim} | {int(dim)} | {int(pts)} | {int(k)} | {len(idx)} | "
        row += f"{n.loc[idx, 'steps_run'].mean():.0f} | "
        row += f"{int(n.loc[idx, 'converged_at_step'].notna().sum())} |"
        for m in METRICS:
            b, a = o.loc[idx, m].astype(float), n.loc[idx, m].astype(float)
            row += f" {b.mean():.3g} → {a.mean():.3g} ({(a - b).abs().max():.2g}) |"
        lines.append(row)
    return lines


def main(argv: list[str]) -> int:
    old, new = (pd.read_csv(p, low_memory=False) for p in argv[:2])
    print("## Runs identical per sweep\n")
    print("\n".join(sweep_table(old, new)))
    print("\n## Heads cells: what moved\n")
    print("\n".join(heads_table(old, new)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Compare two verify results.csv files run by run: does a change alter any number?

    python scripts/compare_results.py OLD/results.csv NEW/results.csv [--ignore COL ...]

Rows are matched by (table, run_id). Every column of OLD except the timing columns (`seconds`,
`cpu_seconds`) must hold the same value in NEW: numbers exactly equal (NaN equals NaN, "4" equals
"4.0"), text identical. Prints every difference, the rows only one side has, and the columns
only NEW has; exits 1 when a shared row differs or a row of OLD is missing from NEW.
"""

from __future__ import annotations

import argparse
import math
import sys

import pandas as pd

TIMING = ("seconds", "cpu_seconds")


def same(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return x == y or (math.isnan(x) and math.isnan(y))


def compare(
    old: pd.DataFrame, new: pd.DataFrame, ignore: tuple[str, ...]
) -> tuple[list, list, list]:
    key = ["table", "run_id"]
    o, n = old.set_index(key), new.set_index(key)
    diffs = []
    cols = [c for c in o.columns if c not in ignore]
    for idx in o.index.intersection(n.index):
        for c in cols:
            a = o.at[idx, c]
            b = n.at[idx, c] if c in n.columns else "<absent>"
            if not same(a, b):
                diffs.append((idx, c, a, b))
    only_old = list(o.index.difference(n.index))
    only_new = list(n.index.difference(o.index))
    return diffs, only_old, only_new


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--ignore", nargs="*", default=[], help="more columns to leave out")
    args = ap.parse_args(argv)
    read = lambda p: pd.read_csv(p, dtype=str, keep_default_na=False)  # noqa: E731
    old, new = read(args.old), read(args.new)
    diffs, only_old, only_new = compare(old, new, (*TIMING, *args.ignore))
    shared = len(old) - len(only_old)
    for (table, rid), col, a, b in diffs:
        print(f"DIFF {table} {rid} {col}: {a!r} -> {b!r}")
    for table, rid in only_old:
        print(f"ONLY OLD {table} {rid}")
    tables_new = sorted({t for t, _ in only_new})
    extra_cols = [c for c in new.columns if c not in old.columns]
    print(
        f"{shared} shared runs compared on {len(old.columns) - len(TIMING)} columns: "
        f"{len(diffs)} differences; {len(only_old)} runs only in OLD; {len(only_new)} runs only "
        f"in NEW (tables {tables_new}); {len(extra_cols)} columns only in NEW"
    )
    return 1 if diffs or only_old else 0


if __name__ == "__main__":
    sys.exit(main())

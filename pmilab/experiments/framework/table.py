"""The results table of a sweep: one CSV row per finished run, appended as runs finish.

A row is written with one `write` call and flushed to disk, and its last column is the sentinel
`ok=1`, so a run killed mid-write leaves at most one truncated line. `read_rows` drops it (and
any duplicate run id) and `compact` rewrites the file without it before new rows are appended.
Floats are written with `repr`, which round-trips exactly: a resumed sweep's table equals an
uninterrupted one bit for bit (apart from the `seconds` and `cpu_seconds` timing columns).
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from pmilab import atomic

SENTINEL = "ok"


def format_value(v) -> str:
    """A CSV cell: floats with full precision (repr round-trips), None/NaN as empty."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def format_row(columns: list[str], row: dict) -> str:
    extra = set(row) - set(columns)
    if extra:
        raise KeyError(f"row has keys {sorted(extra)} that are not columns of the table")
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(
        [format_value(row.get(c)) for c in columns] + ["1"]
    )
    return buf.getvalue()


def read_rows(path: Path) -> tuple[list[str], list[dict], bool]:
    """(columns, complete rows, clean) of one table file; `clean` is False when a truncated or
    duplicate line was dropped. Rows keep the file's order; values stay strings."""
    path = Path(path)
    if not path.exists():
        return [], [], True
    with open(path, newline="") as f:
        text = f.read()
    lines = list(csv.reader(io.StringIO(text)))
    if not lines:
        return [], [], True
    header = lines[0]
    if not header or header[-1] != SENTINEL:
        raise ValueError(f"{path} is not a pmilab results table (no '{SENTINEL}' column)")
    columns = header[:-1]
    rows, seen, clean = [], set(), text.endswith("\n")
    for fields in lines[1:]:
        if len(fields) != len(header) or fields[-1] != "1":
            clean = False
            continue
        row = dict(zip(columns, fields[:-1], strict=True))
        if row.get("run_id") in seen:
            clean = False
            continue
        seen.add(row.get("run_id"))
        rows.append(row)
    return columns, rows, clean


def compact(path: Path, columns: list[str]) -> list[dict]:
    """Make `path` a clean table with these columns (creating it if needed); returns its rows."""
    path = Path(path)
    old_cols, rows, clean = read_rows(path)
    if path.exists() and old_cols and old_cols != columns:
        raise ValueError(
            f"{path} has columns {old_cols}, expected {columns}; it was written by another "
            "version of this sweep: move it away and rerun"
        )
    if path.exists() and clean and old_cols:
        return rows
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ",".join(columns + [SENTINEL]) + "\n" + "".join(format_row(columns, r) for r in rows)
    atomic.write_text(path, text)
    return rows


def append_row(path: Path, columns: list[str], row: dict) -> None:
    """Append one finished run (the file must exist with its header: call `compact` first)."""
    line = format_row(columns, row)
    with open(path, "a", newline="") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())

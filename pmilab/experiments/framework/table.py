"""The results table of a sweep: one CSV row per finished run, appended as runs finish.

A row is written with one `write` call and flushed to disk, and its last column is the sentinel
`ok=1`, so a run killed mid-write leaves at most one truncated line. The sentinel alone does not
make a row trusted: a garbage byte or a hand edit can leave a "finished" row that the next
reader would crash on. `scan` trusts a row only if it is valid UTF-8, complete and passes the
sweep's check of its cells (`sweep.run_table_check`: numbers where numbers belong); `compact`
rewrites the file without the others (and without duplicate run ids) before new rows are
appended, keeping their bytes in `<sweep>.csv.rejected` and naming each run on stderr: it is
not finished, so it runs again.
Floats are written with `repr`, which round-trips exactly: a resumed sweep's table equals an
uninterrupted one bit for bit (apart from the `seconds` and `cpu_seconds` timing columns).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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


@dataclass
class Rejected:
    """A row set aside: its run id (None when unreadable), why, and its bytes as in the file."""

    run_id: str | None
    reason: str
    text: bytes


@dataclass
class Scan:
    """One table file read: its columns, the rows trusted (file order, values as text), the
    rows rejected, and `clean`: False when anything was dropped or the last line is unended."""

    columns: list[str]
    rows: list[dict]
    rejected: list[Rejected] = field(default_factory=list)
    clean: bool = True


# A row check: the structurally complete rows of a table -> for each, None (trusted) or why it
# is not (`sweep.run_table_check` knows the sweep's runs and the types of its columns).
Check = Callable[[list[dict]], list[str | None]]


# Undecodable bytes come back from surrogateescape as lone surrogates U+DC80..U+DCFF.
_BAD_BYTE = re.compile("[\udc80-\udcff]")


def _lines(text: str) -> list[str]:
    """Physical lines, split at line feeds only (str.splitlines would also split at garbage
    bytes such as 0x1c), each keeping its line feed; the last lacks it if the file does."""
    pieces = text.split("\n")
    lines = [p + "\n" for p in pieces[:-1]]
    return lines + [pieces[-1]] if pieces[-1] else lines


def _records(lines: list[str]) -> Iterator[tuple[list[str] | None, str]]:
    """(fields, raw text) of each CSV record (a quoted cell may span lines); a record the csv
    module cannot read is (None, its first line), and reading resumes on the next line."""
    start = 0
    while start < len(lines):
        reader = csv.reader(lines[start:])
        done = 0
        try:
            for fields in reader:
                yield fields, "".join(lines[start + done : start + reader.line_num])
                done = reader.line_num
            return
        except csv.Error:
            yield None, lines[start + done]
            start += done + 1


def _raw(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")  # the file's own bytes back


def _structure_problem(fields: list[str] | None, width: int) -> str | None:
    """Why a record is not a complete row of `width` cells ending in the sentinel, if it is not."""
    if fields is None:
        return "unreadable CSV"
    if any(_BAD_BYTE.search(f) for f in fields):
        return "bytes that are not valid UTF-8"
    if len(fields) != width or fields[-1] != "1":
        return f"not a complete row: {len(fields)} cells, a finished row has {width} ending in '1'"
    return None


def scan(path: Path, check: Check | None = None) -> Scan:
    """Read one table file. A row is trusted only when it is valid UTF-8, complete (every
    cell, then the sentinel) and passes `check`; the others are returned as `rejected` with
    their exact bytes. A repeated run id keeps its first row (the later one is dropped)."""
    path = Path(path)
    if not path.exists():
        return Scan([], [])
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    records = list(_records(_lines(text)))
    if not records:
        return Scan([], [])
    header = records[0][0]
    if not header or header[-1] != SENTINEL or _BAD_BYTE.search("".join(header)):
        raise ValueError(f"{path} is not a pmilab results table (no '{SENTINEL}' column)")
    columns = header[:-1]
    out = Scan(columns, [], clean=text.endswith("\n"))
    complete: list[tuple[dict, str]] = []
    for fields, raw in records[1:]:
        if fields == []:  # a blank line holds nothing to keep
            out.clean = False
            continue
        why = _structure_problem(fields, len(header))
        if why is None:
            complete.append((dict(zip(columns, fields[:-1], strict=True)), raw))
        else:
            run_id = fields[0] if fields and not _BAD_BYTE.search(fields[0]) else None
            out.rejected.append(Rejected(run_id, why, _raw(raw)))
    verdicts = check([r for r, _ in complete]) if check else [None] * len(complete)
    seen: set = set()
    for (row, raw), why in zip(complete, verdicts, strict=True):
        if why is not None:
            out.rejected.append(Rejected(row.get("run_id"), why, _raw(raw)))
        elif row.get("run_id") in seen:
            out.clean = False
        else:
            seen.add(row.get("run_id"))
            out.rows.append(row)
    out.clean = out.clean and not out.rejected
    return out


def read_rows(path: Path, check: Check | None = None) -> tuple[list[str], list[dict], bool]:
    """(columns, trusted rows, clean) of one table file (`scan`); values stay strings."""
    s = scan(path, check)
    return s.columns, s.rows, s.clean


def rejected_path(path: Path) -> Path:
    """The sidecar that keeps a table's rejected rows: `<sweep>.csv.rejected`."""
    path = Path(path)
    return path.with_name(path.name + ".rejected")


def _set_aside(path: Path, rejected: list[Rejected]) -> None:
    """Append the rejected rows' bytes to the sidecar (before the table loses them, so a kill
    in between loses nothing) and say on stderr, one line each, which run will run again."""
    side = rejected_path(path)
    with open(side, "ab") as f:
        for r in rejected:
            f.write(r.text if r.text.endswith(b"\n") else r.text + b"\n")
        f.flush()
        os.fsync(f.fileno())
    for r in rejected:
        run = f"run {r.run_id}" if r.run_id else "an unreadable row"
        print(
            f"pmilab: {path}: {run} is not trusted ({r.reason}); kept in {side.name}, "
            "it will run again",
            file=sys.stderr,
            flush=True,
        )


def compact(path: Path, columns: list[str], check: Check | None = None) -> list[dict]:
    """Make `path` a clean table with these columns (creating it if needed); returns its rows.
    Rows `scan` does not trust go to the `rejected_path` sidecar; a clean file is not touched."""
    path = Path(path)
    s = scan(path, check)
    if path.exists() and s.columns and s.columns != columns:
        raise ValueError(
            f"{path} has columns {s.columns}, expected {columns}; it was written by another "
            "version of this sweep: move it away and rerun"
        )
    if path.exists() and s.clean and s.columns:
        return s.rows
    path.parent.mkdir(parents=True, exist_ok=True)
    if s.rejected:
        _set_aside(path, s.rejected)
    text = ",".join(columns + [SENTINEL]) + "\n" + "".join(format_row(columns, r) for r in s.rows)
    atomic.write_text(path, text)
    return s.rows


def append_row(path: Path, columns: list[str], row: dict) -> None:
    """Append one finished run (the file must exist with its header: call `compact` first)."""
    line = format_row(columns, row)
    with open(path, "a", newline="") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())

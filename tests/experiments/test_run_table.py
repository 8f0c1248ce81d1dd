"""A sweep's run table is trusted row by row, not by its completion mark alone.

A garbage byte, a non-numeric metric cell or a truncated row used to crash the next `verify`
(or, for the truncated row, vanish silently). Now such a row is not finished: it leaves the
table (kept byte for byte in `<sweep>.csv.rejected`), one line on stderr names the run and why,
and the run runs again. The reference for "runs again correctly" is an uninterrupted sweep in
another folder; the control is a valid table, left byte-identical with nothing printed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pmilab.experiments.framework import table as tbl
from pmilab.experiments.framework.sweep import (
    RunSpec,
    Sweep,
    load_table,
    make_id,
    missing,
    raw_rows,
    run_sweep,
)
from tests.experiments.toy_task import square

TIMING = ["seconds", "cpu_seconds"]
VICTIM = 2  # the index of the run whose row is damaged


def labelled(params: dict) -> dict:
    """The toy task plus a text metric (like t4's `kept`, "1/2/3"), a legitimate non-number."""
    out = square(params)
    out["kept"] = "/".join(str(k) for k in range(1, int(params["x"] * 2) + 2))
    return out


def toy_sweep(task=square, metrics=("y", "third")) -> Sweep:
    runs = [
        RunSpec(make_id("toy", f"x{x}", f"seed{x % 3}"), {"x": x * 0.5, "seed": x % 3})
        for x in range(5)
    ]
    return Sweep("toy", task, runs, list(metrics))


def run(sweep: Sweep, out: Path):
    return run_sweep(sweep, out, progress=False, heartbeat=0)


def values(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=TIMING).reset_index(drop=True)


@pytest.fixture
def finished(tmp_path):
    """(sweep, runs dir, table path) of a finished toy sweep."""
    sweep = toy_sweep()
    runs_dir = tmp_path / "runs"
    assert run(sweep, runs_dir).ran == 5
    return sweep, runs_dir, runs_dir / "toy.csv"


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")  # [header, row 0, ..., row 4, b""]


def _garbage_byte(line: bytes) -> bytes:
    """A 0xFF byte (never valid UTF-8) in place of the first digit of the `y` cell."""
    cells = line.split(b",")
    y = 4  # run_id, sweep, x, seed, y, third, seconds, cpu_seconds, ok
    cells[y] = b"\xff" + cells[y][1:]
    return b",".join(cells)


def _non_numeric(line: bytes) -> bytes:
    cells = line.split(b",")
    cells[4] = b"abc"
    return b",".join(cells)


def _truncated(line: bytes) -> bytes:
    return line[: len(line) // 2]


DAMAGE = {
    "garbage-byte": (_garbage_byte, "bytes that are not valid UTF-8"),
    "non-numeric": (_non_numeric, "y = 'abc' is not a number"),
    "truncated": (_truncated, "not a complete row"),
}


def _damage(path: Path, how) -> bytes:
    """Damage the VICTIM's row in place (a truncated row is moved last, as a kill leaves it);
    returns the damaged row's bytes."""
    lines = _lines(path)
    row = 1 + VICTIM
    bad = how(lines[row])
    if how is _truncated:
        lines = lines[:row] + lines[row + 1 : -1] + [bad]  # no final newline
    else:
        lines[row] = bad
    path.write_bytes(b"\n".join(lines))
    return bad


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_row_is_set_aside_and_run_again(finished, tmp_path, capsys, case):
    sweep, runs_dir, path = finished
    how, why = DAMAGE[case]
    capsys.readouterr()
    bad = _damage(path, how)
    victim = sweep.runs[VICTIM].run_id

    # readers do not crash on it, and do not count the run as finished
    assert missing(sweep, runs_dir) == [victim]
    assert [r["run_id"] for r in raw_rows(sweep, runs_dir)] == [
        r.run_id for k, r in enumerate(sweep.runs) if k != VICTIM
    ]

    stats = run(sweep, runs_dir)
    assert stats.ran_ids == [victim]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"run {victim} is not trusted" in err[0] and why in err[0], err[0]
    assert "toy.csv.rejected" in err[0] and "it will run again" in err[0]

    assert (runs_dir / "toy.csv.rejected").read_bytes() == bad + b"\n"  # kept byte for byte
    reference = tmp_path / "reference"
    run(sweep, reference)
    got, want = load_table(sweep, runs_dir), load_table(sweep, reference)
    assert got["y"].dtype == float
    pd.testing.assert_frame_equal(values(got), values(want))
    assert missing(sweep, runs_dir) == []


def test_control_a_valid_table_is_left_byte_identical(finished, capsys):
    sweep, runs_dir, path = finished
    capsys.readouterr()
    before = path.read_bytes()
    assert run(sweep, runs_dir).ran == 0
    assert path.read_bytes() == before
    assert not (runs_dir / "toy.csv.rejected").exists()
    assert capsys.readouterr().err == ""


def test_control_a_text_metric_is_not_damage(tmp_path, capsys):
    """A metric whose cells are text in every row ("1", "1/2", ...) is left alone."""
    sweep = toy_sweep(labelled, ("y", "third", "kept"))
    runs_dir = tmp_path / "runs"
    run(sweep, runs_dir)
    path = runs_dir / "toy.csv"
    before = path.read_bytes()
    capsys.readouterr()
    assert run(sweep, runs_dir).ran == 0
    assert path.read_bytes() == before and capsys.readouterr().err == ""
    assert list(load_table(sweep, runs_dir)["kept"])[:3] == ["1", "1/2", "1/2/3"]


def test_a_garbage_run_id_is_not_trusted(finished, capsys):
    sweep, runs_dir, path = finished
    lines = _lines(path)
    lines[1 + VICTIM] = b"\x00" + lines[1 + VICTIM]  # NUL is valid UTF-8 but no run id
    path.write_bytes(b"\n".join(lines))
    capsys.readouterr()
    assert run(sweep, runs_dir).ran_ids == [sweep.runs[VICTIM].run_id]
    assert "is not one this sweep writes" in capsys.readouterr().err


def test_scan_without_a_check_still_refuses_bad_bytes_and_truncation(tmp_path):
    """The table module's own rules (no sweep needed): valid UTF-8 and complete rows."""
    p = tmp_path / "t.csv"
    cols = ["run_id", "v"]
    tbl.compact(p, cols)
    for i in range(3):
        tbl.append_row(p, cols, {"run_id": f"r{i}", "v": i / 3})
    lines = _lines(p)
    lines[2] = lines[2].replace(b"r1", b"r\xfe1")
    p.write_bytes(b"\n".join(lines) + b"r3,0.5")
    s = tbl.scan(p)
    assert [r["run_id"] for r in s.rows] == ["r0", "r2"] and not s.clean
    assert [r.text for r in s.rejected] == [lines[2] + b"\n", b"r3,0.5"]
    assert s.rejected[0].run_id is None and s.rejected[1].run_id == "r3"

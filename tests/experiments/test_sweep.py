"""The sweep runner: results table round trip, resume after a kill, shards, parallel workers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from pmilab.errors import InputError
from pmilab.experiments.framework import table as tbl
from pmilab.experiments.framework.sweep import (
    RunSpec,
    Sweep,
    load_table,
    make_id,
    missing,
    parse_shard,
    run_sweep,
)
from tests.experiments.toy_task import square

ROOT = Path(__file__).resolve().parents[2]
TIMING = ["seconds", "cpu_seconds"]


def toy_sweep(n: int = 10, sleep: float = 0.0) -> Sweep:
    runs = [
        RunSpec(
            make_id("toy", f"x{x}", f"seed{x % 3}"), {"x": x * 0.5, "seed": x % 3, "sleep": sleep}
        )
        for x in range(n)
    ]
    return Sweep("toy", square, runs, ["y", "third"])


def values(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=TIMING).reset_index(drop=True)


def test_make_id_encodes_parameters():
    assert (
        make_id("t2", "latent-24-20-4-0", "kme", "M4", "seed0")
        == "t2-latent-24-20-4-0-kme-M4-seed0"
    )
    assert make_id("a b", 0.1, "x/y") == "a_b-0.1-x_y"


def test_parse_shard():
    assert parse_shard(None) == (0, 1)
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "a/b", "1", "-1/2", "0/0"):
        with pytest.raises(InputError):
            parse_shard(bad)


def test_table_roundtrip_is_exact_and_drops_truncated_lines(tmp_path):
    cols = ["run_id", "v", "s"]
    p = tmp_path / "t.csv"
    tbl.compact(p, cols)
    vals = [0.1 + 0.2, 1 / 3, 1e-300, float("nan")]
    for i, v in enumerate(vals):
        tbl.append_row(p, cols, {"run_id": f"r{i}", "v": v, "s": "a,b"})
    with open(p, "a") as f:  # a run killed mid-write
        f.write('r9,0.12345,"a')
    _, rows, clean = tbl.read_rows(p)
    assert not clean and [r["run_id"] for r in rows] == ["r0", "r1", "r2", "r3"]
    assert [float(r["v"]) if r["v"] else None for r in rows[:3]] == vals[:3]  # repr round-trips
    tbl.compact(p, cols)
    assert p.read_text().endswith("\n") and tbl.read_rows(p)[2]
    with pytest.raises(KeyError):
        tbl.append_row(p, cols, {"run_id": "x", "unknown": 1})


def test_resume_after_partial_run_completes_only_missing(tmp_path):
    sw = toy_sweep(10)
    full = tmp_path / "full"
    st = run_sweep(sw, full, progress=False)
    assert st.ran == 10 and st.done_before == 0
    part = tmp_path / "part"
    first = Sweep(sw.name, sw.task, sw.runs[:4], sw.metrics)  # "killed" after 4 runs
    first_cols = sw.columns()
    assert first.columns() == first_cols
    run_sweep(first, part, progress=False)
    st = run_sweep(sw, part, progress=False)
    assert st.done_before == 4 and st.ran == 6
    assert set(st.ran_ids) == {r.run_id for r in sw.runs[4:]}
    pd.testing.assert_frame_equal(values(load_table(sw, part)), values(load_table(sw, full)))
    assert run_sweep(sw, part, progress=False).ran == 0  # never redone


def test_killed_subprocess_sweep_resumes_to_identical_table(tmp_path):
    """SIGKILL a sweep mid-run (no cleanup at all), rerun it: only missing runs execute and the
    table equals an uninterrupted run's."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.experiments.test_sweep import toy_sweep
        from pmilab.experiments.framework.sweep import run_sweep
        run_sweep(toy_sweep(12, sleep=0.25), sys.argv[1], progress=False)
    """)
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(out)], cwd=ROOT, start_new_session=True
    )
    csv = out / "toy.csv"
    deadline = time.time() + 60
    while time.time() < deadline:
        if csv.exists() and len(tbl.read_rows(csv)[1]) >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    sw = toy_sweep(12, sleep=0.25)  # sleep is a run parameter: the same sweep as the killed one
    done = 12 - len(missing(sw, out))
    assert 3 <= done < 12, "the kill must land mid-sweep"
    st = run_sweep(Sweep(sw.name, sw.task, sw.runs, sw.metrics), out, progress=False)
    assert st.done_before == done and st.ran == 12 - done
    ref = tmp_path / "ref"
    run_sweep(sw, ref, progress=False)
    pd.testing.assert_frame_equal(values(load_table(sw, out)), values(load_table(sw, ref)))


def test_shards_and_parallel_workers_give_the_uninterrupted_table(tmp_path):
    sw = toy_sweep(9)
    ref = tmp_path / "ref"
    run_sweep(sw, ref, progress=False)
    sharded = tmp_path / "sharded"
    s0 = run_sweep(sw, sharded, shard=(0, 2), progress=False)
    assert s0.ran == 5 and s0.left_to_other_shards == 4 and len(missing(sw, sharded)) == 4
    s1 = run_sweep(sw, sharded, jobs=2, shard=(1, 2), progress=False)  # 2 worker processes
    assert s1.ran == 4 and not missing(sw, sharded)
    assert sorted(p.name for p in sharded.iterdir()) == ["toy.shard0of2.csv", "toy.shard1of2.csv"]
    pd.testing.assert_frame_equal(values(load_table(sw, sharded)), values(load_table(sw, ref)))
    assert run_sweep(sw, sharded, progress=False).ran == 0


def test_run_id_changes_with_any_parameter():
    a = RunSpec.of({"lr": 0.01, "steps": 10}, "t1", "kme", "seed0")
    b = RunSpec.of({"lr": 0.03, "steps": 10}, "t1", "kme", "seed0")
    assert a.run_id.startswith("t1-kme-seed0-") and a.run_id != b.run_id
    assert RunSpec.of({"steps": 10, "lr": 0.01}, "t1", "kme", "seed0").run_id == a.run_id


HEARTBEAT = re.compile(r"^toy: (\d+)/(\d+) runs done, (\d+) s elapsed$")


def test_heartbeat_without_bars_reports_even_inside_one_long_run(tmp_path, capsys):
    """Bars off: a line at the start and then every `heartbeat` seconds, also while a single
    run is still in progress (the first run here sleeps 20 intervals)."""
    sw = toy_sweep(3, sleep=1.0)
    t0 = time.perf_counter()
    run_sweep(sw, tmp_path / "hb", progress=False, heartbeat=0.05)
    elapsed = time.perf_counter() - t0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("toy:")]
    parsed = [HEARTBEAT.match(ln) for ln in lines]
    assert all(parsed), lines
    done = [int(m[1]) for m in parsed]
    assert {int(m[2]) for m in parsed} == {3}
    assert done[0] == 0 and done == sorted(done) and set(done) <= {0, 1, 2, 3}
    # while the first run sleeps 1 s (20 intervals), the count stays at 0 and lines keep coming
    assert done.count(0) >= 4, done
    # at most one line per interval (plus the start line): no flood
    assert len(lines) <= elapsed / 0.05 + 2
    assert not threading_heartbeats_alive()


def threading_heartbeats_alive() -> bool:
    import threading

    return any(t.name.startswith("heartbeat ") for t in threading.enumerate())


def test_no_heartbeat_with_bars_or_when_nothing_is_left(tmp_path, capsys):
    sw = toy_sweep(2, sleep=0.2)
    run_sweep(sw, tmp_path / "a", progress=False, heartbeat=0)
    run_sweep(sw, tmp_path / "b", progress=True, heartbeat=0.01)
    run_sweep(sw, tmp_path / "b", progress=False, heartbeat=0.01)  # every run already done
    assert "runs done" not in capsys.readouterr().err

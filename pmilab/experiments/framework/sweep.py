"""Sweeps: lists of runs executed in local processes, resumable, shardable.

A `Sweep` holds a task function (`task(params) -> metrics dict`, a module-level function so
worker processes can import it) and its runs. Each run has a bmi-style id that encodes its parameters (`t2-latent-24-20-k4-kme-M4-
seed0`). `run_sweep` appends each finished run as one row to `runs_dir/<sweep>.csv` and never
redoes a run whose id is already there, so a killed sweep rerun completes only the missing runs.
`--shard i/n` runs the runs whose index is i mod n and writes `<sweep>.shard<i>of<n>.csv`;
`load_table` merges every file of a sweep. Runs are deterministic: each executes with one torch
thread and explicit seeds, whatever `jobs` is, so the merged table does not depend on how the
sweep was split or interrupted.
With progress bars off (stderr not a terminal: `pmilab verify | tee log`), a heartbeat prints
one line (sweep, runs done/total, elapsed) at the start and every `HEARTBEAT_S` seconds, even
while one long run is in progress.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import pandas as pd

from pmilab.errors import InputError
from pmilab.experiments.framework import table as tbl

ID_SAFE = re.compile(r"[^A-Za-z0-9.+_-]+")
# With bars off, a progress line this often (seconds). 10, not 15: the promise is a line at
# least every 15 s, and on a loaded machine a timer thread wakes late (measured: up to 1 s).
HEARTBEAT_S = 10.0


def make_id(*parts) -> str:
    """A run id from its parameters: parts joined by '-', each made filename-safe."""
    out = []
    for p in parts:
        s = repr(p) if isinstance(p, float) else str(p)
        out.append(ID_SAFE.sub("_", s).strip("_"))
    return "-".join(out)


def params_hash(params: dict) -> str:
    """8 hex digits of a hash of every parameter: a run whose parameters change gets a new id
    even when the readable part of its id does not name the changed parameter."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def dist_id(spec: str) -> str:
    """'latent:nx=24,ny=20,k=4,seed=0' -> 'latent-24-20-4-0' (bmi style: values in the id)."""
    name, _, rest = spec.partition(":")
    vals = [kv.split("=", 1)[1] for kv in rest.split(",") if "=" in kv]
    return make_id(name, *vals)


def seed_list(n: int) -> list[int]:
    return list(range(int(n)))


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    params: dict

    @classmethod
    def of(cls, params: dict, *parts) -> RunSpec:
        """A run whose id is `make_id(*parts)` (the parameters a reader needs) + a hash of all."""
        return cls(make_id(*parts, params_hash(params)), params)


@dataclass
class Sweep:
    """A named list of runs of one task; `metrics` are the columns the task returns."""

    name: str
    task: Callable[[dict], dict]
    runs: list[RunSpec]
    metrics: list[str]
    claim: str = ""

    def columns(self) -> list[str]:
        keys: list[str] = []
        for r in self.runs:
            keys += [k for k in r.params if k not in keys]
        metrics = [m for m in self.metrics if m not in keys]  # a task may echo a parameter
        return ["run_id", "sweep", *keys, *metrics, "seconds", "cpu_seconds"]


@dataclass
class SweepStats:
    name: str
    total: int
    done_before: int = 0
    ran: int = 0
    left_to_other_shards: int = 0
    ran_ids: list[str] = field(default_factory=list)


def parse_shard(text: str | None) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    if not text:
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or int(m[2]) < 1 or int(m[1]) >= int(m[2]):
        raise InputError(f"--shard must be i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return int(m[1]), int(m[2])


def table_path(runs_dir: Path, name: str, shard: tuple[int, int]) -> Path:
    i, n = shard
    return Path(runs_dir) / (f"{name}.csv" if n == 1 else f"{name}.shard{i}of{n}.csv")


def sweep_files(runs_dir: Path, name: str) -> list[Path]:
    d = Path(runs_dir)
    return sorted([d / f"{name}.csv", *d.glob(f"{name}.shard*of*.csv")], key=str)


def finished_ids(runs_dir: Path, name: str) -> set[str]:
    done: set[str] = set()
    for p in sweep_files(runs_dir, name):
        done |= {r["run_id"] for r in tbl.read_rows(p)[1]}
    return done


def execute(task: Callable[[dict], dict], params: dict) -> tuple[dict, float, float]:
    """Run one task with one torch thread (so results do not depend on `jobs`); returns the
    metrics, the wall-clock and the CPU seconds (CPU time does not grow on a loaded machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        metrics = task(dict(params))
    finally:
        torch.set_num_threads(threads)
    return metrics, time.perf_counter() - t0, time.process_time() - c0


class Heartbeat:
    """A daemon thread printing `name: done/total runs done, N s elapsed` to stderr when started
    and then every `interval` seconds, until stopped."""

    def __init__(self, name: str, total: int, done: int, interval: float) -> None:
        self.name, self.total, self.done, self.interval = name, total, done, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat {name}")
        self._t0 = time.perf_counter()

    def line(self) -> str:
        elapsed = time.perf_counter() - self._t0
        return f"{self.name}: {self.done}/{self.total} runs done, {elapsed:.0f} s elapsed"

    def _beat(self) -> None:
        while True:
            print(self.line(), file=sys.stderr, flush=True)
            if self._stop.wait(self.interval):
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_sweep(
    sweep: Sweep,
    runs_dir: Path,
    jobs: int = 1,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    heartbeat: float | None = None,
) -> SweepStats:
    """Execute the missing runs of this shard, appending each finished run as one row.

    progress:  a tqdm bar; without it, a `Heartbeat` line every `heartbeat` seconds
               (None: HEARTBEAT_S; 0: no heartbeat).
    """
    from tqdm.auto import tqdm

    ids = [r.run_id for r in sweep.runs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"sweep {sweep.name} has duplicate run ids")
    columns = sweep.columns()
    path = table_path(runs_dir, sweep.name, shard)
    tbl.compact(path, columns)
    done = finished_ids(runs_dir, sweep.name)
    i, n = shard
    mine = [r for k, r in enumerate(sweep.runs) if k % n == i]
    todo = [r for r in mine if r.run_id not in done]
    stats = SweepStats(sweep.name, len(sweep.runs), done_before=len(mine) - len(todo))
    stats.left_to_other_shards = sum(
        1 for k, r in enumerate(sweep.runs) if k % n != i and r.run_id not in done
    )
    bar = tqdm(
        total=len(mine),
        initial=stats.done_before,
        desc=sweep.name,
        disable=not progress,
        unit="run",
        leave=False,
    )

    interval = HEARTBEAT_S if heartbeat is None else heartbeat
    beat = None
    if not progress and interval > 0 and todo:
        beat = Heartbeat(sweep.name, len(mine), stats.done_before, interval)
        beat.start()

    def record(spec: RunSpec, metrics: dict, seconds: float, cpu: float) -> None:
        row = {"run_id": spec.run_id, "sweep": sweep.name, **spec.params, **metrics}
        row["seconds"], row["cpu_seconds"] = round(seconds, 3), round(cpu, 3)
        tbl.append_row(path, columns, row)
        stats.ran += 1
        stats.ran_ids.append(spec.run_id)
        bar.update(1)
        if beat is not None:
            beat.done += 1

    try:
        if jobs <= 1 or len(todo) <= 1:
            for spec in todo:
                record(spec, *execute(sweep.task, spec.params))
        else:
            _run_pool(sweep.task, todo, jobs, record)
    finally:
        bar.close()
        if beat is not None:
            beat.stop()
    return stats


_POOLS: dict[int, ProcessPoolExecutor] = {}


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM when the sweep process dies (even by SIGKILL), so a killed
    sweep leaves no orphan workers behind. Elsewhere a no-op."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def worker_pool(jobs: int) -> ProcessPoolExecutor:
    """One pool of `jobs` worker processes, reused by every sweep of this process (starting a
    worker imports torch: seconds each) and shut down at exit."""
    if jobs not in _POOLS:
        # spawn, not fork: forking a process whose torch already started threads can deadlock.
        _POOLS[jobs] = ProcessPoolExecutor(
            max_workers=jobs, mp_context=get_context("spawn"), initializer=_die_with_parent
        )
    return _POOLS[jobs]


def shutdown_pools() -> None:
    for pool in _POOLS.values():
        pool.shutdown(wait=True, cancel_futures=True)
    _POOLS.clear()


atexit.register(shutdown_pools)


def _run_pool(task: Callable[[dict], dict], todo: list[RunSpec], jobs: int, record) -> None:
    pool = worker_pool(jobs)
    pending = {pool.submit(execute, task, s.params): s for s in todo}
    try:
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                spec = pending.pop(fut)
                record(spec, *fut.result())
    except BaseException:
        for fut in pending:
            fut.cancel()
        raise


def raw_rows(sweep: Sweep, runs_dir: Path) -> list[dict[str, str]]:
    """Every finished run of the sweep (all shards), in the sweep's run order, as the exact
    text cells of its run table (floats as written: repr, which round-trips)."""
    columns = sweep.columns()
    found: dict[str, dict] = {}
    for p in sweep_files(runs_dir, sweep.name):
        cols, rows, _ = tbl.read_rows(p)
        if cols and cols != columns:
            raise ValueError(f"{p} has columns {cols}, expected {columns}; move it away and rerun")
        for r in rows:
            found.setdefault(r["run_id"], r)
    return [found[r.run_id] for r in sweep.runs if r.run_id in found]


def typed_table(columns: list[str], rows: list[dict[str, str]]) -> pd.DataFrame:
    """Text rows -> a DataFrame typed by pandas exactly as a run table file would be."""
    text = "".join(tbl.format_row(columns, r) for r in rows)
    header = ",".join(columns + [tbl.SENTINEL]) + "\n"
    df = pd.read_csv(io.StringIO(header + text))
    return df.drop(columns=[tbl.SENTINEL])


def load_table(sweep: Sweep, runs_dir: Path) -> pd.DataFrame:
    """Every finished run of the sweep (all shards), in the sweep's run order, typed by pandas."""
    return typed_table(sweep.columns(), raw_rows(sweep, runs_dir))


def missing(sweep: Sweep, runs_dir: Path) -> list[str]:
    done = finished_ids(runs_dir, sweep.name)
    return [r.run_id for r in sweep.runs if r.run_id not in done]

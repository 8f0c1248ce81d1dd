"""Sweeps: lists of runs executed as cells on an executor, resumable, shardable.

A `Sweep` holds a task function (`task(params) -> metrics dict`, a module-level function so
worker processes can import it) and its runs. Each run has a bmi-style id that encodes its
parameters (`t2-latent-24-20-k4-kme-M4-seed0`). `run_sweep` appends each finished run as one
row to `runs_dir/<sweep>.csv` and never redoes a run whose id is already there, so a killed
sweep rerun completes only the missing runs.
`--shard i/n` runs the runs whose index is i mod n and writes `<sweep>.shard<i>of<n>.csv`;
`load_table` merges every file of a sweep. Runs are deterministic: each executes with one torch
thread and explicit seeds, whatever `jobs` is, so the merged table does not depend on how the
sweep was split or interrupted.

Cells. Runs of a sweep whose parameters are equal except "seed" form a cell. A sweep with a
`cell_task` (`cell_task(list of params) -> list of metrics`, one per seed, same order) trains
the missing seeds of a cell as one unit: one worker, one torch thread, one batched computation
(`pmilab.fit(seeds=[...])`), giving each seed the metrics its `task` would give. Sweeps without
one run every run alone. Only the missing seeds of a partly finished cell run, and cells form
within a shard (the shard of a run is still its index mod n, so old shard files stay valid).
Each seed is recorded as its own row, as before; its `seconds` and `cpu_seconds` are the
cell's wall-clock and CPU time divided by the number of seeds the cell ran.

Scheduling. `run_sweeps` submits the missing cells of several sweeps to one executor at once
(`framework.executors`: local worker processes or a Ray cluster; with one local worker, this
process), longest first (`Cell.cost`: a per-run estimate summed over the cell's seeds, see
`run_cost`), so that the slowest cells do not start last, and reports each sweep as soon as its
last cell is recorded (`pmilab verify` evaluates a claim then).
With progress bars off (stderr not a terminal: `pmilab verify | tee log`), each sweep's
heartbeat prints one line (sweep, runs done/total, elapsed) at the start and every
`HEARTBEAT_S` seconds, even while one long run is in progress.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pmilab.errors import InputError
from pmilab.experiments.framework import table as tbl
from pmilab.experiments.framework.executors import open_executor

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


def seed_list(n) -> list[int]:
    """The seeds of a config's `seeds` field: a count n (seeds 0 .. n-1), or the seeds themselves
    (a tuple, e.g. the pilot seeds of a power analysis, which the verdicts never use)."""
    if isinstance(n, (tuple, list)):
        return [int(s) for s in n]
    return list(range(int(n)))


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    params: dict

    @classmethod
    def of(cls, params: dict, *parts) -> RunSpec:
        """A run whose id is `make_id(*parts)` (the parameters a reader needs) + a hash of all."""
        return cls(make_id(*parts, params_hash(params)), params)


# The per-run cost estimate that orders cells (longest first). Only the order matters, so
# round factors suffice; measured on the quick preset (reports/quick/results.csv, one CPU
# thread): ~0.5 ms per step for a linear or tabular head on the population loss, ~0.9 ms for
# a point-set head (KME, WPSE), ~5 ms for a KME head on an MLP encoder, ~10 ms on the
# convolutional pixel encoder (T7). A run without "steps" (no training loop) costs 1 step.
POINT_SET_FACTOR = 2.0
MLP_FACTOR = 5.0
CONV_FACTOR = 10.0


def run_cost(params: dict) -> float:
    """Estimated cost of one run in linear-head steps: steps x head factor x encoder factor."""
    steps = float(params.get("steps") or 1)
    head = POINT_SET_FACTOR if _on_point_sets(params) else 1.0
    if params.get("width"):
        enc = CONV_FACTOR
    elif params.get("hidden"):
        enc = MLP_FACTOR
    else:
        enc = 1.0
    return steps * head * enc


def _on_point_sets(params: dict) -> bool:
    """Whether the run's head takes point sets, as it declares (`registry.head_inputs`)."""
    sim = params.get("similarity")
    if not isinstance(sim, str) or not sim:
        return False
    dim, points = int(params.get("dim") or 1), int(params.get("points") or 1)
    return _input_kind(sim, dim, points) == "points"


@functools.cache
def _input_kind(sim: str, dim: int, points: int) -> str:
    """The kind of input the head `sim` declares; "" where `sim` is not a head spec (a task's
    own label, e.g. T3's random heads) or the head cannot say without a run's settings."""
    from pmilab import registry

    try:
        return registry.head_inputs(sim, {"dim": dim, "points": points}).kind
    except InputError:
        return ""


@dataclass
class Sweep:
    """A named list of runs of one task; `metrics` are the columns the task returns.

    cell_task: optional; trains the seeds of a cell (runs equal but for "seed") as one batched
               computation and returns, per seed, exactly the metrics `task` returns. A
               module-level function, so worker processes can import it.
    cost:      optional per-run cost estimate (params -> float) for the longest-first
               schedule; default `run_cost`.
    """

    name: str
    task: Callable[[dict], dict]
    runs: list[RunSpec]
    metrics: list[str]
    claim: str = ""
    cell_task: Callable[[list[dict]], list[dict]] | None = None
    cost: Callable[[dict], float] | None = None

    def columns(self) -> list[str]:
        keys: list[str] = []
        for r in self.runs:
            keys += [k for k in r.params if k not in keys]
        metrics = [m for m in self.metrics if m not in keys]  # a task may echo a parameter
        return ["run_id", "sweep", *keys, *metrics, "seconds", "cpu_seconds"]


def cell_key(params: dict) -> str:
    """What the runs of one cell share: every parameter but "seed" (also the check a batched
    task applies to the parameters it is given)."""
    rest = {k: v for k, v in params.items() if k != "seed"}
    return json.dumps(rest, sort_keys=True, default=str)


def run_each(task: Callable[[dict], dict], params: list[dict]) -> list[dict]:
    """The cell task of a sweep without one: its runs one after another."""
    return [task(dict(p)) for p in params]


@dataclass
class Cell:
    """Missing runs of one sweep that differ only in "seed": one unit of work (one process,
    one torch thread). A sweep without a `cell_task` has one run per cell."""

    sweep: Sweep
    specs: list[RunSpec]

    @property
    def params(self) -> list[dict]:
        return [dict(s.params) for s in self.specs]

    def work(self) -> Callable[[list[dict]], list[dict]]:
        """The picklable function a worker calls with `params`."""
        return self.sweep.cell_task or functools.partial(run_each, self.sweep.task)

    def cost(self) -> float:
        per_run = self.sweep.cost or run_cost
        return sum(per_run(s.params) for s in self.specs)


def cells_of(sweep: Sweep, specs: list[RunSpec]) -> list[Cell]:
    """The cells of these runs, in order of first appearance: groups of runs with one
    `cell_key` when the sweep has a `cell_task`, single runs otherwise."""
    if sweep.cell_task is None:
        return [Cell(sweep, [s]) for s in specs]
    groups: dict[str, list[RunSpec]] = {}
    for s in specs:
        groups.setdefault(cell_key(s.params), []).append(s)
    return [Cell(sweep, g) for g in groups.values()]


def longest_first(cells: list[Cell]) -> list[Cell]:
    """Cells by decreasing estimated cost (ties keep their order): the schedule's order, so
    that the slowest cells start first and the run ends with short ones."""
    return sorted(cells, key=lambda c: -c.cost())


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


def finished_ids(runs_dir: Path, name: str, check: tbl.Check | None = None) -> set[str]:
    """Run ids with a trusted row in any file of the sweep (`run_table_check`)."""
    done: set[str] = set()
    for p in sweep_files(runs_dir, name):
        done |= {r["run_id"] for r in tbl.read_rows(p, check)[1]}
    return done


# A number as `table.format_value` writes one (an int, the repr of a float, inf, nan; a numpy
# bool as True/False) and pandas reads one back. An empty cell (None, NaN) fits any column.
NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|nan)|True|False")
ID_CHARS = re.compile(r"[A-Za-z0-9.+_-]+")  # what `make_id` leaves in a run id
TIMING_COLUMNS = ("seconds", "cpu_seconds")


def _is_number(cell: str) -> bool:
    return NUMBER.fullmatch(cell) is not None


def _numeric_params(sweep: Sweep) -> set[str]:
    """Parameter columns every run of the sweep fills with a number (as written)."""
    cells: dict[str, list[str]] = {}
    for r in sweep.runs:
        for k, v in r.params.items():
            cells.setdefault(k, []).append(tbl.format_value(v))
    return {k for k, vs in cells.items() if all(_is_number(v) or v == "" for v in vs)}


def _numeric_metrics(sweep: Sweep, runs_dir: Path) -> set[str]:
    """Metric columns most of whose filled cells, over every file of the sweep, are numbers.

    A task's metrics have no declared types and some are text (t4's `kept`, "1/2/3"), so the
    rows decide: a column of numbers is numeric, and a text cell in it is damage. A column whose
    every filled cell is text, or whose cells are split evenly, is left unchecked.
    """
    params = {k for r in sweep.runs for k in r.params}
    metrics = [m for m in sweep.metrics if m not in params]
    rows = [r for p in sweep_files(runs_dir, sweep.name) for r in tbl.scan(p).rows]
    out = set()
    for m in metrics:
        filled = [r[m] for r in rows if r.get(m)]
        if 2 * sum(_is_number(c) for c in filled) > len(filled):
            out.add(m)
    return out


def run_table_check(sweep: Sweep, runs_dir: Path) -> tbl.Check:
    """The check `table.scan` applies to the rows of this sweep's run tables: a row is trusted
    only if its run id is one the sweep knows or `make_id` could write, its `sweep` cell names
    the sweep, and its timings and numeric parameters and metrics parse as numbers."""
    known = {r.run_id for r in sweep.runs}
    numeric = [*TIMING_COLUMNS, *sorted(_numeric_params(sweep) | _numeric_metrics(sweep, runs_dir))]

    def problem(row: dict) -> str | None:
        run_id = row.get("run_id", "")
        if run_id not in known and not ID_CHARS.fullmatch(run_id):
            return f"run id {run_id[:60]!r} is not one this sweep writes"
        if row.get("sweep", sweep.name) != sweep.name:
            return f"its sweep cell {row['sweep'][:60]!r} is not {sweep.name!r}"
        for c in numeric:
            cell = row.get(c, "")
            if cell and not _is_number(cell):
                return f"{c} = {cell[:60]!r} is not a number"
            if c in TIMING_COLUMNS and c in row and not cell:
                return f"{c} is empty"
        return None

    return lambda rows: [problem(r) for r in rows]


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """One torch thread inside (so results do not depend on `jobs`), restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def execute(task: Callable[[dict], dict], params: dict) -> tuple[dict, float, float]:
    """Run one task with one torch thread; returns the metrics, the wall-clock and the CPU
    seconds (CPU time does not grow on a loaded machine)."""
    with _one_torch_thread():
        t0, c0 = time.perf_counter(), time.process_time()
        metrics = task(dict(params))
        return metrics, time.perf_counter() - t0, time.process_time() - c0


def execute_cell(
    work: Callable[[list[dict]], list[dict]], params: list[dict]
) -> tuple[list[dict], float, float]:
    """Run one cell with one torch thread; returns one metrics dict per run (in order), and
    the cell's wall-clock and CPU seconds."""
    with _one_torch_thread():
        t0, c0 = time.perf_counter(), time.process_time()
        metrics = work([dict(p) for p in params])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if len(metrics) != len(params):
        raise ValueError(f"a cell task returned {len(metrics)} results for {len(params)} runs")
    return metrics, wall, cpu


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


class SweepRun:
    """One sweep being run in this shard: its missing cells, the table their rows go to, its
    counts and (bars off) its heartbeat. `record` is the one place a finished run is written."""

    def __init__(self, sweep: Sweep, runs_dir: Path, shard: tuple[int, int] = (0, 1)) -> None:
        ids = [r.run_id for r in sweep.runs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"sweep {sweep.name} has duplicate run ids")
        self.sweep, self.columns = sweep, sweep.columns()
        self.path = table_path(runs_dir, sweep.name, shard)
        check = run_table_check(sweep, runs_dir)
        tbl.compact(self.path, self.columns, check)
        done = finished_ids(runs_dir, sweep.name, check)
        i, n = shard
        mine = [r for k, r in enumerate(sweep.runs) if k % n == i]
        todo = [r for r in mine if r.run_id not in done]
        self.size = len(mine)
        self.stats = SweepStats(sweep.name, len(sweep.runs), done_before=len(mine) - len(todo))
        self.stats.left_to_other_shards = sum(
            1 for k, r in enumerate(sweep.runs) if k % n != i and r.run_id not in done
        )
        self.cells = cells_of(sweep, todo)
        self.left = len(self.cells)
        self.on_run: Callable[[], None] = lambda: None

    @property
    def complete(self) -> bool:
        return self.left == 0

    def record(self, cell: Cell, metrics: list[dict], seconds: float, cpu: float) -> None:
        """One row per run of the cell; each gets the cell's times divided by its size."""
        share = len(cell.specs)
        for spec, m in zip(cell.specs, metrics, strict=True):
            row = {"run_id": spec.run_id, "sweep": self.sweep.name, **spec.params, **m}
            row["seconds"], row["cpu_seconds"] = round(seconds / share, 3), round(cpu / share, 3)
            tbl.append_row(self.path, self.columns, row)
            self.stats.ran += 1
            self.stats.ran_ids.append(spec.run_id)
            self.on_run()
        self.left -= 1


def run_cells(
    cells: list[Cell],
    executor: Executor | None,
    done: Callable[[Cell, list[dict], float, float], None],
) -> None:
    """Execute cells longest first, calling `done(cell, metrics, seconds, cpu)` in this process
    as each finishes. executor None: one after another here; else all are submitted at once
    in that order (a process pool starts them first in, first out)."""
    order = longest_first(cells)
    if executor is None:
        for c in order:
            done(c, *execute_cell(c.work(), c.params))
        return
    pending = {executor.submit(execute_cell, c.work(), c.params): c for c in order}
    try:
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in [f for f in pending if f in finished]:  # in schedule order
                cell = pending.pop(fut)
                done(cell, *fut.result())
    except BaseException:
        for fut in pending:
            fut.cancel()
        raise


def executor_for(
    n_cells: int, jobs: int, kind: str = "local", address: str | None = None
) -> Executor | None:
    """Where cells run: in this process (None) when a local executor would get one worker or
    one cell (starting a worker imports torch: seconds); otherwise `open_executor`."""
    if kind == "local" and (jobs <= 1 or n_cells <= 1):
        return None
    return open_executor(kind, jobs, address)


def run_sweeps(
    sweeps: list[Sweep],
    runs_dir: Path,
    jobs: int = 1,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    heartbeat: float | None = None,
    on_complete: Callable[[SweepStats], None] | None = None,
    executor: str = "local",
    address: str | None = None,
    desc: str | None = None,
) -> list[SweepStats]:
    """Execute the missing cells of these sweeps (distinct names) of this shard as one
    longest-first schedule, appending each finished run as one row.

    on_complete: called in this process with a sweep's stats as soon as it has no missing
               cell left in this shard (at the start for sweeps that have none).
    progress:  one tqdm bar counting runs (`desc`: default the sweeps' names); without it,
               one `Heartbeat` line for the whole schedule (named `desc`, or the sweep's name
               when there is one) every `heartbeat` seconds (None: HEARTBEAT_S; 0: none).
    executor, address: see `executor_for`.
    """
    from tqdm.auto import tqdm

    names = [sw.name for sw in sweeps]
    if len(set(names)) != len(names):
        raise ValueError(f"sweeps listed twice: {names}")
    open_ = [SweepRun(sw, runs_dir, shard) for sw in sweeps]
    by_name = {sr.sweep.name: sr for sr in open_}
    bar = tqdm(
        total=sum(sr.size for sr in open_),
        initial=sum(sr.stats.done_before for sr in open_),
        desc=desc or ",".join(names),
        disable=not progress,
        unit="run",
        leave=False,
    )
    notify = on_complete or (lambda st: None)

    def done(cell: Cell, metrics: list[dict], seconds: float, cpu: float) -> None:
        sr = by_name[cell.sweep.name]
        sr.record(cell, metrics, seconds, cpu)
        if sr.complete:
            notify(sr.stats)

    interval = HEARTBEAT_S if heartbeat is None else heartbeat
    cells = [c for sr in open_ for c in sr.cells]
    beat = None
    if not progress and interval > 0 and cells:
        name = desc or (names[0] if len(names) == 1 else f"{len(names)} sweeps")
        beat = Heartbeat(name, bar.total, bar.n, interval)

    def one_run() -> None:
        bar.update(1)
        if beat is not None:
            beat.done += 1

    try:
        for sr in open_:
            sr.on_run = one_run
        if beat is not None:
            beat.start()
        for sr in open_:
            if sr.complete:
                notify(sr.stats)
        run_cells(cells, executor_for(len(cells), jobs, executor, address), done)
    finally:
        bar.close()
        if beat is not None:
            beat.stop()
    return [sr.stats for sr in open_]


def run_sweep(
    sweep: Sweep,
    runs_dir: Path,
    jobs: int = 1,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    heartbeat: float | None = None,
) -> SweepStats:
    """Execute the missing cells of one sweep in this shard (`run_sweeps` of one sweep)."""
    return run_sweeps([sweep], runs_dir, jobs, shard, progress, heartbeat)[0]


def raw_rows(sweep: Sweep, runs_dir: Path) -> list[dict[str, str]]:
    """Every finished run of the sweep (all shards), in the sweep's run order, as the exact
    text cells of its run table (floats as written: repr, which round-trips). Rows the
    sweep's `run_table_check` does not trust are left out: those runs are not finished."""
    columns = sweep.columns()
    check = run_table_check(sweep, runs_dir)
    found: dict[str, dict] = {}
    for p in sweep_files(runs_dir, sweep.name):
        cols, rows, _ = tbl.read_rows(p, check)
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
    done = finished_ids(runs_dir, sweep.name, run_table_check(sweep, runs_dir))
    return [r.run_id for r in sweep.runs if r.run_id not in done]

"""`pmilab verify` exits as soon as its work ends.

Cause of the old delay: the local pool's workers were left to exit by themselves at interpreter
exit, and concurrent.futures waits for that; each worker's exit tears down its torch import
(measured 2-4 s per worker on a busy 2-core machine, more under load). `shutdown_pools` now
terminates them once the sweeps are done. Measured on `verify --preset smoke --claims T1 --jobs
2` (2 cores, load average ~3.8), old and new alternated: 4.7 s and 5.7 s from the last output
line to the exit before, 0.02 s and 0.03 s after.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pmilab.experiments.framework import executors

ROOT = Path(__file__).resolve().parents[2]
SLOW_EXIT_S = 5.0  # a worker that needs this long to exit (stands in for a torch teardown)
_slowed: list[int] = []  # in a worker: its pid once its exit is slowed


def slow_to_exit(_) -> int:
    """Runs in a worker: make that worker's own exit take SLOW_EXIT_S (one atexit hook)."""
    if not _slowed:
        atexit.register(time.sleep, SLOW_EXIT_S)
        _slowed.append(os.getpid())
    return os.getpid()


def _pool_with_slow_workers(jobs: int = 2):
    pool = executors.worker_pool(jobs)
    pids = {f.result() for f in [pool.submit(slow_to_exit, i) for i in range(2 * jobs)]}
    return pool, pids


def test_shutdown_pools_does_not_wait_for_the_workers_own_exit():
    pool, pids = _pool_with_slow_workers()
    t0 = time.perf_counter()
    executors.shutdown_pools()
    seconds = time.perf_counter() - t0
    assert seconds < SLOW_EXIT_S / 2, seconds
    assert not executors._POOLS
    for pid in pids:  # gone, not orphaned
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_control_a_graceful_shutdown_waits_for_the_slow_exit():
    """Control: the old shutdown (wait for the workers to exit) takes the workers' SLOW_EXIT_S,
    so the test above would fail with it."""
    pool, _ = _pool_with_slow_workers()
    t0 = time.perf_counter()
    pool.shutdown(wait=True, cancel_futures=True)
    executors._POOLS.clear()
    assert SLOW_EXIT_S <= time.perf_counter() - t0 < 4 * SLOW_EXIT_S


@pytest.mark.slow
def test_verify_exits_within_seconds_of_its_last_line(tmp_path):
    """The real command, 2 worker processes; time from its last output line to its exit."""
    cmd = [sys.executable, "-m", "pmilab", "verify", "--preset", "smoke", "--claims", "T1"]
    cmd += ["--jobs", "2", "--no-progress", "--allow-fail", "--out", str(tmp_path / "v")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # each line leaves when printed
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines, last = [], time.perf_counter()
    for line in proc.stdout:
        lines.append(line)
        last = time.perf_counter()
    rc = proc.wait(timeout=600)
    gap = time.perf_counter() - last
    assert rc == 0, "".join(lines)
    assert "report:" in "".join(lines)
    assert gap < 15, f"exited {gap:.1f} s after its last line"
    # terminated workers leave no named semaphore behind (each tqdm, even a disabled one, used
    # to create one in every worker: "resource_tracker: ... 2 leaked semaphore objects")
    assert "leaked" not in "".join(lines), "".join(lines[-5:])


def test_a_worker_creates_no_named_semaphore_for_tqdm():
    """Control for the line above, in-process: the worker initializer swaps tqdm's lock for a
    thread lock; without it, tqdm's default lock holds a multiprocessing RLock."""
    import threading

    from tqdm.std import TqdmDefaultWriteLock, tqdm

    old = tqdm.__dict__.get("_lock")
    try:
        tqdm.set_lock(TqdmDefaultWriteLock())
        assert any(
            type(lk).__module__.startswith("multiprocessing") for lk in tqdm.get_lock().locks
        )
        executors._die_with_parent()
        assert isinstance(tqdm.get_lock(), type(threading.RLock()))
    finally:
        if old is None:
            del tqdm._lock
        else:
            tqdm.set_lock(old)

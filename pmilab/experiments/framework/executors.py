"""Where a sweep's runs execute: local worker processes, or an existing Ray cluster.

The sweep runner only needs a `concurrent.futures.Executor`: it submits module-level functions
(`sweep.execute(task, params)`, or a function of a list of params), waits on the futures with
`concurrent.futures.wait` and cancels them on interrupt. `open_executor` hides which engine
answers, so the runner is the same code for one machine and for a cluster.

- "local": a spawn-context `ProcessPoolExecutor` of `jobs` workers, reused by every sweep of
  this process (starting a worker imports torch: seconds each) until `shutdown_pools`, which
  terminates them (their graceful exit would cost seconds each; see there).
- "ray": a connection to a cluster someone already started (`ray start --head`); this module
  never starts one, so a typo in the address fails at once instead of silently running on a
  one-machine "cluster". Each run asks Ray for one CPU; the cluster's CPUs, not `jobs`, set the
  parallelism. Workers must be able to import pmilab (a cluster started from this venv can).

Results do not depend on the engine: `sweep.execute` runs every task with one torch thread and
explicit seeds wherever it runs.
"""

from __future__ import annotations

import atexit
import os
import re
import socket
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from multiprocessing import get_context

from pmilab.errors import InputError

EXECUTORS = ("local", "ray")
# A missing cluster must fail in seconds: Ray's own connect loop retries for many minutes.
CONNECT_TIMEOUT_S = 5.0
RAY_INSTALL_HINT = "pip install 'pmilab[ray]'"


def open_executor(kind: str = "local", jobs: int = 1, address: str | None = None) -> Executor:
    """The executor for a sweep: "local" (`jobs` worker processes) or "ray" (the cluster at
    `address`, else at $RAY_ADDRESS). Bad input or an unreachable cluster -> InputError.

    Calling it again with the same arguments returns the same executor, so a caller may open it
    early (to fail before any run starts) and the sweep runner open it again later."""
    if kind == "local":
        if jobs < 1:
            raise InputError(f"jobs must be >= 1, got {jobs}")
        return worker_pool(jobs)
    if kind == "ray":
        return ray_executor(address)
    raise InputError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")


# ---------------------------------------------------------------------------------------------
# local: a process pool


_POOLS: dict[int, ProcessPoolExecutor] = {}


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM when the sweep process dies (even by SIGKILL), so a killed
    sweep leaves no orphan workers behind. Elsewhere a no-op.

    Also: tqdm's bars in a worker share a thread lock, not tqdm's default multiprocessing lock.
    Every tqdm, even a disabled one, creates that lock, a named semaphore; a worker ended by
    `shutdown_pools` never unlinks it, and the resource tracker printed "2 leaked semaphore
    objects" at the end of every verify. A worker draws no bar other processes could share."""
    import threading

    from tqdm.std import tqdm

    tqdm.set_lock(threading.RLock())
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def worker_pool(jobs: int) -> ProcessPoolExecutor:
    """One pool of `jobs` worker processes, reused by every sweep of this process (starting a
    worker imports torch: seconds each) until `shutdown_pools`."""
    if jobs not in _POOLS:
        # spawn, not fork: forking a process whose torch already started threads can deadlock.
        _POOLS[jobs] = ProcessPoolExecutor(
            max_workers=jobs, mp_context=get_context("spawn"), initializer=_die_with_parent
        )
    return _POOLS[jobs]


def shutdown_pools() -> None:
    """Stop every pool's workers now, without waiting for them to exit by themselves.

    Why: a worker holds nothing worth keeping (each finished run is recorded by the parent as
    its result arrives), but its own exit tears down its torch import, 2-4 s per worker
    measured on a busy 2-core machine and far more under load, all of it between `pmilab
    verify`'s last line and its exit (a running cell, after Ctrl-C, would even be finished
    first). Callers stop the pools as soon as their sweeps end (`pmilab verify`, `pmilab
    figures --run-missing`); the atexit hook is the fallback, though it runs only after
    concurrent.futures has waited for its workers."""
    for pool in _POOLS.values():
        workers = list((pool._processes or {}).values())  # its live processes, by pid
        pool.shutdown(wait=False, cancel_futures=True)
        for w in workers:
            w.terminate()
        for w in workers:
            w.join()
    _POOLS.clear()


atexit.register(shutdown_pools)


# ---------------------------------------------------------------------------------------------
# ray: an existing cluster


def _call(fn, *args):
    """What a Ray worker runs: `fn(*args)` (`fn` travels by reference to its module)."""
    return fn(*args)


class RayExecutor(Executor):
    """`submit` sends `fn(*args)` to the cluster as a one-CPU task and returns the concurrent
    Future of its ObjectRef; cancelling that Future cancels the Ray task too, so an interrupted
    sweep does not leave the cluster busy with runs nobody will record."""

    def __init__(self, address: str) -> None:
        import ray

        self.address = address
        self._ray = ray
        # SPREAD: a sweep's runs are independent and CPU-bound; the default policy packs tasks
        # onto the driver's node first and spills over late (seen: a whole test sweep on one of
        # two idle nodes), SPREAD hands them out over every node with a free CPU.
        self._remote = ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(_call)

    def submit(self, fn, /, *args, **kwargs) -> Future:
        ref = self._remote.remote(fn, *args, **kwargs)
        fut = ref.future()

        def cancel_task(f: Future) -> None:
            if f.cancelled():
                self._ray.cancel(ref)

        fut.add_done_callback(cancel_task)
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to release per sweep: the connection lives as long as this process (Ray
        disconnects at exit). Cancel the futures themselves to stop submitted runs."""


_RAY: dict[str, RayExecutor] = {}


def _host_port(address: str) -> tuple[str, int]:
    m = re.fullmatch(r"\s*(\[[^\]]+\]|[^:\s]+):(\d{1,5})\s*", address)
    if not m:
        raise InputError(
            f"a Ray address must be HOST:PORT (the head's GCS port, e.g. 127.0.0.1:6379), got {address!r}"
        )
    return m[1].strip("[]"), int(m[2])


def ray_executor(address: str | None = None) -> RayExecutor:
    """Connect this process to the Ray cluster at `address` (else $RAY_ADDRESS), once."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address:
        raise InputError(
            "the ray executor needs a cluster address: pass --address HOST:PORT or set RAY_ADDRESS "
            "(start a cluster with `ray start --head`)"
        )
    if address in _RAY:
        return _RAY[address]
    host, port = _host_port(address)
    try:
        import ray
    except ImportError as e:
        raise InputError(
            f"the ray executor needs Ray, which is not installed ({e}); run {RAY_INSTALL_HINT}"
        ) from e
    if ray.is_initialized():
        raise InputError(
            f"this process is already connected to another Ray cluster; cannot also connect to {address}"
        )
    unreachable = (
        f"cannot reach a Ray cluster at {address}: {{}}; start one with `ray start --head` "
        "or check --address"
    )
    # A plain TCP probe first: Ray retries an unreachable GCS for minutes, with log noise.
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise InputError(unreachable.format(e.strerror or type(e).__name__)) from e
    try:
        _ray_init(ray, address)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise InputError(unreachable.format(str(e).splitlines()[0] if str(e) else e)) from e
    _RAY[address] = RayExecutor(address)
    return _RAY[address]


def _ray_init(ray, address: str) -> None:
    """`ray.init` on an existing cluster, quietly: no worker output or INFO lines on this
    console (the sweep prints its own progress), one connection attempt when the port answers
    but is not Ray (Ray's default is 20 attempts of ~40 s), never a local cluster start."""
    import logging

    knob = "RAY_gcs_server_port_wait_time_s"  # Ray's own budget for the connect loop
    saved = os.environ.get(knob)
    os.environ.setdefault(knob, "1")
    try:
        ray.init(
            address=address,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    finally:
        if saved is None:
            os.environ.pop(knob, None)

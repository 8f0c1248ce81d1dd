"""The executors behind a sweep: the local process pool, and a real two-node Ray cluster.

The cluster test runs the head, a second worker node and the client inside their own network
namespace (`unshare --net`), where loopback is the only interface: Ray finds its IP by probing
an outside address and binds to the machine's interface otherwise, even when told 127.0.0.1.
A PID namespace too, so that `ray stop` sees only this test's cluster and the kernel reaps
every Ray process when the namespace's first process exits, whatever happened inside.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from pmilab.errors import InputError
from pmilab.experiments.framework import sweep
from pmilab.experiments.framework.executors import EXECUTORS, open_executor
from tests.experiments.toy_task import square

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HAS_RAY = importlib.util.find_spec("ray") is not None
PORT = 6379  # the head's GCS port: free in a fresh network namespace
UNSHARE = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pmilab", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def no_ray_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


# ---------------------------------------------------------------------------------------------
# open_executor: choices and input errors


def test_unknown_executor_is_an_input_error():
    assert EXECUTORS == ("local", "ray")
    with pytest.raises(InputError, match="unknown executor 'nope'; choose one of local, ray"):
        open_executor("nope")
    with pytest.raises(InputError, match="jobs must be >= 1"):
        open_executor("local", jobs=0)


def test_ray_without_an_address_is_an_input_error(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(
        InputError, match="needs a cluster address: pass --address HOST:PORT or set"
    ):
        open_executor("ray")
    with pytest.raises(InputError, match="must be HOST:PORT"):
        open_executor("ray", address="no-port-here")


@pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install 'pmilab[ray]')")
def test_ray_unreachable_fails_fast(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # read when no address is given
    t0 = time.perf_counter()
    with pytest.raises(
        InputError, match=r"cannot reach a Ray cluster at 127\.0\.0\.1:1: .*ray start"
    ):
        open_executor("ray")
    assert time.perf_counter() - t0 < 10


def test_ray_not_installed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(
        InputError, match=r"Ray, which is not installed .*pip install 'pmilab\[ray\]'"
    ):
        open_executor("ray", address="127.0.0.1:1")


def test_local_executor_runs_execute_and_is_reused():
    ex = open_executor("local", jobs=2)
    assert open_executor("local", jobs=2) is ex
    params = [{"x": x * 0.5, "seed": x % 3} for x in range(4)]
    futures = [ex.submit(sweep.execute, square, p) for p in params]
    for p, fut in zip(params, futures, strict=True):
        metrics, seconds, cpu = fut.result(timeout=120)
        assert metrics == square(p) and seconds >= 0 and cpu >= 0


# ---------------------------------------------------------------------------------------------
# the CLI: a cluster that is not there is one line and exit 2, before anything is written


@pytest.mark.parametrize(
    "extra, env, message",
    [
        (
            ["--address", "127.0.0.1:1"],
            {},
            "cannot reach a Ray cluster at 127.0.0.1:1" if HAS_RAY else "pip install 'pmilab[ray]'",
        ),
        ([], {}, "the ray executor needs a cluster address"),
    ],
)
def test_cli_ray_without_a_cluster_is_one_line(tmp_path, extra, env, message):
    out = tmp_path / "out"
    r = cli(
        "verify", "--preset", "smoke", "--claims", "T1", "--out", str(out),
        "--executor", "ray", *extra,
        env={**no_ray_env(), **env},
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pmilab verify: error: "), r.stderr
    assert message in lines[0]
    assert not out.exists()  # failed before write_meta or any run


def test_cli_help_names_the_executor_options():
    r = cli("verify", "--help")
    assert r.returncode == 0
    assert "--executor {local,ray}" in r.stdout and "RAY_ADDRESS" in r.stdout


# ---------------------------------------------------------------------------------------------
# a real cluster: head + one worker node on loopback, the same sweep through both engines

CLIENT = """
import json, sys
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import replace

import ray

from pmilab.experiments.claims import heads
from pmilab.experiments.framework import sweep
from pmilab.experiments.framework.executors import open_executor
from pmilab.experiments.tasks.discrete import discrete_head
from tests.experiments.toy_task import square

cfg = replace(heads.PRESETS["smoke"], steps=60, point_steps=60, probe_n=0)
runs = {f"toy-x{x}": (square, {"x": x * 0.5, "seed": x % 3, "sleep": 0.3}) for x in range(6)}
for sim, dim, m in [("tabular", 1, 1), ("linear", 2, 1), ("kme", 2, 2), ("wpse", 2, 2)]:
    p = heads.run_params(cfg, 2, sim, dim, m, 0)
    runs[f"heads-{sim}"] = (discrete_head, p)
runs["heads-linear-probe"] = (discrete_head, {**heads.run_params(cfg, 2, "linear", 2, 1, 1), "probe_n": 2000})


def run_all(ex):
    # as the sweep runner does: submit everything, record whatever finishes first
    pending = {ex.submit(sweep.execute, task, p): rid for rid, (task, p) in runs.items()}
    rows = {}
    while pending:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in done:
            metrics, _seconds, _cpu = fut.result()  # timing columns are not compared
            rows[pending.pop(fut)] = {k: repr(v) for k, v in metrics.items()}
    return rows


def node(seconds):
    # the Ray node this task ran on, held long enough that several cannot share one CPU
    import time

    time.sleep(seconds)
    return ray.get_runtime_context().get_node_id()


def main():
    local = run_all(open_executor("local", jobs=2))
    ex = open_executor("ray", address=sys.argv[1])
    assert open_executor("ray", address=sys.argv[1]) is ex
    remote = run_all(ex)
    print("RESULT " + json.dumps({
        "local": local,
        "ray": remote,
        "alive_nodes": sum(n["Alive"] for n in ray.nodes()),
        "task_nodes": len({f.result() for f in [ex.submit(node, 0.5) for _ in range(6)]}),
        "node_ips": sorted({n["NodeManagerAddress"] for n in ray.nodes()}),
    }))


if __name__ == "__main__":  # the local pool spawns workers that import this file
    main()
"""

SCRIPT = """
set -u
ip link set lo up
RAY="{bin}/ray"
trap '"$RAY" stop --force >/dev/null 2>&1' EXIT
common="--node-ip-address=127.0.0.1 --num-cpus=1 --object-store-memory=100000000 \
 --temp-dir={temp} --disable-usage-stats"
# Ray waits a hard-coded 30 s for a raylet to register (ray/_private/node.py); on a loaded
# machine (load 9 on 2 cores, measured) that can run out. Each start gets three tries, with
# `ray stop` between them; a real failure still fails all three.
start() {{
  for try in 1 2 3; do
    "$RAY" start "$@" > {logs}/$node.log 2>&1 && return 0
    "$RAY" stop --force > /dev/null 2>&1; sleep 2
  done
  return 1
}}
node=head; start --head --port={port} --include-dashboard=false $common \
  || {{ echo "head failed"; tail -n 30 {logs}/head.log; exit 3; }}
node=worker; start --address=127.0.0.1:{port} $common \
  || {{ echo "worker failed"; tail -n 30 {logs}/worker.log; exit 4; }}
"{python}" {client} 127.0.0.1:{port}
"""


def namespace_problem() -> str | None:
    """Why the cluster test cannot run here, or None."""
    if not HAS_RAY:
        return "ray is not installed (pip install 'pmilab[ray]')"
    if not (BIN / "ray").exists():
        return f"no ray command in {BIN}"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    try:
        r = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`unshare` failed: {e}"
    if r.returncode != 0:
        return f"cannot create network and PID namespaces (needs root): {r.stderr.decode().strip()}"
    return None


@pytest.mark.slow
def test_ray_cluster_matches_local_run_by_run(tmp_path):
    reason = namespace_problem()
    if reason:
        pytest.skip(reason)
    client = tmp_path / "client.py"
    client.write_text(textwrap.dedent(CLIENT))
    # Ray's Unix sockets live under the temp dir, and a socket path must stay under ~107
    # characters: pytest's tmp_path is too deep, so a short directory directly in /tmp.
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    script = SCRIPT.format(
        bin=BIN, python=sys.executable, client=client, port=PORT, temp=temp, logs=tmp_path
    )
    # Ray's workers must import the test's toy task as well as pmilab (which this venv has).
    env = {**no_ray_env(), "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        r = subprocess.run(
            [*UNSHARE, "bash", "-c", script],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=300,
        )
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    found = [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    assert r.returncode == 0 and found, f"rc {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    res = json.loads(found[-1].removeprefix("RESULT "))
    assert res["alive_nodes"] == 2 and res["task_nodes"] == 2, res
    assert res["node_ips"] == ["127.0.0.1"]  # the namespace kept every node on loopback
    assert set(res["local"]) == set(res["ray"]) and len(res["ray"]) == 11
    for rid, metrics in res["local"].items():
        assert res["ray"][rid] == metrics, rid  # every metric, to the last digit (repr)
    assert res["ray"]["heads-linear-probe"]["probe_excess"] != "nan"  # the T3 probe ran

"""Atomic writes and mean ± SE (pmilab.atomic, pmilab.stats)."""

import builtins
import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pmilab import atomic
from pmilab.stats import Estimate, group_mean_se, mean_se


def test_a_torn_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    atomic.write_json(path, {"v": 1})

    def torn(f):
        f.write(b"half")
        raise KeyboardInterrupt  # stands in for a kill between write and rename

    with pytest.raises(KeyboardInterrupt):
        atomic.write_atomic(path, torn)
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_directory_is_published_whole_or_not_at_all(tmp_path):
    final = tmp_path / "d"
    with pytest.raises(RuntimeError), atomic.directory(final) as tmp:
        (tmp / "x").write_text("1")
        raise RuntimeError("killed")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with atomic.directory(final) as tmp:
        (tmp / "x").write_text("1")
    assert (final / "x").read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["d"]


@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=200))
def test_mean_se_matches_numpy(values):
    est = mean_se(torch.tensor(values, dtype=torch.float64))
    assert isinstance(est, Estimate)
    assert est == pytest.approx(np.mean(values), rel=1e-12, abs=1e-6)
    want = np.std(values, ddof=1) / math.sqrt(len(values))
    assert est.se == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_one_value_has_no_standard_error():
    assert math.isnan(mean_se(torch.tensor([3.0])).se)


def test_group_mean_se_matches_a_hand_computation():
    df = pd.DataFrame({"g": [1, 1, 1, 2], "v": [1.0, 2.0, 6.0, 5.0]})
    out = group_mean_se(df, ["g"], "v")
    assert list(out.g) == [1, 2] and list(out["count"]) == [3, 1]
    assert out["mean"].tolist() == [3.0, 5.0]
    assert out.se.iloc[0] == pytest.approx(np.std([1, 2, 6], ddof=1) / math.sqrt(3))
    assert out.se.iloc[1] == 0.0  # one seed: no spread to draw


UMASK_PROBE = """
import json, os, sys, tempfile
from pathlib import Path
os.umask(int(sys.argv[2], 8))
from pmilab import atomic
d = Path(sys.argv[1])
atomic.write_text(d / "atomic.txt", "x")
with open(d / "plain.txt", "w") as f:
    f.write("x")
with atomic.directory(d / "atomic-dir") as tmp:
    (tmp / "x").write_text("1")
(d / "plain-dir").mkdir()
fd, raw = tempfile.mkstemp(dir=d)
os.close(fd)
mode = lambda name: oct(os.stat(d / name).st_mode & 0o777)
print(json.dumps({"read": oct(atomic.umask()), "raw_mkstemp": mode(raw), **{
    n: mode(n) for n in ("atomic.txt", "plain.txt", "atomic-dir", "plain-dir")}}))
"""


@pytest.mark.parametrize("mask", ["022", "077", "002"])
def test_atomic_writes_follow_the_umask_like_open(tmp_path, mask):
    """In a process with this umask, a file written atomically gets the mode open() gives a new
    file, and a directory published whole the mode of mkdir; the umask is read unchanged."""
    done = subprocess.run(
        [sys.executable, "-c", UMASK_PROBE, str(tmp_path), mask],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    modes = json.loads(done.stdout)
    assert modes["read"] == oct(int(mask, 8))
    assert modes["atomic.txt"] == modes["plain.txt"] == oct(0o666 & ~int(mask, 8))
    assert modes["atomic-dir"] == modes["plain-dir"] == oct(0o777 & ~int(mask, 8))
    if mask != "077":  # control: the temporary file's own mode would not pass
        assert modes["raw_mkstemp"] == "0o600" != modes["plain.txt"]


def test_umask_falls_back_without_proc(monkeypatch):
    """Where /proc/self/status cannot be read, the umask is read by setting it back."""
    real_open = builtins.open

    def no_proc(path, *a, **k):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(path)
        return real_open(path, *a, **k)

    old = os.umask(0o027)
    try:
        monkeypatch.setattr(builtins, "open", no_proc)
        assert atomic.umask() == 0o027
        assert os.umask(0o027) == 0o027  # left as it was
    finally:
        os.umask(old)

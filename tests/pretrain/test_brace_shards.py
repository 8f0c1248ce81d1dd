"""Brace patterns expand lazily: counted from their numbers, named one at a time, each name
checked as it is made (pmilab.pretrain.readers.brace_shards)."""

import subprocess
import sys
from pathlib import Path

import pytest

from pmilab.errors import InputError
from pmilab.pretrain.readers import MAX_SHARDS, brace_count, brace_names, expand_shards

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess:
    """`pmilab pretrain ARGS` in a subprocess; the timeout only stops a hang (the old code built
    every name first: MemoryError after minutes for a billion)."""
    cmd = [sys.executable, "-m", "pmilab", "pretrain", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_names_match_a_hand_written_expansion():
    want = [f"a{i}b{j}.tar" for i in ("00", "01", "02") for j in ("8", "9")]
    assert list(brace_names("a{00..02}b{8..9}.tar")) == want
    assert brace_count("a{00..02}b{8..9}.tar") == 6
    assert list(brace_names("plain.tar")) == ["plain.tar"] and brace_count("plain.tar") == 1


def test_names_are_made_one_at_a_time():
    names = brace_names("x-{000000000000..999999999999}-{0..9}.tar")  # 10^13 names
    assert next(names) == "x-000000000000-0.tar"
    assert next(names) == "x-000000000000-1.tar"
    assert brace_count("x-{000000000000..999999999999}-{0..9}.tar") == 10**13


def test_existing_shards_expand_and_the_first_missing_one_is_named(tmp_path):
    for i in (0, 1, 3):
        (tmp_path / f"d-{i:02d}.tar").write_bytes(b"")
    assert expand_shards(str(tmp_path / "d-{00..01}.tar")) == [
        str(tmp_path / "d-00.tar"),
        str(tmp_path / "d-01.tar"),
    ]
    with pytest.raises(FileNotFoundError, match=r"d-02\.tar \(3 of the 4 that"):
        expand_shards(str(tmp_path / "d-{00..03}.tar"))


def test_a_range_counting_down_is_refused():
    with pytest.raises(InputError, match=r"\{9\.\.1\} is empty"):
        brace_count("x-{9..1}.tar")


def test_an_absurd_count_is_refused_before_any_name_is_made(tmp_path):
    proc = cli("--data", str(tmp_path / "x-{0..999999999}.tar"), "--out", str(tmp_path / "o"))
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
    assert "1,000,000,000 shards" in err[0] and f"{MAX_SHARDS:,}" in err[0]
    assert not (tmp_path / "o").exists()


def test_a_large_pattern_whose_first_shard_is_missing_fails_at_that_name(tmp_path):
    spec = str(tmp_path / "x-{0000000..9999999}.tar")  # 10^7 names: allowed, none exists
    proc = cli("--data", spec, "--out", str(tmp_path / "o"))
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
    assert f"shard {tmp_path / 'x-0000000.tar'} (1 of the 10,000,000" in err[0]

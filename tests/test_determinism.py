"""The suite is deterministic (tests/conftest.py): hypothesis draws the same examples with or
without `CI` set, and a failing example saved in `.hypothesis/` by an earlier run is ignored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
RECORD = "PMILAB_RECORD_DRAWS"  # append each drawn example to this file
KNOWN = "PMILAB_KNOWN_DRAWS"  # fail on any example not listed in this file


@settings(max_examples=15)
@given(st.integers(0, 10**9), st.floats(0, 1))
def test_draw_recorder(a, b):
    """Inert in a normal run; the subprocesses below drive it through the two variables."""
    line = f"{a} {b!r}"
    if os.environ.get(RECORD):
        with open(os.environ[RECORD], "a") as f:
            f.write(line + "\n")
    if os.environ.get(KNOWN):
        assert line in Path(os.environ[KNOWN]).read_text().splitlines()


def test_the_loaded_profile_is_deterministic():
    s = settings()
    assert s.derandomize and s.database is None and s.deadline is None


def _pytest(env_changes: dict, record: Path) -> subprocess.CompletedProcess:
    drop = ("CI", "HYPOTHESIS_PROFILE", RECORD, KNOWN)
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_changes, **{RECORD: str(record)})
    test = f"{Path(__file__).relative_to(ROOT)}::test_draw_recorder"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_same_examples_with_and_without_ci_and_despite_a_saved_failure(tmp_path):
    store = tmp_path / "hypothesis"  # stands in for .hypothesis/ (HYPOTHESIS_STORAGE_DIRECTORY)
    runs = {}
    for name, env in (("plain", {}), ("ci", {"CI": "true"})):
        runs[name] = tmp_path / f"{name}.txt"
        assert (
            _pytest({**env, "HYPOTHESIS_STORAGE_DIRECTORY": str(store)}, runs[name]).returncode == 0
        )
    assert runs["plain"].read_text() == runs["ci"].read_text() != ""
    # Plant a failing example: a randomised run (the opt-in "explore" profile) fails on any
    # draw the deterministic runs did not make, and hypothesis saves it to the store.
    planted = _pytest(
        {
            "HYPOTHESIS_PROFILE": "explore",
            "HYPOTHESIS_STORAGE_DIRECTORY": str(store),
            KNOWN: str(runs["plain"]),
        },
        tmp_path / "explore.txt",
    )
    assert planted.returncode == 1, planted.stdout
    assert any(p.is_file() for p in store.rglob("*")), "the failing example was saved"
    # The default profile never replays it: same draws as before, and the run passes.
    again = _pytest(
        {"HYPOTHESIS_STORAGE_DIRECTORY": str(store), KNOWN: str(runs["plain"])},
        tmp_path / "again.txt",
    )
    assert again.returncode == 0, again.stdout
    assert (tmp_path / "again.txt").read_text() == runs["plain"].read_text()

"""Every notebook in notebooks/ executes headless without error at smoke size, through the
documented command (`jupyter nbconvert --to notebook --execute`, the notebook extra; a failing
cell fails the test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_the_three_notebooks():
    names = [p.name for p in NOTEBOOKS]
    assert len(names) >= 3 and any("optimal" in n for n in names)
    assert any("capacity" in n for n in names) and any("excess_risk" in n for n in names)


def _nbconvert(path: Path, out: Path, env: dict) -> subprocess.CompletedProcess:
    jupyter = Path(sys.executable).parent / "jupyter"
    cmd = [str(jupyter), "nbconvert", "--to", "notebook", "--execute", str(path)]
    cmd += ["--output-dir", str(out), "--ExecutePreprocessor.timeout=300"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=path.parent)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_headless_at_smoke_size(path, tmp_path):
    env = {**os.environ, "PMILAB_NOTEBOOK_SIZE": "smoke", "MPLBACKEND": "Agg"}
    done = _nbconvert(path, tmp_path, env)
    assert done.returncode == 0, done.stderr[-2000:]
    nb = nbformat.read(tmp_path / path.name, as_version=4)
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")


def test_a_failing_cell_fails_the_headless_run(tmp_path):
    """Control: a notebook whose cell raises makes nbconvert exit non-zero."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise ValueError('planted')")])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    bad = tmp_path / "bad.ipynb"
    nbformat.write(nb, bad)
    done = _nbconvert(bad, tmp_path / "out", dict(os.environ))
    assert done.returncode != 0 and "planted" in done.stderr

"""`pmilab figures`: redraws every figure of a verify directory byte for byte, never trains
unasked, and names what is missing in one line."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from pmilab.cli import main

SMOKE = ["--preset", "smoke", "--jobs", "1"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished smoke verify directory of every claim, T4 included."""
    out = tmp_path_factory.mktemp("fig") / "v"
    main(["verify", *SMOKE, "--out", str(out), "--allow-fail", "--no-progress"])
    return out


def _figures(d):
    """The figure files (not the marker naming the results they were drawn from)."""
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.name != ".pmilab-figures"}


def test_redraw_is_byte_identical_twice_and_trains_nothing(finished, tmp_path, capsys):
    verified = _figures(finished / "figures")
    assert {"t4_rate.png", "t4_gd_svd.pdf", "t4_unpaired.png", "t6_invariance.pdf"} <= set(verified)
    runs_before = {p.name: p.stat().st_mtime_ns for p in (finished / "runs").iterdir()}
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy, ignore=shutil.ignore_patterns("runs"))  # results only
    for _ in range(2):
        assert main(["figures", "--results", str(copy)]) == 0
        assert _figures(copy / "figures") == verified
    assert "not drawn" not in capsys.readouterr().err
    assert not (copy / "runs").exists()  # nothing ran
    assert {p.name: p.stat().st_mtime_ns for p in (finished / "runs").iterdir()} == runs_before


def test_missing_results_dir_is_one_line(tmp_path, capsys):
    assert main(["figures", "--results", str(tmp_path / "does-not-exist")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert main(["figures", "--results", str(f)]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_a_dir_without_results_is_one_line_and_trains_nothing(tmp_path, capsys):
    d = tmp_path / "empty"
    d.mkdir()
    assert main(["figures", "--results", str(d)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a `pmilab verify --out` directory" in err[0]
    assert list(d.iterdir()) == []


def test_missing_runs_are_named_not_run(finished, tmp_path, capsys):
    part = tmp_path / "part"
    shutil.copytree(finished, part, ignore=shutil.ignore_patterns("runs", "figures"))
    res = pd.read_csv(part / "results.csv", dtype=str, keep_default_na=False)
    res[res.table != "t6-mc"].to_csv(part / "results.csv", index=False)
    assert main(["figures", "--results", str(part), "--claims", "T5,T6"]) == 0
    err = capsys.readouterr().err
    assert "T6: not drawn:" in err and "--run-missing" in err
    assert (part / "figures" / "t5_batch.png").exists()
    assert not (part / "figures" / "t6_invariance.png").exists() and not (part / "runs").exists()


def test_run_missing_runs_then_draws(finished, tmp_path, capsys):
    part = tmp_path / "rm"
    shutil.copytree(finished, part, ignore=shutil.ignore_patterns("figures"))
    (part / "runs" / "t6-mc.csv").unlink()  # a lost table
    args = ["figures", "--results", str(part), "--claims", "T6", "--run-missing", "--jobs", "1"]
    assert main(args) == 0
    assert "T6: " in capsys.readouterr().err
    assert (part / "runs" / "t6-mc.csv").exists()
    assert (
        _figures(part / "figures")["t6_invariance.png"]
        == (finished / "figures" / "t6_invariance.png").read_bytes()
    )


def test_out_holding_figures_of_other_results_is_refused(finished, tmp_path, capsys):
    """--out that holds figures drawn from another --results (or another command's output) is
    refused in one line, nothing replaced, unless --overwrite; the same results redraw in place."""
    other = tmp_path / "other"
    shutil.copytree(finished, other, ignore=shutil.ignore_patterns("runs"))
    out = tmp_path / "figs"
    assert main(["figures", "--results", str(finished), "--out", str(out), "--claims", "T6"]) == 0
    before = _figures(out)
    assert (out / ".pmilab-figures").read_text().strip() == str(finished.resolve())
    assert main(["figures", "--results", str(finished), "--out", str(out), "--claims", "T6"]) == 0
    capsys.readouterr()
    assert main(["figures", "--results", str(other), "--out", str(out), "--claims", "T6"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds figures drawn from" in err[0] and _figures(out) == before
    cmd = ["figures", "--results", str(other), "--out", str(out), "--claims", "T6", "--overwrite"]
    assert main(cmd) == 0
    assert (out / ".pmilab-figures").read_text().strip() == str(other.resolve())
    # another command's output folder
    fit_out = tmp_path / "fit"
    fit_out.mkdir()
    (fit_out / "metrics.json").write_text("{}")
    assert main(["figures", "--results", str(finished), "--out", str(fit_out)]) == 2
    assert "metrics.json" in capsys.readouterr().err

"""`pmilab figures`: redraws the verify figures byte for byte and runs what is missing."""

from __future__ import annotations

import importlib

import pytest

from pmilab.cli import main


@pytest.fixture
def smoke(monkeypatch):
    mod = importlib.import_module("pmilab.experiments.t6")
    cfg = mod.smoke_config()
    monkeypatch.setattr(mod, "config", lambda quick, seeds=None: cfg)


def test_figures_regenerated_identically_and_missing_runs_rerun(smoke, tmp_path, capsys):
    out = tmp_path / "v"
    main(["verify", "--quick", "--claims", "T6", "--out", str(out), "--allow-fail", "--jobs", "1"])
    figs = tmp_path / "figs"
    assert (
        main(
            ["figures", "--results", str(out), "--out", str(figs), "--claims", "T6", "--jobs", "1"]
        )
        == 0
    )
    for name in ("t6_invariance.png", "t6_invariance.pdf"):
        assert (figs / name).read_bytes() == (out / "figures" / name).read_bytes()
    assert "T6: 0 missing runs run" in capsys.readouterr().err
    (out / "runs" / "t6-mc.csv").unlink()  # a lost table: figures reruns those runs
    assert (
        main(
            ["figures", "--results", str(out), "--out", str(figs), "--claims", "T6", "--jobs", "1"]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "T6: 0 missing" not in err and "missing runs run" in err
    assert (figs / "t6_invariance.png").read_bytes() == (
        out / "figures" / "t6_invariance.png"
    ).read_bytes()


def test_results_must_be_a_directory(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert main(["figures", "--results", str(f), "--out", str(tmp_path / "o")]) == 2
    assert "not a directory" in capsys.readouterr().err

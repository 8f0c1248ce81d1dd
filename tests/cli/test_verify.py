"""`pmilab verify` at smoke size: report.md, results.csv, exit codes, --claims, --shard, and a
claim module that is missing (T4 before it lands) or not sweep-based."""

from __future__ import annotations

import importlib
import sys
import types

import pandas as pd
import pytest

from pmilab.cli import main
from pmilab.experiments import registry
from pmilab.experiments.claims import ClaimResult


@pytest.fixture
def smoke(monkeypatch):
    """Every sweep-based claim module runs its seconds-long smoke preset."""
    for claim in ("T1", "T2", "T3", "T5", "T6"):
        mod = importlib.import_module(f"pmilab.experiments.{claim.lower()}")
        cfg = mod.smoke_config()
        monkeypatch.setattr(mod, "config", lambda quick, seeds=None, cfg=cfg: cfg)


def test_unknown_claim_is_one_line_exit_2(capsys):
    assert main(["verify", "--claims", "T9", "--out", "unused"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown claim" in err[0] and "T1" in err[0]


def test_bad_shard_and_seeds(tmp_path, capsys):
    assert main(["verify", "--shard", "2/2", "--out", str(tmp_path)]) == 2
    assert main(["verify", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "--shard" in capsys.readouterr().err


def test_smoke_report_exit_codes_and_filtering(smoke, tmp_path, capsys):
    out = tmp_path / "v"
    rc = main(["verify", "--quick", "--claims", "T6,T5", "--out", str(out), "--jobs", "1"])
    report = (out / "report.md").read_text()
    claims = pd.read_csv(out / "claims.csv")
    assert list(claims.claim) == ["T5a", "T5b", "T5c", "T6a", "T6b", "T6c"]  # only what was asked
    assert rc == (0 if claims.passed.all() else 1)
    for r in claims.itertuples():
        verdict = "PASS" if r.passed else "**FAIL**"
        assert (
            f"| {r.claim} |" in report
            and verdict in report.split(f"| {r.claim} |")[1].split("\n")[0]
        )
        assert (out / r.figure).exists()
    runs = pd.read_csv(out / "results.csv")
    assert set(runs.table) == {"t5-cap", "t5-batch", "t6-mc", "t6-invariance"}
    assert runs.run_id.is_unique
    printed = capsys.readouterr().out
    assert "T6a" in printed and "claims PASS" in printed
    # rerun with --allow-fail: nothing is retrained and the exit code is 0
    assert (
        main(
            [
                "verify",
                "--quick",
                "--claims",
                "T5,T6",
                "--out",
                str(out),
                "--allow-fail",
                "--jobs",
                "1",
            ]
        )
        == 0
    )
    assert (
        pd.read_csv(out / "results.csv")
        .drop(columns=["seconds", "cpu_seconds"])
        .equals(runs.drop(columns=["seconds", "cpu_seconds"]))
    )


def test_shards_then_report(smoke, tmp_path, capsys):
    out = tmp_path / "s"
    assert (
        main(
            [
                "verify",
                "--quick",
                "--claims",
                "T5",
                "--out",
                str(out),
                "--shard",
                "0/2",
                "--jobs",
                "1",
            ]
        )
        == 0
    )
    assert not (out / "report.md").exists()
    assert "still missing" in capsys.readouterr().err
    main(
        ["verify", "--quick", "--claims", "T5", "--out", str(out), "--shard", "1/2", "--jobs", "1"]
    )
    main(["verify", "--quick", "--claims", "T5", "--out", str(out), "--allow-fail", "--jobs", "1"])
    assert "0 runs" in capsys.readouterr().err  # everything came from the shards
    assert (out / "report.md").exists()


def test_missing_and_foreign_claim_modules(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(registry.CLAIMS, "T4", "pmilab.experiments.no_such_module:run_claims")
    assert main(["verify", "--quick", "--claims", "T4", "--out", str(tmp_path / "a")]) == 0
    text = (tmp_path / "a" / "report.md").read_text()
    assert "T4" in text and "not available" in text
    assert "not available" in capsys.readouterr().err

    fake = types.ModuleType("fake_t4")
    calls = []

    def run_claims(quick, out_dir, seeds=None, progress=True):
        calls.append((quick, seeds))
        return [
            ClaimResult("T4a", "fake", 0.5, "<= 1", True),
            ClaimResult("T4b", "fake", 2.0, "<= 1", False),
        ]

    fake.run_claims = run_claims
    monkeypatch.setitem(sys.modules, "fake_t4", fake)
    monkeypatch.setitem(registry.CLAIMS, "T4", "fake_t4:run_claims")
    assert main(["verify", "--quick", "--claims", "T4", "--out", str(tmp_path / "b")]) == 1
    assert calls == [(True, None)]
    assert list(pd.read_csv(tmp_path / "b" / "claims.csv").claim) == ["T4a", "T4b"]

"""`pmilab verify` at smoke size: report.md, results.csv, exit codes, --claims, --shard."""

from __future__ import annotations

import re

import pandas as pd

from pmilab.cli import main

SMOKE = ["--preset", "smoke", "--jobs", "1"]


def test_unknown_claim_is_one_line_exit_2(capsys):
    assert main(["verify", "--claims", "T99", "--out", "unused"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown claim" in err[0] and "T1" in err[0]


def test_bad_shard_and_seeds(tmp_path, capsys):
    assert main(["verify", "--shard", "2/2", "--out", str(tmp_path)]) == 2
    assert main(["verify", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "--shard" in capsys.readouterr().err


def test_smoke_report_exit_codes_and_filtering(tmp_path, capsys):
    out = tmp_path / "v"
    rc = main(["verify", *SMOKE, "--claims", "T6,T5", "--out", str(out)])
    report = (out / "report.md").read_text()
    claims = pd.read_csv(out / "claims.csv")
    assert set(claims.claim.str[:2]) == {"T5", "T6"}  # only what was asked
    # the exit code from claims.csv alone: evidence and implementation rows must not FAIL, a
    # calibration row must have its expected verdict, a control must FAIL
    v, kind = claims.verdict, claims.kind
    bad = (
        (kind.isin(["evidence", "implementation"]) & (v == "FAIL"))
        | ((kind == "calibration") & (v != claims.expect))
        | ((kind == "control") & (v != "FAIL"))
    )
    assert rc == (1 if bad.any() else 0)
    judged = claims[kind != "finding"]
    assert (
        judged[["estimate", "se", "n", "ci_low", "ci_high", "alpha", "verdict"]].notna().all().all()
    )
    assert ((judged.n >= 2) | (judged.deterministic == True)).all()  # noqa: E712
    sections = {k: report.split(f"## {t}")[1].split("\n## ")[0] for k, t in
                [("evidence", "Claims"), ("control", "Controls")]}  # fmt: skip
    for r in claims[kind.isin(sections)].itertuples():
        row = sections[r.kind].split(f"| {r.claim} |")[1].split("\n")[0]
        if r.kind == "control":
            assert ("FAIL (as it must)" in row) == (r.verdict == "FAIL")
        else:
            assert r.verdict in row
    for fig in claims.figure.dropna():
        assert (out / fig).exists()
    runs = pd.read_csv(out / "results.csv")
    assert set(runs.table) == {"t5-cap", "t5-lossn", "t6-mc", "t6-invariance"}
    assert runs.run_id.is_unique
    printed = capsys.readouterr().out
    assert "T6a" in printed and "controls" in printed and "FAIL as they must" in printed
    # rerun with --allow-fail: nothing is retrained and the exit code is 0
    assert (
        main(
            [
                "verify",
                "--claims",
                "T5,T6",
                "--out",
                str(out),
                "--allow-fail",
                *SMOKE,
            ]
        )
        == 0
    )
    assert (
        pd.read_csv(out / "results.csv")
        .drop(columns=["seconds", "cpu_seconds"])
        .equals(runs.drop(columns=["seconds", "cpu_seconds"]))
    )


def test_shards_then_report(tmp_path, capsys):
    out = tmp_path / "s"
    assert (
        main(
            [
                "verify",
                "--claims",
                "T5",
                "--out",
                str(out),
                "--shard",
                "0/2",
                *SMOKE,
            ]
        )
        == 0
    )
    assert not (out / "report.md").exists()
    assert "still missing" in capsys.readouterr().err
    main(["verify", *SMOKE, "--claims", "T5", "--out", str(out), "--shard", "1/2"])
    main(["verify", *SMOKE, "--claims", "T5", "--out", str(out), "--allow-fail"])
    assert "0 runs" in capsys.readouterr().err  # everything came from the shards
    assert (out / "report.md").exists()


def test_another_preset_in_the_same_directory_is_refused(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["verify", *SMOKE, "--claims", "T5", "--out", str(out), "--allow-fail"]) in (0, 1)
    assert main(["verify", "--quick", "--claims", "T5", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds a smoke run" in err


def test_figures_land_in_the_output_directory(tmp_path):
    out = tmp_path / "f"
    main(["verify", *SMOKE, "--claims", "T4", "--out", str(out), "--allow-fail"])
    claims = pd.read_csv(out / "claims.csv")
    # every row has a figure but T4f's (an identity check and its control)
    assert claims.figure.isna().tolist() == (claims.claim == "T4f").tolist()
    for fig in claims.figure.dropna():
        assert fig.startswith("figures/") and (out / fig).exists()
        assert (out / fig).with_suffix(".pdf").exists()
    assert not list(out.glob("*.png")) and not list(out.glob("*.pdf"))


def test_piped_verify_prints_heartbeat_lines(tmp_path, capsys, monkeypatch):
    """stderr is not a terminal here (captured), so the bars are off and one heartbeat line for
    the whole schedule (named by its claims) comes every HEARTBEAT_S seconds (10 by default,
    0.05 here), counting every run from 0 up to the total."""
    from pmilab.experiments.framework import sweep

    monkeypatch.setattr(sweep, "HEARTBEAT_S", 0.05)
    main(["verify", *SMOKE, "--claims", "T4", "--out", str(tmp_path / "h"), "--allow-fail"])
    err = capsys.readouterr().err.splitlines()
    beats = [ln for ln in err if re.fullmatch(r"T4: \d+/\d+ runs done, \d+ s elapsed", ln)]
    runs = pd.read_csv(tmp_path / "h" / "results.csv")
    assert beats, err[:5]
    counts = [int(ln.split(": ")[1].split("/")[0]) for ln in beats]
    totals = {int(ln.split("/")[1].split(" ")[0]) for ln in beats}
    assert counts[0] == 0 and counts == sorted(counts) and counts[-1] <= len(runs)
    assert totals == {len(runs)}

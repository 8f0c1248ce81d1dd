"""Two presets' reports: rows whose verdict differs are flagged in both report.md files."""

from __future__ import annotations

import json

from pmilab import verdicts as V
from pmilab.cli import main
from pmilab.experiments.framework.claim import calibration, judged_row
from pmilab.experiments.framework.report import write_report


def _dir(path, preset, t1a_values):
    rows = [
        judged_row("T1a", "reach", V.judge(t1a_values, 0.05, "below"), "<= 0.05"),
        calibration("T1a", "near", V.judge([0.2, 0.21, 0.19], 0.05, "below"), "<= 0.05", "FAIL"),
    ]
    write_report(path, rows, {}, {"preset": preset})
    (path / "meta.json").write_text(json.dumps({"preset": preset, "seeds": None}))
    return path


def test_a_verdict_that_differs_is_flagged_in_both_reports(tmp_path, capsys):
    a = _dir(tmp_path / "quick", "quick", [0.02, 0.08, 0.04, 0.07])  # INCONCLUSIVE
    b = _dir(tmp_path / "full", "full", [0.01, 0.011, 0.012])  # PASS
    assert main(["compare", str(a), str(b)]) == 0
    assert "T1a|evidence|: INCONCLUSIVE" in capsys.readouterr().out
    qa, fb = (a / "report.md").read_text(), (b / "report.md").read_text()
    assert (
        "**1 rows differ from the full report**" in qa
        and "| T1a|evidence| | INCONCLUSIVE | PASS |" in qa
    )
    assert (
        "**1 rows differ from the quick report**" in fb
        and "| T1a|evidence| | PASS | INCONCLUSIVE |" in fb
    )
    # rerunning replaces the section; agreeing reports say so
    _dir(a, "quick", [0.01, 0.011, 0.012])
    assert main(["compare", str(a), str(b)]) == 0
    text = (a / "report.md").read_text()
    assert text.count("## Preset agreement") == 1 and "Every row has the same verdict" in text


def test_not_a_verify_directory_is_one_line(tmp_path, capsys):
    assert main(["compare", str(tmp_path), str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.count("\n") == 1

"""A claim written outside pmilab (tests/plugin_pkg/pmilab_plugin_demo/claim.py, and the one-file
claim of docs/extending.md run as written) registers like a head: a built-in ID, package.module,
package.module:name or a `pmilab.claims` entry point. `pmilab verify --claims` runs it through
the process pool, its figure registers with it, and a claim without a figure is fine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import pmilab as pl
from pmilab import registry
from pmilab.cli import main
from pmilab.experiments import verify
from pmilab.experiments.claims import CLAIMS
from pmilab.experiments.framework.report import read_claims

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "plugin_pkg"
CLAIM = "pmilab_plugin_demo.claim"


@pytest.fixture
def plugin_path(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN))
    return PLUGIN


def test_verify_runs_the_plugin_claim_through_the_process_pool(tmp_path, plugin_path, capsys):
    """Two workers (spawn): each run records the process that ran it, a child of the verify
    process. The claim with a figure draws it; the same claim without one (`:bare`) says so."""
    out = tmp_path / "v"
    path = [str(PLUGIN), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    argv = ["verify", "--claims", f"{CLAIM},{CLAIM}:bare", "--preset", "smoke", "--jobs", "2",
            "--no-progress", "--allow-fail", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "pmilab", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    runs = pd.read_csv(out / "results.csv")
    assert len(runs) == 2 and (runs.parent == proc.pid).all() and (runs.pid != proc.pid).all()
    assert runs.pid.nunique() == 2  # one cell on each worker
    assert "MIXB: no figure (the claim draws none)" in err
    assert json.loads((out / "meta.json").read_text())["plugins"] == {
        "MIX": CLAIM, "MIXB": f"{CLAIM}:bare"
    }  # fmt: skip
    rows = read_claims(out)
    assert [(r.claim, r.kind, r.expect) for r in rows if r.claim == "MIX"] == [
        ("MIX", "evidence", ""), ("MIX", "calibration", "FAIL"), ("MIX", "calibration", "PASS")
    ]  # fmt: skip
    assert (out / "figures" / "mix_reach.png").is_file()
    first = (out / "figures" / "mix_reach.png").read_bytes()
    assert main(["figures", "--results", str(out)]) == 0  # redrawn from the directory alone
    assert "MIXB: no figure" in capsys.readouterr().err
    assert (out / "figures" / "mix_reach.png").read_bytes() == first
    from pmilab.cli.figures import _claims_to_run  # what --run-missing would run: theirs too

    assert _claims_to_run(out, None) == [*CLAIMS, CLAIM, f"{CLAIM}:bare"]
    assert _claims_to_run(out, ["T2"]) == ["T2", CLAIM, f"{CLAIM}:bare"]


def test_the_docs_claim_runs_as_written(tmp_path, monkeypatch, capsys):
    """The `myclaims.py` block of docs/extending.md, saved as that file, through `pmilab
    verify --claims T... ,myclaims` (in this process, one job) and `pmilab figures`."""
    text = (ROOT / "docs" / "extending.md").read_text()
    code = re.search(r"```python\n# myclaims.py\n(.*?)```", text, re.S).group(1)
    (tmp_path / "myclaims.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "v"
    argv = ["verify", "--claims", "myclaims", "--preset", "smoke", "--jobs", "1", "--no-progress",
            "--allow-fail", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    rows = read_claims(out)
    assert [r.claim for r in rows] == ["KMEK"] * 3
    assert all(r.verdict in ("PASS", "FAIL", "INCONCLUSIVE") for r in rows)
    assert [r.expect for r in rows if r.kind == "calibration"] == ["FAIL", "PASS"]
    capsys.readouterr()
    assert main(["figures", "--results", str(out)]) == 0
    assert "KMEK: no figure (the claim draws none)" in capsys.readouterr().err


def test_bad_claim_specs_are_one_line_and_exit_2(tmp_path, plugin_path, capsys):
    cases = [
        ("T99", "unknown claim 'T99'"),
        ("no_such_pkg.claims", "no module named 'no_such_pkg'"),
        ("pmilab_plugin_demo.heads", "has no CLAIM, TITLE, config, sweeps, evaluate"),
        ("pmilab_plugin_demo.broken:no_evaluate", "has no evaluate, config, sweeps"),
        ("pmilab_plugin_demo.broken:reserved_id", "IDs T<digit>... and HC... are pmilab's"),
        (f"{CLAIM},pmilab_plugin_demo.broken:same_id", "both have CLAIM = 'MIX'"),
        ("pmilab_plugin_demo.broken:lambda_task", "cannot be imported by a worker process"),
    ]
    for i, (spec, message) in enumerate(cases):
        argv = ["verify", "--claims", spec, "--preset", "smoke", "--jobs", "2", "--no-progress",
                "--out", str(tmp_path / str(i))]  # fmt: skip
        assert main(argv) == 2, spec
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (spec, err)


def test_builtin_ids_resolve_as_before():
    assert registry.resolve_claim("t2") is CLAIMS["T2"]
    assert registry.claim_spec(CLAIMS["T3"]) == "T3"
    assert verify.parse_claims("t3, T1") == ["T1", "T3"]
    assert verify.parse_claims("") == list(CLAIMS)
    assert verify.plugin_claims(["T1", "T3"]) == {}


def test_an_entry_point_names_the_claim(tmp_path, plugin_path, monkeypatch):
    from tests.test_plugins import _install_metadata

    monkeypatch.syspath_prepend(str(_install_metadata(tmp_path)))
    import pmilab_plugin_demo.claim as mod

    assert registry.resolve_claim("mixture-reach") is mod
    assert verify.parse_claims("mixture-reach,T2") == ["T2", "mixture-reach"]
    assert verify.plugin_claims(["T2", "mixture-reach"]) == {"MIX": "mixture-reach"}


def test_meta_records_the_plugin_claims_of_every_invocation(tmp_path):
    verify.write_meta(tmp_path, "smoke", None)
    assert json.loads((tmp_path / "meta.json").read_text()) == {"preset": "smoke", "seeds": None}
    verify.write_meta(tmp_path, "smoke", None, plugins={"MIX": CLAIM})
    verify.write_meta(tmp_path, "smoke", None, plugins={"KMEK": "myclaims"})
    assert verify.read_meta(tmp_path)["plugins"] == {"MIX": CLAIM, "KMEK": "myclaims"}
    with pytest.raises(pl.InputError, match=f"holds claim MIX from {CLAIM}, not other.mod"):
        verify.write_meta(tmp_path, "smoke", None, plugins={"MIX": "other.mod"})

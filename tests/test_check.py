"""The report card, `pmilab check HEAD` and `pmilab.check_head` (docs/extending.md, "The report
card"): the plugin's mixture head checked at smoke size by the command the docs give, then a
contract test over the registry's built-in heads (each checked into the same directory: the
built-in heads' runs are the card's own, so nothing is trained again), heads that break the
contract, and the card's contract and loss_N numbers against independent references."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import pmilab as pl
from pmilab import registry
from pmilab.cli import main
from pmilab.experiments import check, verify
from pmilab.experiments.framework.report import read_claims
from pmilab.experiments.tasks import card
from pmilab.experiments.tasks.catalog import make_dist

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "plugin_pkg"
HEAD = "pmilab_plugin_demo.heads:MixtureHead"
ROWS = ["HC0", "HC1", "HC2", "HC3", "HC4", "HC5"]


def docs_command() -> list[str]:
    """The `pmilab check` line of docs/extending.md, as argv after `pmilab`."""
    text = (ROOT / "docs" / "extending.md").read_text()
    line = next(s for s in text.splitlines() if re.search(r"pmilab check \S+ --preset smoke", s))
    argv = shlex.split(line)
    return argv[argv.index("pmilab") + 1 :]


@pytest.fixture(scope="module")
def card_dir(tmp_path_factory):
    """The docs' command, run as written (its --out replaced) in a fresh process that sees the
    plugin on PYTHONPATH only; the files it wrote, read right away."""
    out = tmp_path_factory.mktemp("card") / "card"
    argv = docs_command()
    argv[argv.index("--out") + 1] = str(out)
    path = [str(PLUGIN), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    proc = subprocess.run(
        [sys.executable, "-m", "pmilab", *argv, "--jobs", "1", "--no-progress"],
        env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    files = {
        n: (out / n).read_text() for n in ("report.md", "claims.csv", "heads.csv", "meta.json")
    }
    return out, proc, files


def test_check_writes_a_report_with_verdicts(card_dir, monkeypatch):
    out, proc, files = card_dir
    assert proc.returncode in (0, 1), proc.stderr  # 1: a smoke calibration row may miss
    assert "Traceback" not in proc.stderr
    assert files["report.md"].startswith("# pmilab check report")
    assert f"**{HEAD}**" in files["report.md"]  # the checked head leads the side-by-side tables
    rows = read_claims(out)
    assert sorted({r.claim for r in rows}) == ROWS
    evidence = [r for r in rows if r.kind == "evidence"]
    assert [r.claim for r in evidence] == ["HC1", "HC2", "HC3", "HC4", "HC5"]
    assert all(r.verdict in ("PASS", "FAIL", "INCONCLUSIVE") for r in evidence)
    for cid in ("HC1", "HC2", "HC3", "HC4", "HC5"):  # every evidence row has its pair
        assert {(cid, "FAIL"), (cid, "PASS")} <= {(r.claim, r.expect) for r in rows}
    assert [r.verdict for r in rows if r.claim == "HC0"] == ["PASS"]
    heads = pd.read_csv(out / "heads.csv", keep_default_na=False)
    assert list(dict.fromkeys(heads["head"])) == [HEAD, *registry.HEAD_NAMES]
    contract = heads[heads.part == "contract"].set_index("head").verdict
    assert (contract == "PASS").all(), contract
    assert json.loads(files["meta.json"])["check"]["head"] == HEAD
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert pngs == ["hc_batch.png", "hc_bound.png", "hc_capacity.png"]
    drawn = {p: (out / "figures" / p).read_bytes() for p in pngs}
    monkeypatch.syspath_prepend(str(PLUGIN))
    assert main(["figures", "--results", str(out)]) == 0  # the card's figures, redrawn
    assert {p: (out / "figures" / p).read_bytes() for p in pngs} == drawn


@pytest.mark.parametrize("name", registry.HEAD_NAMES)
def test_every_builtin_head_passes_the_contract(card_dir, name):
    """The contract test over the registry: each built-in head checked at smoke size. Its
    runs are the ones the first check ran beside the mixture head, so all are reused."""
    out = card_dir[0]
    done = pl.check_head(name, preset="smoke", out=out, figures=False)
    assert done.ran == 0 and done.reused > 0
    rows = {(r.claim, r.kind): r for r in done.results}
    assert rows["HC0", "implementation"].verdict == "PASS"
    assert rows["HC3", "implementation"].verdict == "PASS"  # the bound holds for every table
    assert set(done.verdicts()) | {r.claim for r in done.results if r.kind == "finding"} >= {
        "HC1",
        "HC2",
        "HC3",
        "HC4",
        "HC5",
    }
    no_size = registry.head_inputs(name, {"dim": 2, "points": 2}).kind == "indices"
    assert ("HC5", "finding" if no_size else "evidence") in rows
    assert f"**{name}**" in done.report.read_text()


def test_a_head_whose_two_forms_disagree_fails_hc0_and_exits_1(card_dir, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN))
    out = card_dir[0]
    spec = "pmilab_plugin_demo.broken:Inconsistent"
    rc = main(["check", spec, "--preset", "smoke", "--out", str(out), "--jobs", "1",
               "--no-progress"])  # fmt: skip
    assert rc == 1
    assert "HC0 (implementation)" in capsys.readouterr().out
    hc0 = [r for r in read_claims(out) if r.claim == "HC0"]
    assert [r.verdict for r in hc0] == ["FAIL"] and hc0[0].measured > check.PAIRED_TOL


def test_a_head_that_breaks_the_contract_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN))
    cases = [
        ("pmilab_plugin_demo.broken:NoLogits", "has no logit_matrix"),
        ("pmilab_plugin_demo.broken:WrongShape", "logit_matrix returned shape (5,) for 5 x's"),
        ("no_such_pkg.mod:Head", "no module named 'no_such_pkg'"),
        ("kme --points 3", "set --dim (the size of a point), not --points"),
    ]
    for i, (spec, message) in enumerate(cases):
        out = tmp_path / str(i)
        assert main(["check", *spec.split(), "--preset", "smoke", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (spec, err)
        assert not out.exists()  # refused before anything was written


def test_a_check_directory_and_a_verify_directory_refuse_each_other(tmp_path):
    verify.write_meta(tmp_path / "v", "smoke", None)
    with pytest.raises(pl.InputError, match="holds a verify run"):
        verify.write_meta(tmp_path / "v", "smoke", None, check={"head": "kme"})
    verify.write_meta(tmp_path / "c", "smoke", None, check={"head": "kme"})
    with pytest.raises(pl.InputError, match="holds a pmilab check of kme"):
        verify.write_meta(tmp_path / "c", "smoke", None)
    verify.write_meta(tmp_path / "c", "smoke", None, check={"head": "linear"})  # another head
    with pytest.raises(pl.InputError, match="holds a smoke run"):
        verify.write_meta(tmp_path / "c", "quick", None, check={"head": "linear"})


def test_a_head_object_needs_an_import_path():
    class Local(torch.nn.Module):
        pass

    with pytest.raises(pl.InputError, match="has no import path"):
        check.HeadCard(Local)


def test_the_contract_rule_fails_at_twice_its_tolerance_and_passes_at_half():
    def rows(gap, nonfinite=0.0):
        return pd.DataFrame({"paired_gap": [0.0, gap], "nonfinite": [0.0, nonfinite]})

    tol = check.PAIRED_TOL
    verdicts = lambda df: [j.verdict for j in check.contract_judged(df)[0]]  # noqa: E731
    assert verdicts(rows(2 * tol)) == ["FAIL", "PASS"]
    assert verdicts(rows(0.5 * tol)) == ["PASS", "PASS"]
    assert verdicts(rows(math.nan, 3.0)) == ["FAIL", "FAIL"]


class _Run:
    """A trained run as `contract_metrics` sees it: a fixed logit table, and paired logits
    that are its diagonal plus `delta[x]`."""

    def __init__(self, dist, table, delta):
        self.dist, self.table, self.delta = dist, table, delta

    def logit_matrix(self, x, y):
        return self.table[x][:, y]

    def logits(self, x, y):
        return self.table[x, y] + self.delta[x]


def test_contract_metrics_against_brute_force():
    d = make_dist("latent:nx=12,ny=10,k=3,seed=0")
    g = torch.Generator().manual_seed(0)
    table = 3 * torch.randn(12, 10, generator=g, dtype=torch.float64)
    delta = 1e-3 * torch.rand(12, generator=g, dtype=torch.float64)
    got = card.contract_metrics(_Run(d, table, delta), seed=5)
    x, y = d.sample(card.CONTRACT_PAIRS, seed=card.CONTRACT_SEED + 5)
    want = max(float(delta[a]) / (1 + abs(float(table[a, b]))) for a, b in zip(x, y, strict=True))
    assert got == {"paired_gap": pytest.approx(want, rel=1e-12), "nonfinite": 0.0}
    table[0, 0] = math.inf
    assert card.contract_metrics(_Run(d, table, delta), seed=5)["nonfinite"] >= 0  # no raise


def test_lossn_gaps_against_symmetric_infonce_on_the_same_batches():
    """HC4's numbers: the gap of alpha*PMI to PMI, through the card's task, equals the mean
    over T5c's held-out batches of pmilab.losses.symmetric_infonce; PMI's own gap is 0."""
    from pmilab.experiments.tasks.fitting import PROBE_SEED_OFFSET
    from pmilab.experiments.tasks.t5_heads import TRAIN_SEED
    from pmilab.losses import symmetric_infonce

    d = make_dist("latent:nx=24,ny=20,k=2,seed=0")
    pmi = d.pmi_table().to(torch.float64)
    p = {"seed": 1, "eval_pairs": 400, "lossn_sizes": "4/16", "lossn_near": 0.2,
         "lossn_half": 0.05}  # fmt: skip
    own = card.lossn_gaps(pmi, d, p)
    scaled = card.lossn_gaps(1.2 * pmi, d, p)
    for n in (4, 16):
        assert own[f"lossn_diff_N{n}"] == 0.0
        assert scaled[f"lossn_diff_N{n}"] == own[f"lossn_near_diff_N{n}"]
        k = max(64, 400 // n)
        x, y = d.sample(n * k, seed=PROBE_SEED_OFFSET + 1 * TRAIN_SEED + n)
        x, y = x.view(k, n), y.view(k, n)
        ref = np.mean([float(symmetric_infonce(1.2 * pmi[x[b]][:, y[b]])
                             - symmetric_infonce(pmi[x[b]][:, y[b]])) for b in range(k)])  # fmt: skip
        assert scaled[f"lossn_diff_N{n}"] == pytest.approx(ref, rel=1e-9, abs=1e-12)

"""Every claim module end to end at smoke size: sweeps -> run tables -> verdict rows; the
registry satisfies the claim contract; figures are drawn from the tables byte-identically."""

from __future__ import annotations

import math

import pytest

from pmilab.experiments import verify
from pmilab.experiments.claims import CLAIMS
from pmilab.experiments.framework.claim import PRESETS, ClaimModule, ClaimResult
from pmilab.experiments.framework.sweep import load_table
from pmilab.figures import FIGURES

EXPECTED = {
    "T1": ["T1a", "T1b", "T1c", "T1d"],
    "T2": ["T2a", "T2b", "T2c", "T2d"],
    # T3a-c are implementation checks (the bound holds for every table); T3d-g are evidence
    "T3": ["T3d", "T3e", "T3f", "T3g"],
    "T4": ["T4a", "T4b", "T4c", "T4d", "T4e", "T4g"],
    "T5": ["T5b", "T5c", "T5d"],
    # T6a is an implementation check (an identity of the lab's PMI and MI code)
    "T6": ["T6b"],
    # T7a is an implementation check and T7c a finding: T7b is T7's one evidence row
    "T7": ["T7b"],
    # T8d is a finding (the gains themselves, no verdict)
    "T8": ["T8a", "T8b", "T8c"],
    # T9c is a finding (the small-D gap, full only)
    "T9": ["T9a", "T9b"],
    # T10c is a finding (the bandwidth, full and smoke only)
    "T10": ["T10a", "T10b"],
}


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify")
    runs = {c: verify.run_claim(CLAIMS[c], "smoke", out, progress=False) for c in EXPECTED}
    return out, runs


def test_registry_is_a_dict_of_modules_satisfying_the_contract():
    assert list(CLAIMS) == list(EXPECTED) == list(FIGURES)
    for claim, mod in CLAIMS.items():
        assert isinstance(mod, ClaimModule) and mod.CLAIM == claim and mod.TITLE
        for preset in PRESETS:
            cfg = mod.config(preset)
            assert mod.sweeps(cfg), (claim, preset)
        with pytest.raises(ValueError, match="unknown preset"):
            mod.config("huge")


@pytest.mark.parametrize("claim", list(EXPECTED))
def test_claim_rows(smoke_runs, claim):
    out, runs = smoke_runs
    cr = runs[claim]
    assert [r.claim for r in cr.results if r.kind == "evidence"] == EXPECTED[claim]
    for r in cr.results:
        assert isinstance(r, ClaimResult) and r.statement and r.detail
        assert (r.judged is None) == (r.kind == "finding")
        if r.kind != "finding":
            # every verdict is read off an interval over seeds, or marked exact
            j = r.judged
            assert r.threshold and r.verdict in ("PASS", "FAIL", "INCONCLUSIVE")
            assert j.n >= 2 or j.deterministic, (r.claim, r.kind, j)
            assert j.ci_low <= j.estimate <= j.ci_high or j.deterministic
        if r.figure:
            assert r.figure.startswith("figures/") and r.figure.endswith(".png")
        if isinstance(r.measured, float):
            assert not math.isinf(r.measured)
    assert cr.missing == 0
    assert cr.ran + cr.reused and (claim == "T3" or cr.reused == 0)
    if claim == "T3":  # T3 reads the heads runs T2 trained: nothing is trained twice
        heads = next(sw for sw in cr.sweeps if sw.name == "heads")
        assert cr.reused == len(heads.runs)


@pytest.mark.parametrize("claim", list(EXPECTED))
def test_every_evidence_row_has_a_calibration_pair_and_no_control_passes(smoke_runs, claim):
    """docs/theory.md, "Verdicts": every evidence row's own rule on a near miss (must FAIL) and
    a half-size error (must PASS); strawman controls only beside such a pair. At smoke size the
    numbers mean nothing (2-3 seeds, untrained heads): a calibration row may be INCONCLUSIVE
    there, but a near miss never PASSes and no control PASSes. The presets that decide
    (quick, full) must have every row as it must be (reports/*)."""
    rows = smoke_runs[1][claim].results
    pairs = {(r.claim, r.expect) for r in rows if r.kind == "calibration"}
    for cid in EXPECTED[claim]:
        assert {(cid, "FAIL"), (cid, "PASS")} <= pairs, f"{cid} has no calibration pair"
    assert [r.claim for r in rows if r.kind == "calibration" and r.expect == "FAIL"
            and r.verdict == "PASS"] == []  # fmt: skip
    assert [r.claim for r in rows if r.kind == "control" and r.verdict == "PASS"] == []


@pytest.mark.parametrize("claim", list(EXPECTED))
def test_figures_are_deterministic_and_cover_every_row(smoke_runs, tmp_path, claim):
    out, runs = smoke_runs
    cr = runs[claim]
    tables = {sw.name: load_table(sw, out / "runs") for sw in cr.sweeps}
    first = {p.name: p.read_bytes() for p in FIGURES[claim](tables, cr.results, tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in FIGURES[claim](tables, cr.results, tmp_path / "b")}
    assert first == second and len(first) >= 2
    assert {r.figure.removeprefix("figures/") for r in cr.results if r.figure} <= set(first)


def test_t6_mc_rows_match_exact_mi(smoke_runs):
    """T6a at smoke size still checks real numbers: the Gaussian's exact MI is the closed form."""
    out, runs = smoke_runs
    sweep = next(sw for sw in runs["T6"].sweeps if sw.name == "t6-mc")
    df = load_table(sweep, out / "runs")
    g = df[df.dist == "gaussian-1-1-0.75"].iloc[0]
    assert g.mi_exact == pytest.approx(-0.5 * math.log(1 - 0.75**2), rel=1e-12)
    assert abs(g.pmi_mean - g.mi_exact) < 6 * g.pmi_mean_se


def test_batched_symmetric_loss_matches_the_loss_module():
    """The vectorised finite-N loss of T5c equals pmilab.losses.symmetric_infonce per batch."""
    import torch

    from pmilab.experiments.tasks.discrete import _batched_symmetric
    from pmilab.losses import symmetric_infonce

    g = torch.Generator().manual_seed(0)
    table = torch.randn(7, 5, generator=g, dtype=torch.float64)
    x, y = torch.randint(0, 7, (300, 6), generator=g), torch.randint(0, 5, (300, 6), generator=g)
    ref = torch.stack([symmetric_infonce(table[x[b]][:, y[b]]) for b in range(300)])
    torch.testing.assert_close(_batched_symmetric(table, x, y), ref, rtol=1e-12, atol=1e-12)

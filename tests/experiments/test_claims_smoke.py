"""Every claim module end to end at smoke size: sweeps -> results table -> verdict rows ->
figures (PNG+PDF), and the figures are byte-identical when redrawn from the same table."""

from __future__ import annotations

import importlib
import math

import pytest

from pmilab.experiments import registry
from pmilab.experiments.claims import ClaimResult

EXPECTED = {
    "T1": ["T1a", "T1b", "T1c", "T1d"],
    "T2": ["T2a", "T2b", "T2c", "T2d"],
    "T3": ["T3a", "T3b", "T3c"],
    "T5": ["T5a", "T5b", "T5c"],
    "T6": ["T6a", "T6b", "T6c"],
}


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify")
    runs = {}
    for claim in EXPECTED:
        mod = importlib.import_module(f"pmilab.experiments.{claim.lower()}")
        cfg = mod.smoke_config()
        mod_config = mod.config
        mod.config = lambda quick, seeds=None, cfg=cfg: cfg
        try:
            runs[claim] = (mod, cfg, registry.run_module(mod, claim, True, out, progress=False))
        finally:
            mod.config = mod_config
    return out, runs


@pytest.mark.parametrize("claim", list(EXPECTED))
def test_claim_rows_and_figures(smoke_runs, claim):
    out, runs = smoke_runs
    mod, cfg, cr = runs[claim]
    assert [r.claim for r in cr.results] == EXPECTED[claim]
    for r in cr.results:
        assert isinstance(r, ClaimResult) and isinstance(r.passed, bool)
        assert r.statement and r.threshold and r.detail
        if isinstance(r.measured, float):
            assert not math.isinf(r.measured)
        assert (out / r.figure).exists() and (out / r.figure).with_suffix(".pdf").exists()
    assert cr.missing == 0
    # T3 reads the runs T2 trained (sweep "heads"): nothing is trained twice
    assert (cr.ran, cr.reused) == ((0, 7) if claim == "T3" else (cr.ran, 0)) and cr.ran + cr.reused
    for name, df in cr.tables.items():
        assert len(df) == len({r.run_id for s in mod.sweeps(cfg) if s.name == name for r in s.runs})


def test_figures_are_deterministic(smoke_runs, tmp_path):
    out, runs = smoke_runs
    for claim in ("T2", "T6"):
        mod, _, cr = runs[claim]
        first = {p.name: p.read_bytes() for p in mod.figures(cr.tables, cr.results, tmp_path / "a")}
        second = {
            p.name: p.read_bytes() for p in mod.figures(cr.tables, cr.results, tmp_path / "b")
        }
        assert first == second and len(first) >= 2


def test_t6_mc_rows_match_exact_mi(smoke_runs):
    """T6a at smoke size still checks real numbers: the Gaussian's exact MI is the closed form."""
    _, runs = smoke_runs
    df = runs["T6"][2].tables["t6-mc"]
    g = df[df.dist == "gaussian-1-1-0.75"].iloc[0]
    assert g.mi_exact == pytest.approx(-0.5 * math.log(1 - 0.75**2), rel=1e-12)
    assert abs(g.pmi_mean - g.mi_exact) < 6 * g.pmi_mean_se


def test_batched_symmetric_loss_matches_the_loss_module():
    """The vectorised finite-N loss of T5c equals pmilab.losses.symmetric_infonce per batch."""
    import torch

    from pmilab.experiments.tasks import _batched_symmetric
    from pmilab.losses import symmetric_infonce

    g = torch.Generator().manual_seed(0)
    table = torch.randn(7, 5, generator=g, dtype=torch.float64)
    x, y = torch.randint(0, 7, (300, 6), generator=g), torch.randint(0, 5, (300, 6), generator=g)
    ref = torch.stack([symmetric_infonce(table[x[b]][:, y[b]]) for b in range(300)])
    torch.testing.assert_close(_batched_symmetric(table, x, y), ref, rtol=1e-12, atol=1e-12)

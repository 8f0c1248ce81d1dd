"""How the WPSE reduction resolves the pairs its fp32 expansion cannot (`_pairwise_chunked.
resolve_kernel_sums`): the float64 expansion over the block of flagged rows and columns first,
direct differences for what even float64 cannot resolve. Values and gradients against the
brute-force float64 reference; each test has the control that shows the resolution is needed."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pmilab.similarity import _pairwise as P
from pmilab.similarity import _pairwise_chunked as chunked
from tests.similarity.test_pairwise import leaf, wpse_check


def unnormalised(b, c, m, n, d, seed=0):
    """N(0, 1) points (every fp32 pair flagged at σ = 1 for d ≥ 64) and positive weights."""
    g = torch.Generator().manual_seed(seed)
    px, py = torch.randn(b, m, d, generator=g), torch.randn(c, n, d, generator=g)
    return px, torch.rand(b, m, generator=g) + 0.1, py, torch.rand(c, n, generator=g) + 0.1


def two_clusters(seed=0):
    """Sets alternate between two clusters at ±30 along one axis, σ = 1: pairs within a cluster
    have kernel values ~1e-7 to 4e-4, but norms ~30 make the fp32 expansion err by up to 1.2e-4
    relative (measured), 12x the contract; float64's error is ~1e-12."""
    b, c, m, n, d = 6, 5, 3, 2, 16
    g = torch.Generator().manual_seed(seed)
    e = torch.zeros(d)
    e[0] = 30.0
    side = torch.tensor([1.0, -1.0] * 3)
    px = torch.randn(b, m, d, generator=g) + side[:b, None, None] * e
    py = torch.randn(c, n, d, generator=g) + side[:c, None, None] * e
    return px, torch.rand(b, m, generator=g) + 0.1, py, torch.rand(c, n, generator=g) + 0.1


def far_duplicates(seed=0):
    """Sets 0 and 1 of each side far from the common centre (±500) and near-duplicates of each
    other across sides; the rest near the centre. At σ = 0.01 the fp32 expansion resolves no
    pair, float64 all but those between two far sets (their S, the size of the expansion's
    terms, is twice that of a far-central pair), and only differences those four."""
    b, m, d = 6, 3, 16
    g = torch.Generator().manual_seed(seed)
    px = torch.randn(b, m, d, generator=g)
    px[0] += 500.0
    px[1] -= 500.0
    py = torch.randn(b, m, d, generator=g)
    py[:2] = px[:2] + 1e-3 * torch.randn(2, m, d, generator=g)
    return px, torch.rand(b, m, generator=g) + 0.1, py, torch.rand(b, m, generator=g) + 0.1


class Spy:
    """Counts the pairs sent to direct differences (`kernel_sum_pairs`)."""

    def __init__(self, monkeypatch):
        self.pairs = 0
        real = chunked.kernel_sum_pairs

        def spy(*args, **kw):
            self.pairs += args[-1].numel()  # jj
            return real(*args, **kw)

        monkeypatch.setattr(chunked, "kernel_sum_pairs", spy)


@pytest.mark.parametrize("inputs", [unnormalised(5, 4, 3, 2, 64), two_clusters()])
@pytest.mark.parametrize("kernel", ["gaussian", "imq"])
def test_flagged_pairs_are_resolved_by_the_float64_block(inputs, kernel, monkeypatch):
    px, wx, py, wy = inputs
    _, err = chunked.kernel_expanded(px, wx, py, wy, torch.tensor(1.0), kernel)
    assert (err > chunked.WPSE_TOL[torch.float32]).all()  # every pair flagged in fp32
    spy = Spy(monkeypatch)
    wpse_check(px, wx, py, wy, 1.0, 0.0, 1.0, kernel, 1e-5)
    wpse_check(px, wx, py, wy, 1.0, 0.4, -1.5, kernel, 1e-5)
    assert spy.pairs == 0  # no pair needed the differences


def test_control_unresolved_fp32_misses_the_contract(monkeypatch):
    """Without any resolution the fp32 expansion's error on the clustered pairs exceeds 1e-5."""
    monkeypatch.setitem(chunked.WPSE_TOL, torch.float32, float("inf"))
    with pytest.raises(AssertionError):
        wpse_check(*two_clusters(), 1.0, 0.0, 1.0, "gaussian", 1e-5)


def test_what_float64_cannot_resolve_goes_to_differences(monkeypatch):
    px, wx, py, wy = far_duplicates()
    spy = Spy(monkeypatch)
    wpse_check(px, wx, py, wy, 0.01, 0.0, 1.0, "gaussian", 1e-5)
    assert spy.pairs == 2 * 2  # between far sets
    ref = P.wpse_logits_naive(*(t.double() for t in (px, wx, py, wy)), 0.01, 0.0, 1.0)
    assert ref[0, 0] > 0.05 and ref[1, 1] > 0.05  # the far near-duplicates carry real values


def test_control_without_the_differences_the_far_pairs_are_wrong(monkeypatch):
    monkeypatch.setattr(chunked, "_splice", lambda out, *a: out)
    px, wx, py, wy = far_duplicates()
    with pytest.raises(AssertionError):
        wpse_check(px, wx, py, wy, 0.01, 0.0, 1.0, "gaussian", 1e-5)


def test_sparse_flags_skip_the_block(monkeypatch):
    """Below DENSE_FP64_FRACTION of their block, flagged pairs go to differences directly."""
    px, wx, py, wy = unnormalised(5, 4, 3, 2, 64)
    monkeypatch.setattr(chunked, "DENSE_FP64_FRACTION", 2.0)
    spy = Spy(monkeypatch)
    wpse_check(px, wx, py, wy, 1.0, 0.0, 1.0, "gaussian", 1e-5)
    assert spy.pairs == 5 * 4


@settings(max_examples=15, deadline=None)
@given(
    shape=st.tuples(*(st.integers(1, 5) for _ in range(4)), st.sampled_from([32, 64, 96])),
    scale=st.sampled_from([0.8, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_gradients_through_the_float64_block_match_the_reference(shape, scale, seed):
    """fp32 autograd through the resolution equals float64 autograd of the naive version,
    relative to each gradient's scale. σ = scale·√(d/40): scores near −40/scale², kernel values
    within fp32's range, every pair flagged in fp32."""
    sigma = scale * (shape[4] / 40) ** 0.5
    base = unnormalised(*shape, seed=seed)
    _, err = chunked.kernel_expanded(*base, torch.tensor(sigma) ** -2, "gaussian")
    assert (err > chunked.WPSE_TOL[torch.float32]).all()
    gout = torch.linspace(-1, 1, shape[0] * shape[1]).view(shape[0], shape[1])
    grads = []
    for fn, dtype in ((P.wpse_logits, torch.float32), (P.wpse_logits_naive, torch.float64)):
        ins = [leaf(t.to(dtype)) for t in base] + [leaf(torch.tensor(sigma, dtype=dtype))]
        (fn(*ins, 0.0, 1.0, "gaussian") * gout.to(dtype)).sum().backward()
        grads.append([t.grad.double() for t in ins])
    for got, want in zip(*grads, strict=True):
        assert torch.isfinite(got).all()
        scale = want.abs().max().item() + 1e-300
        assert (got - want).abs().max().item() <= 1e-4 * scale


def test_control_a_detached_float64_block_breaks_the_gradients(monkeypatch):
    """The gradient test fails when the float64 block's values carry no gradient."""
    real = chunked.kernel_expanded

    def detached(px, *args):
        ker, err = real(px, *args)
        return (ker.detach(), err) if px.dtype == torch.float64 else (ker, err)

    monkeypatch.setattr(chunked, "kernel_expanded", detached)
    with pytest.raises(AssertionError):
        test_gradients_through_the_float64_block_match_the_reference.hypothesis.inner_test(
            (3, 2, 2, 3, 64), 1.0, 0
        )


def test_the_benchmark_runs_and_records_every_mode(tmp_path):
    """benchmarks/wpse_resolution.py at a tiny size: every mode timed, measured and within the
    contract on its inputs (its timings are not asserted)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "wpse_resolution.py"
    cmd = [sys.executable, str(script), "--batch", "6", "--dim", "64", "--sigma", "1.3"]
    res = subprocess.run(
        cmd + ["--rounds", "1", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads((tmp_path / "wpse_resolution.json").read_text())
    assert data["meta"]["flagged_fraction"] == 1.0
    rows = {r["mode"]: r for r in data["rows"]}
    assert set(rows) == {"block", "differences", "einsum", "floor"}
    for mode in ("block", "differences", "einsum"):
        assert rows[mode]["max_rel_error"] <= 1e-5
    assert "| block |" in (tmp_path / "wpse_resolution.md").read_text()
    bad = subprocess.run(
        [sys.executable, str(script), "--sigma", "0"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "must be positive" in bad.stderr

"""The fused small-set KME and WPSE-Gaussian logits (`_pairwise_small`) against the materialising
references (`_pairwise.kme_logits_naive`, `wpse_logits_naive`): values and autograd gradients
(every input and σ), float64 within 1e-12 and float32 within 1e-5 of the float64 reference; under
vmap, each replicate equal bit for bit to its own call; the fall-backs (float64 points far from
the centre: direct differences; points far apart: the exact max shift) taken per replicate.

Controls: the same comparison fails on a kernel whose score is off by 2x the float32 tolerance
(a bandwidth changed by a relative 1e-5·2) and passes at 0.5x.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import vmap

from pmilab.similarity import _pairwise as P
from pmilab.similarity import _pairwise_small as S

TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def _inputs(b, c, m, n, d, dtype, seed, scale=1.0, offset=0.0, log_weights=True):
    g = torch.Generator().manual_seed(seed)
    px = torch.randn(b, m, d, generator=g, dtype=torch.float64) * scale + offset
    py = torch.randn(c, n, d, generator=g, dtype=torch.float64) * scale + offset
    wx, wy = torch.randn(b, m, generator=g, dtype=torch.float64), torch.randn(c, n, generator=g)
    wy = wy.double()
    if log_weights:
        wx, wy = wx.log_softmax(-1), wy.log_softmax(-1)
    return [t.to(dtype) for t in (px, wx, py, wy)]


def _value_and_grads(fn, ins, log_sigma: float, weight: torch.Tensor, dtype):
    leaves = [t.detach().clone().to(dtype).requires_grad_() for t in ins]
    ls = torch.tensor(log_sigma, dtype=dtype, requires_grad=True)
    out = fn(*leaves, ls.exp())
    (out * weight.to(dtype)).sum().backward()
    return [out.detach()] + [t.grad for t in (*leaves, ls)]


def _close(got, want, tol) -> bool:
    """Every tensor within tol of the float64 reference, relative to its largest entry."""
    return all(
        float((a.double() - b).abs().max()) <= tol * max(1.0, float(b.abs().max()))
        for a, b in zip(got, want, strict=True)
    )


def _kme(px, wx, py, wy, sigma):
    return S.kme_logits_small(px, wx, py, wy, sigma)


def _wpse(px, wx, py, wy, sigma):
    return S.wpse_logits_small(px, wx, py, wy, sigma, 0.3, 1.2)


def _wpse_ref(px, wx, py, wy, sigma):
    return P.wpse_logits_naive(px, wx, py, wy, sigma, 0.3, 1.2, "gaussian")


HEADS = {"kme": (_kme, P.kme_logits_naive, True), "wpse": (_wpse, _wpse_ref, False)}


@settings(max_examples=25, deadline=None)
@given(
    head=st.sampled_from(list(HEADS)),
    b=st.integers(1, 5),
    c=st.integers(1, 5),
    m=st.integers(1, 6),
    n=st.integers(1, 6),
    d=st.integers(1, 6),
    log_sigma=st.floats(-1.5, 1.0),
    seed=st.integers(0, 10_000),
    dtype=st.sampled_from([torch.float64, torch.float32]),
)
def test_values_and_gradients_match_the_reference(head, b, c, m, n, d, log_sigma, seed, dtype):
    fn, ref, log_weights = HEADS[head]
    ins = _inputs(b, c, m, n, d, torch.float64, seed, log_weights=log_weights)
    weight = torch.randn(b, c, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    want = _value_and_grads(ref, ins, log_sigma, weight, torch.float64)
    got = _value_and_grads(fn, ins, log_sigma, weight, dtype)
    assert _close(got, want, TOL[dtype])


@pytest.mark.parametrize("factor, passes", [(2.0, False), (0.5, True)])
def test_the_comparison_fails_at_twice_its_tolerance(factor, passes):
    """Control: a KME whose bandwidth is off so that the logits move by ~factor x the float32
    tolerance (relative to max(1, |ℓ|)) fails or passes the same `_close` check."""
    ins = _inputs(4, 3, 5, 4, 2, torch.float64, 0)
    weight = torch.ones(4, 3, dtype=torch.float64)
    want = _value_and_grads(P.kme_logits_naive, ins, -0.3, weight, torch.float64)[:1]
    scale = max(1.0, float(want[0].abs().max()))
    # dℓ/dlog σ = Σ P ‖u - v‖²/σ²: solve for the shift in log σ that moves ℓ by factor·tol·scale
    slope = _value_and_grads(P.kme_logits_naive, ins, -0.3, weight, torch.float64)[5]
    target = factor * TOL[torch.float32] * scale
    per_cell = float(slope.abs()) / weight.numel()
    shifted = _value_and_grads(
        P.kme_logits_naive, ins, -0.3 + target / per_cell, weight, torch.float64
    )[:1]
    moved = float((shifted[0] - want[0]).abs().max()) / scale
    assert (moved <= TOL[torch.float32]) == passes  # the planted error has the intended size
    assert _close(shifted, want, TOL[torch.float32]) == passes


def _batched_gemm_is_batch_invariant(m: int, k: int, n: int, r: int, dtype) -> bool:
    """Whether this machine's batched GEMM gives each of r (m, k) @ (k, n) products the bits of
    the same product alone. Not everywhere: MKL's float64 batched GEMM on an AMD EPYC (AVX2)
    rounds the odd-numbered products of (15, 12) @ (12, 3) differently (2026-12-07)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(r, m, k, generator=g, dtype=dtype)
    b = torch.randn(r, k, n, generator=g, dtype=dtype)
    full = a @ b
    return all(torch.equal(full[i], (a[i : i + 1] @ b[i : i + 1])[0]) for i in range(r))


def _same(x: torch.Tensor, y: torch.Tensor, exact: bool, rel: float) -> bool:
    """Bit for bit where the batched GEMM is batch-invariant, else within rel of y's largest."""
    if exact:
        return torch.equal(x, y)
    return float((x - y).abs().max()) <= rel * max(float(y.abs().max()), 1e-300)


@pytest.mark.parametrize("rel", [1e-12, 1e-6])
@pytest.mark.parametrize(("factor", "passes"), [(2.0, False), (0.5, True)])
def test_the_reordered_sum_comparison_fails_at_twice_its_tolerance(rel, factor, passes):
    """Control for `_same`'s tolerance branch: a gradient off by 2x rel (relative to its largest
    entry) FAILs, by 0.5x PASSes; and the exact branch rejects a one-ulp change."""
    y = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = y.clone()
    x[1, 2] += factor * rel * float(y.abs().max())
    assert _same(x, y, exact=False, rel=rel) == passes
    assert not _same(torch.nextafter(y, y + 1), y, exact=True, rel=rel)


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vmap_replicates_equal_their_own_calls_bit_for_bit(head, dtype):
    """Replicate r of vmap over R = 3 equals the call on its slice: logits and every gradient.
    Replicate 1 sits far from the others (float64: its scores take the direct differences;
    float32: nothing flagged), replicate 2 is far apart from its partners (exact max shift): the
    fall-backs are per replicate, so the others' numbers do not move.

    The logits are compared bit for bit always: the fall-backs act there. The gradients come from
    the backward's two batched GEMMs, (B·M, C·N) @ (C·N, d + 1) and its transpose's; where this
    machine's batched GEMM is not batch-invariant at those shapes (probed), a replicate's sum is
    reordered by the BLAS, and the gradients are held within 1e-12 relative in float64 and 1e-6 in
    float32 instead (the tolerance the many-seeds issue sets for a reordered sum)."""
    b, c, m, n, d = 4, 3, 3, 5, 2
    fn = HEADS[head][0]
    reps = [
        _inputs(b, c, m, n, d, dtype, 0),
        _inputs(b, c, m, n, d, dtype, 1, offset=3e4),
        _inputs(b, c, m, n, d, dtype, 2),
    ]
    reps[2][0] = reps[2][0] + 40.0  # px 40 units from py: exp(-‖u - v‖²/2σ²) underflows
    stacked = [torch.stack(t) for t in zip(*reps, strict=True)]
    sig = torch.tensor([0.5, 0.7, 0.6], dtype=dtype)
    w = torch.randn(3, 4, 3, dtype=dtype, generator=torch.Generator().manual_seed(5))
    exact = all(
        _batched_gemm_is_batch_invariant(rows, inner, d + 1, 3, dtype)
        for rows, inner in ((b * m, c * n), (c * n, b * m))
    )
    rel = {torch.float64: 1e-12, torch.float32: 1e-6}[dtype]

    def run(ins, sigma, weight, batched):
        leaves = [t.clone().requires_grad_() for t in (*ins, sigma)]
        out = vmap(fn)(*leaves) if batched else fn(*leaves)
        (out * weight).sum().backward()
        return [out.detach()] + [t.grad for t in leaves]

    together = run(stacked, sig, w, True)
    for r in range(3):
        alone = run([t[r] for t in stacked], sig[r], w[r], False)
        assert torch.equal(together[0][r], alone[0]), r
        grads = zip(together[1:], alone[1:], strict=True)
        assert all(_same(a[r], b, exact, rel) for a, b in grads), r
        assert all(torch.isfinite(t).all() for t in alone)


def test_far_apart_points_keep_finite_logits():
    """Every pair more than ~9 bandwidths apart: the weights' shift underflows every exp, and
    the exact max shift recovers ℓ (the reference, float64, has it exactly)."""
    px, wx, py, wy = _inputs(3, 2, 4, 4, 2, torch.float64, 3)
    px = px + 60.0
    want = P.kme_logits_naive(px, wx, py, wy, 0.5)
    got = S.kme_logits_small(px.float(), wx.float(), py.float(), wy.float(), 0.5)
    assert torch.isfinite(got).all()
    assert float(((got.double() - want).abs() / want.abs()).max()) < 1e-6


def test_float64_far_from_the_centre_takes_direct_differences():
    """float64 points 1e6 from the origin in units of σ: the float64 expansion's estimated error
    exceeds KME_TOL, so the scores come from direct differences and stay within 1e-12."""
    ins = _inputs(3, 4, 3, 3, 2, torch.float64, 4, scale=1e-3, offset=1e5)
    want = P.kme_logits_naive(*ins, 0.1)
    got = S.kme_logits_small(*ins, 0.1)
    assert float((got - want).abs().max()) <= 1e-12 * max(1.0, float(want.abs().max()))

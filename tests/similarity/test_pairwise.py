"""The memory-bounded KME/WPSE reductions against the brute-force float64 references (docs/theory.md T2).

Contract tested here (issue 6):
- values: fp32 within 1e-5 relative, float64 within 1e-10, on random, unit-norm, nearly
  duplicated and far-apart point sets, σ from 1e-3 to 1e3, log-weights down to −1e4 (also mixed).
  "Relative" means |Δℓ| ≤ tol·max(1, |ℓ|) for KME (ℓ is a log, so this is a relative error on
  ⟨μ, ν⟩ when |ℓ| < 1) and |Δ| ≤ tol·Σ|wx wy|(|α₁|‖u‖‖v‖ + |α₂| k)/(MN) for WPSE (the scale of
  its signed terms; a signed sum has no relative error of its own);
- gradients: float64 gradcheck for every input, σ and the α's, on the fast and the fallback paths;
- memory: forward+backward never holds the (B, C, M, N) scores.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pmilab.similarity import _pairwise as P
from pmilab.similarity import _pairwise_blocks as blocks
from pmilab.similarity import _pairwise_chunked as chunked

KINDS = ("random", "sphere", "duplicate", "far")


def point_sets(kind: str, b, c, m, n, d, wscale=1.0, seed=0, dtype=torch.float64):
    """Float64 point sets of one family; weights are log-softmax scaled by wscale (or mixed)."""
    g = torch.Generator().manual_seed(seed)
    px = torch.randn(b, m, d, generator=g, dtype=torch.float64)
    py = torch.randn(c, n, d, generator=g, dtype=torch.float64)
    if kind == "sphere":
        px, py = (
            torch.nn.functional.normalize(px, dim=-1),
            torch.nn.functional.normalize(py, dim=-1),
        )
    elif kind == "duplicate":  # every y set is a jittered copy of an x set, far from the origin
        px = px + 50.0
        src = px[torch.arange(c) % b][:, torch.arange(n) % m]
        py = src + 1e-3 * torch.randn(c, n, d, generator=g, dtype=torch.float64)
    elif kind == "far":
        px, py = px + 300.0, py - 300.0
    wx = torch.randn(b, m, generator=g, dtype=torch.float64).log_softmax(-1) * wscale
    wy = torch.randn(c, n, generator=g, dtype=torch.float64).log_softmax(-1) * wscale
    return [t.to(dtype) for t in (px, wx, py, wy)]


def mixed_weights(w: torch.Tensor) -> torch.Tensor:
    """Every other log-weight at −1e4, the rest 0: only some points count."""
    out = torch.zeros_like(w)
    out[:, ::2] = -1e4
    return out


def kme_check(px, wx, py, wy, sigma, tol):
    ref = P.kme_logits_naive(*(t.double() for t in (px, wx, py, wy)), sigma)
    out = P.kme_logits(px, wx, py, wy, sigma)
    assert out.dtype == (torch.float64 if px.dtype == torch.float64 else torch.float32)
    assert torch.isfinite(out).all()
    err = (out.double() - ref).abs() / ref.abs().clamp_min(1.0)
    assert err.max().item() <= tol, err.max().item()


def wpse_scale(px, wx, py, wy, sigma, al, ak, kernel):
    """(B, C) Σ|wx wy|(|α₁|‖u‖‖v‖ + |α₂| k)/(MN) in float64: the scale WPSE errors are judged on."""
    px, wx, py, wy = (t.double() for t in (px, wx, py, wy))
    k = P.kernel_values(P.sq_dists(px, py), sigma, kernel)  # (B, C, M, N)
    nrm = px.norm(dim=-1)[:, None, :, None] * py.norm(dim=-1)[None, :, None, :]
    mix = abs(al) * nrm + abs(ak) * k
    return torch.einsum("bm,cn,bcmn->bc", wx.abs(), wy.abs(), mix) / (px.shape[1] * py.shape[1])


def wpse_check(px, wx, py, wy, sigma, al, ak, kernel, tol):
    ref = P.wpse_logits_naive(*(t.double() for t in (px, wx, py, wy)), sigma, al, ak, kernel)
    out = P.wpse_logits(px, wx, py, wy, sigma, al, ak, kernel)
    assert torch.isfinite(out).all()
    # 1e-30·Σ|w w|: fp32 flushes kernel values below ~1e-38 to zero, as the naive fp32 does
    scale = wpse_scale(px, wx, py, wy, sigma, al, ak, kernel) + 1e-30
    err = (out.double() - ref).abs() / scale
    assert err.max().item() <= tol, err.max().item()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sigma", [1e-3, 0.5, 1e3])
@pytest.mark.parametrize("weights", ["softmax", "huge", "mixed"])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_kme_matches_reference_on_extremes(kind, sigma, weights, dtype, tol):
    px, wx, py, wy = point_sets(kind, 5, 6, 4, 3, 16, wscale=1e4 if weights == "huge" else 1.0)
    if weights == "mixed":
        wx, wy = mixed_weights(wx), mixed_weights(wy)
    kme_check(*(t.to(dtype) for t in (px, wx, py, wy)), sigma, tol)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sigma", [1e-3, 0.5, 1e3])
@pytest.mark.parametrize("kernel", ["gaussian", "imq"])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_wpse_matches_reference_on_extremes(kind, sigma, kernel, dtype, tol):
    px, _, py, _ = point_sets(kind, 5, 6, 4, 3, 16)
    g = torch.Generator().manual_seed(1)
    wx, wy = torch.randn(5, 4, generator=g) * 1e4, torch.randn(6, 3, generator=g)  # signed
    args = [t.to(dtype) for t in (px, wx, py, wy)]
    wpse_check(*args, sigma, 0.3, 1.0, kernel, tol)
    wpse_check(*args, sigma, 0.0, -2.0, kernel, tol)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.tuples(*(st.integers(1, 7) for _ in range(4)), st.integers(1, 33)),
    kind=st.sampled_from(KINDS),
    sigma=st.sampled_from([1e-2, 0.3, 1.0, 7.0]),
    seed=st.integers(0, 2**16),
)
def test_matches_reference_over_shapes(shape, kind, sigma, seed):
    b, c, m, n, d = shape
    px, wx, py, wy = point_sets(kind, b, c, m, n, d, seed=seed)
    kme_check(px, wx, py, wy, sigma, 1e-10)
    kme_check(*(t.float() for t in (px, wx, py, wy)), sigma, 1e-5)
    wpse_check(px, wx, py, wy, sigma, 0.5, 1.0, "gaussian", 1e-10)
    wpse_check(*(t.float() for t in (px, wx, py, wy)), sigma, 0.5, 1.0, "imq", 1e-5)


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of a few blocks, so every test input spans many tiles (edges included)."""
    monkeypatch.setattr(blocks, "TILE_ELEMS", 40)
    monkeypatch.setattr(blocks, "TILE_COLS", 9)


def leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_()


@pytest.mark.parametrize("path", ["shift", "exact_tiles", "direct"])
def test_kme_gradcheck(small_tiles, monkeypatch, path):
    if path == "direct":  # every pair through the direct-difference fallback
        monkeypatch.setitem(chunked.KME_TOL, torch.float64, 0.0)
    if path == "exact_tiles":  # every tile through the per-block-max logsumexp
        monkeypatch.setitem(blocks.SUM_LO, torch.float64, float("inf"))
    px, wx, py, wy = (leaf(t) for t in point_sets("random", 3, 4, 3, 2, 4))
    sigma = leaf(torch.tensor(0.8, dtype=torch.float64))
    assert torch.autograd.gradcheck(P.kme_logits, (px, wx, py, wy, sigma))


@pytest.mark.parametrize("kernel", ["gaussian", "imq"])
@pytest.mark.parametrize("force_direct", [False, True])
def test_wpse_gradcheck(small_tiles, monkeypatch, kernel, force_direct):
    if force_direct:
        monkeypatch.setitem(chunked.WPSE_TOL, torch.float64, 0.0)
    px, _, py, _ = (leaf(t) for t in point_sets("random", 3, 4, 3, 2, 4))
    wx, wy = (
        leaf(torch.randn(3, 3, dtype=torch.float64)),
        leaf(torch.randn(4, 2, dtype=torch.float64)),
    )
    sigma, al, ak = (leaf(torch.tensor(v, dtype=torch.float64)) for v in (1.3, 0.4, -0.7))

    def f(px, wx, py, wy, sigma, al, ak):
        return P.wpse_logits(px, wx, py, wy, sigma, al, ak, kernel)

    assert torch.autograd.gradcheck(f, (px, wx, py, wy, sigma, al, ak))


@pytest.mark.parametrize("kernel", ["gaussian", "imq"])
def test_single_point_sets_gradcheck(kernel):
    """M = N = 1 takes a direct (B, C) path (one score per pair); CLIP-like, so check it too."""
    px, wx, py, wy = (leaf(t) for t in point_sets("random", 4, 3, 1, 1, 5))
    sigma, al = (leaf(torch.tensor(v, dtype=torch.float64)) for v in (0.7, 0.3))
    assert torch.autograd.gradcheck(P.kme_logits, (px, wx, py, wy, sigma))

    def f(px, wx, py, wy, sigma, al):
        return P.wpse_logits(px, wx, py, wy, sigma, al, 1.0, kernel)

    assert torch.autograd.gradcheck(f, (px, wx, py, wy, sigma, al))
    kme_check(px.detach(), wx.detach(), py.detach(), wy.detach(), 0.01, 1e-10)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sigma", [1e-3, 0.02, 0.5, 1e3])
def test_gradients_match_reference_and_are_finite(kind, sigma):
    """Autograd of the chunked version equals autograd of the naive one (float64), at extremes."""
    base = point_sets(kind, 4, 3, 3, 2, 8)
    outs = []
    for fn in (P.kme_logits, P.kme_logits_naive):
        ins = [leaf(t) for t in base] + [leaf(torch.tensor(sigma, dtype=torch.float64))]
        gout = torch.linspace(-1, 1, 12, dtype=torch.float64).view(4, 3)
        (fn(*ins) * gout).sum().backward()
        outs.append([t.grad for t in ins])
    for got, want in zip(*outs, strict=True):
        assert torch.isfinite(got).all()
        assert torch.allclose(got, want, rtol=1e-7, atol=1e-9 * want.abs().max().item())
    # fp32: finite gradients for every input at the same extremes
    ins = [leaf(t.float()) for t in base] + [leaf(torch.tensor(float(sigma)))]
    P.kme_logits(*ins).sum().backward()
    P.wpse_logits(*ins, 0.5, 1.0).sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in ins)


def test_cancellation_estimate_bounds_the_error():
    """The per-pair error estimate that decides the fallback is ≥ the actual error of the fast path."""
    for kind in ("random", "sphere", "duplicate"):
        for sigma in (1e-2, 0.5, 5.0):
            px, wx, py, wy = (t.float() for t in point_sets(kind, 6, 6, 4, 4, 64))
            inv_s2 = torch.tensor(sigma) ** -2
            out, est = chunked.kme_expanded(px, wx, py, wy, inv_s2)
            ref = P.kme_logits_naive(*(t.double() for t in (px, wx, py, wy)), sigma)
            assert ((out.double() - ref).abs() <= est.double()).all(), (kind, sigma)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_autocast_bf16_computes_in_fp32(dtype):
    px, wx, py, wy = (t.to(dtype) for t in point_sets("sphere", 6, 5, 4, 3, 16))
    want = P.kme_logits_naive(*(t.double() for t in (px, wx, py, wy)), 0.3)
    want_w = P.wpse_logits_naive(*(t.double() for t in (px, wx, py, wy)), 0.3, 0.2, 1.0)
    ins = [leaf(t) for t in (px, wx, py, wy)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = P.kme_logits(*ins, 0.3)
        out_w = P.wpse_logits(*ins, 0.3, 0.2, 1.0)
        (out.sum() + out_w.sum()).backward()  # backward under autocast stays fp32 too
    assert out.dtype == out_w.dtype == torch.float32
    assert ((out.double() - want).abs() / want.abs().clamp_min(1)).max() <= 1e-5
    assert (out_w.double() - want_w).abs().max() <= 1e-5 * want_w.abs().max()
    assert all(t.grad is not None and torch.isfinite(t.grad.float()).all() for t in ins)


@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(1, 40),
    c=st.integers(1, 40),
    m=st.integers(1, 9),
    n=st.integers(1, 9),
    budget=st.integers(1, 500),
    cols=st.integers(1, 60),
)
def test_tiles_cover_each_pair_once_within_budget(b, c, m, n, budget, cols):
    old = blocks.TILE_ELEMS, blocks.TILE_COLS
    blocks.TILE_ELEMS, blocks.TILE_COLS = budget, cols
    try:
        seen = torch.zeros(b, c, dtype=torch.int64)
        for i0, i1, j0, j1 in blocks.tiles(b, c, m, n):
            assert (i1 - i0) * (j1 - j0) * m * n <= max(budget, m * n)
            seen[i0:i1, j0:j1] += 1
        assert (seen == 1).all()
    finally:
        blocks.TILE_ELEMS, blocks.TILE_COLS = old


PEAK_SCRIPT = r"""
import json, resource, torch
from pmilab.similarity import _pairwise as P
torch.manual_seed(0)
b, m, d = 256, 8, 128
px = torch.nn.functional.normalize(torch.randn(b, m, d), dim=-1).requires_grad_()
py = torch.nn.functional.normalize(torch.randn(b, m, d), dim=-1).requires_grad_()
wx = torch.randn(b, m).log_softmax(-1).requires_grad_()
wy = torch.randn(b, m).log_softmax(-1).requires_grad_()
sigma = torch.tensor(0.5, requires_grad=True)
P.kme_logits(px[:2], wx[:2], py[:2], wy[:2], sigma).sum().backward()  # warm up allocator, libs
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
P.kme_logits(px, wx, py, wy, sigma).sum().backward()
P.wpse_logits(px, wx, py, wy, sigma, 0.5, 1.0).sum().backward()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"delta_mib": (after - before) / 1024}))
"""


def test_memory_does_not_scale_with_bcmn():
    """B=C=256, M=N=8, d=128: the naive reference holds (B, C, M, N, d) = 2^29 numbers (2 GiB
    fp32), the einsum version 2^22 scores (16 MiB) per tensor, several of them; the chunked ones
    must stay within 48 MiB of extra peak RSS (2 MiB tiles, O(B·C) outputs and gradients,
    O((B+C)·M·d) = 1 MiB operands, and allocator slack)."""
    res = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    delta = json.loads(res.stdout.strip().splitlines()[-1])["delta_mib"]
    assert delta < 48, delta


def test_unknown_kernel_is_rejected():
    px, wx, py, wy = point_sets("random", 2, 2, 2, 2, 3)
    with pytest.raises(ValueError, match="kernel"):
        P.wpse_logits(px, wx, py, wy, 0.5, 0.0, 1.0, "laplace")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this host)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_matches_reference(dtype):
    """On CUDA, `_pairwise._backend` picks the fused Triton kernels (when Triton is installed),
    under the same contract as on CPU; bf16 points are multiplied exactly, in fp32."""
    import importlib.util

    px, wx, py, wy = (t.to(dtype).cuda() for t in point_sets("sphere", 64, 48, 8, 8, 64))
    has_triton = importlib.util.find_spec("triton") is not None
    assert P._backend(px) == ("triton" if has_triton else "chunked")
    ref = P.kme_logits_naive(*(t.double() for t in (px, wx, py, wy)), 0.5)
    out = P.kme_logits(px, wx, py, wy, 0.5)
    assert out.dtype == torch.float32
    assert ((out.double() - ref).abs() / ref.abs().clamp_min(1)).max() <= 1e-5
    refw = P.wpse_logits_naive(*(t.double() for t in (px, wx, py, wy)), 0.5, 0.3, 1.0)
    outw = P.wpse_logits(px, wx, py, wy, 0.5, 0.3, 1.0)
    assert (outw.double() - refw).abs().max() <= 1e-5 * refw.abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_cpu_tensors_take_the_chunked_path(dtype, monkeypatch):
    """On CPU `_backend` answers "chunked" whether or not Triton is installed, the "triton"
    entry is never called, and the logits and gradients are those of the chunked functions, bit
    for bit (the same calls as before the Triton backend existed)."""

    def fail(*args):
        raise AssertionError("the Triton backend ran on CPU tensors")

    monkeypatch.setitem(P._KME, "triton", fail)
    monkeypatch.setitem(P._WPSE, "triton", fail)
    base = [t.to(dtype) for t in point_sets("random", 7, 5, 3, 2, 16)]
    assert P._backend(base[0]) == "chunked"
    dt = torch.float64 if dtype == torch.float64 else torch.float32
    for public, direct in (
        (P.kme_logits, lambda *a: chunked.kme_chunked(*a)),
        (
            lambda *a: P.wpse_logits(*a, 0.3, 1.0, "imq"),
            lambda *a: chunked.wpse_chunked(*a, 0.3, 1.0, "imq"),
        ),
    ):
        ins = [leaf(t) for t in base]
        out = public(*ins, 0.5)
        out.sum().backward()
        ref_ins = [leaf(t) for t in base]
        ref = direct(*(t.to(dt) for t in ref_ins), torch.tensor(0.5, dtype=dt))
        ref.sum().backward()
        assert torch.equal(out, ref)
        assert all(torch.equal(a.grad, b.grad) for a, b in zip(ins, ref_ins, strict=True))


def test_heads_use_the_chunked_reduction(monkeypatch):
    """`KME` and exact `WPSE` go through `_pairwise` at sizes above the heads' small-size dispatch
    (equal to the references, and the memory-bounded Function is what runs)."""
    from pmilab.similarity import KME, WPSE

    calls = []
    for name in ("BlockLogSumExp", "BlockWeightedKernelSum"):
        fn = getattr(chunked, name)
        monkeypatch.setattr(
            fn, "apply", lambda *a, _f=fn.apply, _n=name: calls.append(_n) or _f(*a)
        )
    # above the heads' small-size dispatch to the references (similarity.base.use_reference)
    px, wx, py, wy = (t.float() for t in point_sets("sphere", 32, 32, 4, 4, 32))
    ref = P.kme_logits_naive(*(t.double() for t in (px, wx, py, wy)), 0.5)
    out = KME(sigma=0.5).logit_matrix(px, wx, py, wy)
    assert ((out.double() - ref).abs() / ref.abs().clamp_min(1)).max() <= 1e-5
    head = WPSE(sigma=0.5, alpha_linear=0.2)
    refw = head.scale().double() * P.wpse_logits_naive(
        *(t.double() for t in (px, wx, py, wy)), 0.5, 0.2, 1.0
    )
    assert (
        head.logit_matrix(px, wx, py, wy).double() - refw
    ).abs().max() <= 1e-5 * refw.abs().max()
    assert calls == ["BlockLogSumExp", "BlockWeightedKernelSum"]

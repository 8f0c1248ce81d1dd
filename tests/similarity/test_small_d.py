"""The small-d squared distances (`_pairwise.pair_sq_dists`, d <= SMALL_D) are the materialised
ones bit for bit: values, and gradients through the KME / WPSE logits and an InfoNCE-like loss.

Reference: `_pairwise._sq_dists_materialised` (the code before: (x - y).pow(2).sum(-1) on the
(B, C, M, N, d) difference). Controls: a version that drops a coordinate, and the plain-autograd
coordinate loop (same forward, gradients reduced per coordinate), both caught by the same check.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pmilab.similarity import _pairwise as P


def _inputs(b, c, m, n, d, dtype, seed, strided):
    g = torch.Generator().manual_seed(seed)
    if strided:  # points sliced from (.., d + 1), as `encoders.PointSetEncoder` returns them
        px = torch.randn(b, m, d + 1, generator=g, dtype=dtype)[..., :d]
    else:
        px = torch.randn(b, m, d, generator=g, dtype=dtype)
    py = torch.randn(c, n, d, generator=g, dtype=dtype)
    wx, wy = (
        torch.randn(b, m, generator=g, dtype=dtype),
        torch.randn(c, n, generator=g, dtype=dtype),
    )
    return px, wx, py, wy


def _loss_and_grads(dists, head, px, wx, py, wy):
    """Logits from `dists`, a two-sided softmax loss, and its gradients wrt every input."""
    leaves = [t.detach().clone().requires_grad_() for t in (px, wx, py, wy)]
    log_sigma = torch.tensor(-0.4, dtype=px.dtype, requires_grad=True)
    a, wa, b_, wb = leaves
    d2 = dists(a, b_)
    if head == "kme":
        logits = P._kme_from_sq_dists(d2, wa, wb, log_sigma.exp())
    else:  # gaussian and IMQ kernels, with a linear term (px takes two gradient paths)
        kernel = "gaussian" if head == "wpse" else "imq"
        logits = P._wpse_from_sq_dists(d2, a, wa, b_, wb, log_sigma.exp(), 0.3, 1.0, kernel)
    loss = -(logits.log_softmax(1).sum() + logits.log_softmax(0).sum())
    loss.backward()
    return [d2.detach(), logits.detach()] + [t.grad for t in (*leaves, log_sigma)]


def _identical(dists, ref, *args) -> bool:
    return all(torch.equal(u, v) for u, v in zip(dists(*args), ref(*args), strict=True))


def _check(dists, head, *inputs) -> bool:
    return _identical(
        lambda *a: _loss_and_grads(dists, head, *a),
        lambda *a: _loss_and_grads(P._sq_dists_materialised, head, *a),
        *inputs,
    )


@settings(max_examples=60, deadline=None)
@given(
    b=st.integers(1, 12),
    c=st.integers(1, 12),
    m=st.integers(1, 17),
    n=st.integers(1, 17),
    d=st.integers(1, P.SMALL_D + 1),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    head=st.sampled_from(["kme", "wpse", "imq"]),
    strided=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_small_d_is_the_materialised_reference_bit_for_bit(
    b, c, m, n, d, dtype, head, strided, seed
):
    inputs = _inputs(b, c, m, n, d, dtype, seed, strided)
    assert _check(P.sq_dists, head, *inputs)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", range(1, 9))
def test_every_d_at_the_benchmark_size(d, dtype, threads):
    """B = 24, C = 20, M = N = 8 (the profiled KME step), d = 1..8: identical, both thread
    counts (above the threshold `pair_sq_dists` is the reference itself)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for head in ("kme", "wpse"):
            assert _check(P.sq_dists, head, *_inputs(24, 20, 8, 8, d, dtype, d, strided=True))
    finally:
        torch.set_num_threads(prev)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", range(1, P.SMALL_D + 1))
def test_paired_distances_bit_for_bit(d, dtype):
    """The heads' `paired_logits` shape (B, M, N), through KME's logsumexp."""
    px, _, py, _ = _inputs(16, 16, 8, 5, d, dtype, 7, strided=True)

    def run(fn):
        a, b = px.clone().requires_grad_(), py.clone().requires_grad_()
        d2 = fn(a[:, :, None, :], b[:, None, :, :])
        torch.logsumexp(-d2.flatten(1), -1).sum().backward()
        return d2.detach(), a.grad, b.grad

    def materialised(x, y):
        return (x - y).pow(2).sum(-1)

    assert all(map(torch.equal, run(P.pair_sq_dists), run(materialised)))


def test_the_small_d_path_is_taken():
    """The custom Function runs for 2 <= d <= SMALL_D, the reference otherwise (else the tests
    above would compare the reference with itself)."""
    px, _, py, _ = _inputs(3, 4, 2, 2, P.SMALL_D, torch.float32, 0, strided=False)
    a = px.requires_grad_()
    assert type(P.sq_dists(a, py).grad_fn).__name__ == "_SmallDSqDistsBackward"
    big = torch.randn(3, 2, P.SMALL_D + 1, requires_grad=True)
    assert type(P.sq_dists(big, big.detach()).grad_fn).__name__ == "SumBackward1"


def _drop_last_coordinate(px, py):
    return P.sq_dists(px[..., :-1], py[..., :-1]) if px.shape[-1] > 1 else P.sq_dists(px, py) * 0


def _per_coordinate_autograd(px, py):
    """Same forward values; plain autograd reduces each coordinate's gradient on its own."""
    out = None
    for k in range(px.shape[-1]):
        t = (px[:, None, :, None, k] - py[None, :, None, :, k]).pow(2)
        out = t if out is None else out + t
    return out


@pytest.mark.parametrize("control", [_drop_last_coordinate, _per_coordinate_autograd])
def test_negative_controls_fail_the_check(control):
    """The check catches a missing coordinate (values) and a different summation order of the
    gradients (the reason `_SmallDSqDists` has its own backward)."""
    inputs = _inputs(24, 20, 8, 8, 2, torch.float32, 0, strided=True)
    assert _check(P.sq_dists, "kme", *inputs)
    assert not _check(control, "kme", *inputs)

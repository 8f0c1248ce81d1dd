"""The comparison in harness.py can fail: injected errors of 3x the tolerance are caught.

A test that cannot fail proves nothing. Here the same `harness.check` the kernel tests use is
run on the Triton KME head with one thing deliberately wrong: one element of a gradient off by
3·tol in the harness's own metric (each input in turn), the logits shifted by 3·tol, or a kernel
launched with tiles that do not cover d (a tiling bug: the dot products miss the last
coordinates). Each must raise; the same perturbations at tol/3 must not (the tolerance, not
noise, decides).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.similarity.triton.conftest import SKIP_REASON

pytest.importorskip("triton", reason=SKIP_REASON)

from pmilab.similarity import _triton_common as common  # noqa: E402
from tests.similarity.triton import harness as H  # noqa: E402

TOL = H.GRAD_TOL[torch.float32]
SHAPE = (19, 23, 3, 2, 20)  # ragged, M ≠ N


class _AddToGrad(torch.autograd.Function):
    """Identity forward; backward adds `delta` to the gradient (an injected error)."""

    @staticmethod
    def forward(ctx, t, delta):
        ctx.save_for_backward(delta)
        return t.view_as(t)

    @staticmethod
    def backward(ctx, g):
        (delta,) = ctx.saved_tensors
        return g + delta.to(g), None


def _with_wrong_grad(fn, index: int, size: float):
    """fn, with `size` added to one element of the gradient of input `index`: an error of
    exactly size / norm in the harness's metric."""

    def wrong(*args):
        args = list(args)
        delta = torch.zeros_like(args[index], dtype=torch.float64)
        delta.view(-1)[0] = size
        args[index] = _AddToGrad.apply(args[index], delta)
        return fn(*args)

    return wrong


def _with_wrong_logits(fn, rel: float):
    def wrong(*args):
        out = fn(*args)
        return out + rel * out.detach().abs().clamp_min(1.0)  # KME's metric: |Δℓ|/max(1, |ℓ|)

    return wrong


@pytest.mark.parametrize("index", range(5), ids=list(H.NAMES[:5]))
def test_a_wrong_gradient_is_caught(index, device):
    head = H.kme_head()
    pts = H.inputs(head, "random", *SHAPE)
    norm = H.gradient_norms(head, pts, 0.7, torch.float32)[H.NAMES[index]]
    wrong = _with_wrong_grad(head.triton, index, 3 * TOL * norm)
    with pytest.raises(AssertionError, match=H.NAMES[index]):
        H.check(head, pts, 0.7, torch.float32, device, fn=wrong)
    slight = _with_wrong_grad(head.triton, index, TOL / 3 * norm)
    H.check(head, pts, 0.7, torch.float32, device, fn=slight)


def test_wrong_logits_are_caught(device):
    head = H.kme_head()
    pts = H.inputs(head, "random", *SHAPE)
    fwd_tol = H.FWD_TOL[torch.float32]
    with pytest.raises(AssertionError, match="forward"):
        H.check(
            head, pts, 0.7, torch.float32, device, fn=_with_wrong_logits(head.triton, 3 * fwd_tol)
        )
    H.check(head, pts, 0.7, torch.float32, device, fn=_with_wrong_logits(head.triton, fwd_tol / 3))


@pytest.mark.parametrize(
    ("head", "kind"),
    [(H.kme_head(), "random"), (H.wpse_head("gaussian"), "sphere")],
    ids=["kme", "wpse"],
)
def test_a_tiling_bug_is_caught(head, kind, device, monkeypatch):
    """BLOCK_D = 16 < d = 20: the kernels silently drop coordinates 16..19 of every point.

    The wrong values themselves must be seen, in the forward pass. WPSE runs on "sphere"
    points: on "random" points at σ = 0.7 every kernel value (~e^-40) is below what the
    expansion resolves, so every pair is recomputed exactly (`_splice`) and the kernel's values
    never reach the output. There the control used to be caught only through the backward's
    unwritten gradient coordinates: NaN in uninitialised CPU memory, but on an H200 the caching
    allocator's stale, finite memory, and the control passed (first GPU run).
    """
    pts = H.inputs(head, kind, *SHAPE)
    right = _forward_error(head, pts, device)
    tiles = common.tiles
    monkeypatch.setattr(common, "tiles", lambda *a: dataclasses.replace(tiles(*a), block_d=16))
    import pmilab.similarity._triton_kme as K
    import pmilab.similarity._triton_wpse as W

    monkeypatch.setattr(K, "tiles", common.tiles)
    monkeypatch.setattr(W, "tiles", common.tiles)
    fwd_tol = H.FWD_TOL[torch.float32]
    assert right <= fwd_tol < _forward_error(head, pts, device) / 100
    with pytest.raises(AssertionError):
        H.check(head, pts, 0.7, torch.float32, device)


def _forward_error(head, pts, device) -> float:
    """The harness's forward metric for fp32 inputs at σ = 0.7, forward pass only."""
    args = [*pts, torch.tensor(0.7, dtype=torch.float64)]
    args += [torch.tensor(a, dtype=torch.float64) for a in head.alphas]
    refs = [t.float().double() for t in args]
    with torch.no_grad():
        out = head.triton(*[t.float().to(device) for t in args]).cpu().double()
        return ((out - head.reference(*refs)).abs() / head.scale(*refs)).max().item()

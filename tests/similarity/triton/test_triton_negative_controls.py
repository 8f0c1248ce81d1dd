"""The comparison in harness.py can fail: injected errors of 3x the tolerance are caught.

A test that cannot fail proves nothing. Here the same `harness.check` the kernel tests use is
run on the Triton KME head with one thing deliberately wrong: a gradient scaled by 1 + 3·tol (each
input in turn), the logits shifted by 3·tol in the harness's own metric, or a kernel launched
with tiles that do not cover d (a tiling bug: the dot products miss the last coordinates). Each
must raise; the same perturbations at tol/3 must not (the tolerance, not noise, decides).
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


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by `factor` (an injected error)."""

    @staticmethod
    def forward(ctx, t, factor: float):
        ctx.factor = factor
        return t.view_as(t)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.factor, None


def _with_wrong_grad(fn, index: int, factor: float):
    def wrong(*args):
        args = list(args)
        args[index] = _ScaleGrad.apply(args[index], factor)
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
    wrong = _with_wrong_grad(head.triton, index, 1 + 3 * TOL)
    with pytest.raises(AssertionError, match=H.NAMES[index]):
        H.check(head, pts, 0.7, torch.float32, device, fn=wrong)
    H.check(
        head, pts, 0.7, torch.float32, device, fn=_with_wrong_grad(head.triton, index, 1 + TOL / 3)
    )


def test_wrong_logits_are_caught(device):
    head = H.kme_head()
    pts = H.inputs(head, "random", *SHAPE)
    fwd_tol = H.FWD_TOL[torch.float32]
    with pytest.raises(AssertionError, match="forward"):
        H.check(
            head, pts, 0.7, torch.float32, device, fn=_with_wrong_logits(head.triton, 3 * fwd_tol)
        )
    H.check(head, pts, 0.7, torch.float32, device, fn=_with_wrong_logits(head.triton, fwd_tol / 3))


@pytest.mark.parametrize("head", [H.kme_head(), H.wpse_head("gaussian")], ids=["kme", "wpse"])
def test_a_tiling_bug_is_caught(head, device, monkeypatch):
    """BLOCK_D = 16 < d = 20: the kernels silently drop coordinates 16..19 of every point."""
    tiles = common.tiles
    monkeypatch.setattr(common, "tiles", lambda *a: dataclasses.replace(tiles(*a), block_d=16))
    import pmilab.similarity._triton_kme as K
    import pmilab.similarity._triton_wpse as W

    monkeypatch.setattr(K, "tiles", common.tiles)
    monkeypatch.setattr(W, "tiles", common.tiles)
    with pytest.raises(AssertionError):
        H.check(head, H.inputs(head, "random", *SHAPE), 0.7, torch.float32, device)

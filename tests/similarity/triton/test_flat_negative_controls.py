"""The checks of test_flat_heads.py can fail on the flattened kernels (issue 27).

As test_triton_negative_controls.py does for the tiled kernels: the same `harness.check`, run on
a flattened head with one thing deliberately wrong, must raise at twice its tolerance and pass
at half of it (the tolerance, not noise, decides): one element of each gradient, the logits.
And two broken tilings must fail it: tiles that do not cover d (the dot products miss the last
coordinates), and sub-blocks of half the padded set size (the tile's rows mix two sets' points
and drop the rest: a wrong flattening).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.similarity.triton.conftest import SKIP_REASON

pytest.importorskip("triton", reason=SKIP_REASON)

from tests.similarity.triton import harness as H  # noqa: E402
from tests.similarity.triton.test_triton_negative_controls import (  # noqa: E402
    _forward_error,
    _with_wrong_grad,
    _with_wrong_logits,
)

TOL = H.GRAD_TOL[torch.float32]
SHAPE = (19, 23, 3, 2, 20)  # ragged, M ≠ N, M = 3 padded to 4, d = 20 padded to 32


# every input on the two-pass backward; on the one-pass (atomic) one the inputs whose gradients
# it computes differently (the columns' points and weights, σ's sums over them)
CASES = [(i, False) for i in range(5)] + [(i, True) for i in (2, 3, 4)]


@pytest.mark.parametrize(
    ("index", "atomic"),
    CASES,
    ids=[f"{H.NAMES[i]}-{'atomic' if a else 'two-pass'}" for i, a in CASES],
)
def test_a_wrong_gradient_is_caught(index, atomic, device):
    head = H.flat_kme_head(atomic)
    pts = H.inputs(head, "random", *SHAPE)
    norm = H.gradient_norms(head, pts, 0.7, torch.float32)[H.NAMES[index]]
    wrong = _with_wrong_grad(head.triton, index, 2 * TOL * norm)
    with pytest.raises(AssertionError, match=H.NAMES[index]):
        H.check(head, pts, 0.7, torch.float32, device, fn=wrong)
    slight = _with_wrong_grad(head.triton, index, TOL / 2 * norm)
    H.check(head, pts, 0.7, torch.float32, device, fn=slight)


def test_wrong_logits_are_caught(device):
    head = H.flat_kme_head()
    pts = H.inputs(head, "random", *SHAPE)
    tol = H.FWD_TOL[torch.float32]
    with pytest.raises(AssertionError, match="forward"):
        H.check(head, pts, 0.7, torch.float32, device, fn=_with_wrong_logits(head.triton, 2 * tol))
    H.check(head, pts, 0.7, torch.float32, device, fn=_with_wrong_logits(head.triton, tol / 2))


def _short_d(t):
    return dataclasses.replace(t, block_d=16)  # d = 20: coordinates 16..19 dropped


def _half_sets(t):
    return dataclasses.replace(t, mp=t.mp // 2)  # M = 3: sub-blocks of 2 rows, not 4


@pytest.mark.parametrize("broken", [_short_d, _half_sets], ids=["short-d", "half-sets"])
@pytest.mark.parametrize(
    ("make", "kind"),
    [(H.flat_kme_head, "random"), (lambda: H.flat_wpse_head("gaussian"), "sphere")],
    ids=["kme", "wpse"],
)
def test_a_tiling_bug_is_caught(make, kind, broken, device, monkeypatch):
    """The wrong values must be seen in the forward pass itself (> 100× the tolerance), and the
    check must fail. WPSE on "sphere" points, whose kernel values the expansion resolves (see
    test_triton_negative_controls.py: on "random" ones every pair is recomputed exactly)."""
    from pmilab.similarity import _triton_flat_kme as FK
    from pmilab.similarity import _triton_flat_wpse as FW

    head = make()
    pts = H.inputs(head, kind, *SHAPE)
    right = _forward_error(head, pts, device)
    for module in (FK, FW):
        tiles = module.flat_tiles
        monkeypatch.setattr(module, "flat_tiles", lambda *a, _t=tiles: broken(_t(*a)))
    tol = H.FWD_TOL[torch.float32]
    assert right <= tol < _forward_error(head, pts, device) / 100
    with pytest.raises(AssertionError):
        H.check(head, pts, 0.7, torch.float32, device)

"""vmap over R stacked replicates of the KME and WPSE heads equals R separate calls, bit for bit:
logits and gradients (autograd outside vmap, as the trainer does), on the memory-bounded chunked
path (its block Functions' vmap rule, `_pairwise_blocks.per_replicate`, and the per-replicate
splice of flagged pairs, `_pairwise_chunked.unbatched`) and on the small-d reference path.

Reference: the same head called on each replicate's slice. Control: a vmap rule that runs
replicate 0 for every replicate fails the same check.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import vmap

from pmilab.similarity import KME, WPSE, _pairwise_blocks, base

R = 3


def _stacked(b, m, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(R, b, m, d), (R, b, m), (R, b, m, d), (R, b, m)]
    return [torch.randn(*s, generator=g, dtype=dtype) for s in shapes]


def _heads():
    return [KME(sigma=0.5), WPSE(sigma=0.5, alpha_linear=0.2), WPSE(sigma=0.7, kernel="imq")]


def _vmapped(head, ins, w):
    leaves = [t.clone().requires_grad_() for t in ins]
    out = vmap(head.logit_matrix)(*leaves)
    (out * w).sum().backward()
    return [out.detach()] + [t.grad for t in leaves]


def _separate(head, ins, w):
    outs, grads = [], [[] for _ in ins]
    for r in range(R):
        leaves = [t[r].clone().requires_grad_() for t in ins]
        out = head.logit_matrix(*leaves)
        (out * w[r]).sum().backward()
        outs.append(out.detach())
        for acc, t in zip(grads, leaves, strict=True):
            acc.append(t.grad)
    return [torch.stack(outs)] + [torch.stack(g) for g in grads]


def _tolerance(head, dtype) -> float:
    """0 (bit for bit), except WPSE's linear term: vmap batches its einsum (a batched GEMM, not
    a Function of ours), whose backward sums in another order: the weights' float64 gradients
    measured 2e-16 relative apart. Everything else is per replicate, hence identical."""
    if isinstance(head, WPSE) and head.alpha_linear != 0:
        return 1e-6 if dtype == torch.float32 else 1e-12
    return 0.0


def _same(head, ins) -> bool:
    w = torch.randn(R, ins[0].shape[1], ins[2].shape[1], dtype=ins[0].dtype)
    tol = _tolerance(head, ins[0].dtype)
    pairs = zip(_vmapped(head, ins, w), _separate(head, ins, w), strict=True)
    return all(_within(a, b, tol) for a, b in pairs)


def _within(a, b, tol: float) -> bool:
    """Bit for bit at tol 0, else max |a - b| <= tol · max |b|."""
    if tol == 0:
        return torch.equal(a, b)
    return bool((a - b).abs().max() <= tol * b.abs().max())


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_the_tolerance_rule_fails_at_twice_its_tolerance_and_passes_at_half(dtype, tol):
    """Calibration of `_within`: an error of 2x the tolerance FAILs, one of 0.5x PASSes, and at
    tol 0 a single ulp on one element FAILs."""
    b = torch.randn(5, 7, dtype=dtype, generator=torch.Generator().manual_seed(0))
    scale = float(b.abs().max())
    bump = torch.zeros_like(b)
    bump[2, 3] = scale
    assert not _within(b + 2 * tol * bump, b, tol)
    assert _within(b + 0.5 * tol * bump, b, tol)
    ulp = b.clone()
    ulp[1, 1] = torch.nextafter(ulp[1, 1], torch.tensor(float("inf"), dtype=dtype))
    assert not _within(ulp, b, 0.0) and _within(b.clone(), b, 0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("head", _heads(), ids=["kme", "wpse", "wpse-imq"])
def test_chunked_path_under_vmap(head, dtype):
    ins = _stacked(32, 4, 32, dtype)  # 32·32·4·4·32 > SMALL_PAIRWISE_ELEMENTS: chunked path
    assert not base.use_reference(ins[0][0], ins[2][0])
    assert _same(head, ins)


@pytest.mark.parametrize("head", _heads(), ids=["kme", "wpse", "wpse-imq"])
def test_flagged_pairs_under_vmap(head):
    """Nearly coincident points far from the centre: pairs flagged and recomputed (the
    data-dependent splice), differently per replicate."""
    ins = _stacked(16, 3, 8, torch.float32, seed=1)
    ins[2] = ins[0] + 1e-3 * ins[2]
    ins[0], ins[2] = ins[0] + 300.0, ins[2] + 300.0
    ins[0][1] *= 0.5  # another replicate, other flags
    assert _same(head, ins)


@pytest.mark.parametrize("head", _heads(), ids=["kme", "wpse", "wpse-imq"])
def test_small_d_reference_path_under_vmap(head):
    """Small sizes take the materialising reference, with the small-d Function (d = 2)."""
    ins = _stacked(6, 4, 2, torch.float32)
    assert base.use_reference(ins[0][0], ins[2][0])
    assert _same(head, ins)


def test_negative_control_replicate_zero_everywhere(monkeypatch):
    """A vmap rule that ignores the replicate index fails the check the tests above pass."""
    ins = _stacked(32, 4, 32, torch.float32)
    head = KME(sigma=0.5)
    assert _same(head, ins)

    def wrong(fn, info, in_dims, args):
        first = [a if d is None else a.select(d, 0) for a, d in zip(args, in_dims, strict=True)]
        out = fn.apply(*first)
        return tuple(o.expand(info.batch_size, *o.shape) for o in out), (0,) * len(out)

    monkeypatch.setattr(_pairwise_blocks, "per_replicate", wrong)
    assert not _same(head, ins)

"""Direct-difference evaluation of chosen (i, j) pairs, for the pairs the GEMM expansion cannot resolve.

The fast path writes ‖u − v‖² = ‖u‖² + ‖v‖² − 2⟨u, v⟩. When the points are far from each other's
scale (tiny σ, large norms, nearly equal points) the expansion cancels catastrophically: its
rounding error is about eps · (‖u‖² + ‖v‖²)/σ², independent of how close u and v are. The callers
estimate that error per pair and send the pairs where it exceeds the tolerance here, where
u − v is formed directly (relative error ~eps per score, as in the brute-force reference).

Memory stays bounded: pairs are processed in chunks of ≤ CHUNK_ELEMS (pair, a, b, d) numbers and
each chunk is recomputed in backward (`torch.utils.checkpoint`), so only the inputs, the pair
indices and the (K,) results are kept.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

# 2**22 numbers (16 MiB fp32) per chunk of the (K, M, N, d) difference tensor.
CHUNK_ELEMS = 1 << 22


def pair_sq_dists(px: Tensor, py: Tensor, ii: Tensor, jj: Tensor) -> Tensor:
    """(K, M, N) squared distances between the point sets px[ii] and py[jj], by differences."""
    return (px[ii][:, :, None, :] - py[jj][:, None, :, :]).pow(2).sum(-1)


def kme_pairs(px, wx, py, wy, inv_s2, ii, jj) -> Tensor:
    """(K,) KME logits of the pairs (ii[k], jj[k]); inv_s2 = 1/σ²."""
    z = wx[ii][:, :, None] + wy[jj][:, None, :] - pair_sq_dists(px, py, ii, jj) * (inv_s2 / 2)
    return torch.logsumexp(z.flatten(1), dim=-1)


def kernel_sum_pairs(px, wx, py, wy, inv_s2, ii, jj, kernel: str) -> Tensor:
    """(K,) Σ_ab wx wy k(u_a, v_b) for the pairs (ii[k], jj[k]), unnormalised; inv_s2 = 1/σ²."""
    d2 = pair_sq_dists(px, py, ii, jj)  # (K, M, N)
    k = torch.exp(-d2 * (inv_s2 / 2)) if kernel == "gaussian" else torch.rsqrt(1 + d2 * inv_s2)
    return torch.einsum("ka,kb,kab->k", wx[ii], wy[jj], k)


def chunked_pairs(fn: Callable[..., Tensor], ii: Tensor, jj: Tensor, *args, per_pair: int):
    """Concatenate fn(*args, ii_chunk, jj_chunk) over chunks of ≤ CHUNK_ELEMS // per_pair pairs.

    Under autograd each chunk is checkpointed: its (K, M, N, d) temporaries are freed after the
    forward and rebuilt in backward.
    """
    step = max(1, CHUNK_ELEMS // max(1, per_pair))
    grad = torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in args)
    outs = []
    for k0 in range(0, ii.numel(), step):
        ic, jc = ii[k0 : k0 + step], jj[k0 : k0 + step]
        if grad:
            outs.append(checkpoint(fn, *args, ic, jc, use_reentrant=False))
        else:
            outs.append(fn(*args, ic, jc))
    return torch.cat(outs)

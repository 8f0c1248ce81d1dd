"""The memory-bounded CPU/GPU implementation of the KME and WPSE reductions (docs/theory.md T2).

Each reduction is turned into a block reduction of a rank-(d+2) score matrix (see
`_pairwise_blocks`): with p, q the points after subtracting one common centre (distances do not
change; the centre is detached because the value does not depend on it) and r = 1/σ,

    KME:   wx_a + wy_b − ‖p_a − q_b‖²/(2σ²) = ⟨[r p_a, wx_a − ‖p_a‖²r²/2, 1], [r q_b, 1, wy_b − ‖q_b‖²r²/2]⟩
    Gauss: −‖p_a − q_b‖²/(2σ²)              = ⟨[r p_a, −‖p_a‖²r²/2, 1],       [r q_b, 1, −‖q_b‖²r²/2]⟩
    IMQ:   1 + ‖p_a − q_b‖²/σ²               = ⟨[r p_a, 1 + ‖p_a‖²r², 1],      [−2 r q_b, 1, ‖q_b‖²r²]⟩

so all (i, j, a, b) scores come out of one GEMM per tile, at the GEMM's rate (KME also subtracts
each set's largest log-weight, added back outside, so its scores are ≤ 0). Everything outside
the block Functions is ordinary autograd on O((B + C)·M·d) tensors, which is how σ, the weights
and the α's get their gradients. With M = N = 1 there is one score per pair and plain autograd
on (B, C) tensors does it.

Cancellation: the expansion's rounding error on a score is about eps·(ROUNDING·S_ij + EXTRA),
with S_ij the largest sum of absolute terms of that pair's dot products. Pairs whose estimated
error exceeds the tolerance are recomputed from direct differences (`_pairwise_exact`); on
typical inputs there are none, at tiny σ or for nearly coincident points far from the centre
there are some or all. WPSE's flagged fp32 pairs first get the float64 expansion, a block
reduction at a GEMM's rate (`resolve_kernel_sums`), and only what it cannot resolve the
differences: unnormalised points in high dimension flag every fp32 pair.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from pmilab.errors import InputError
from pmilab.similarity._pairwise_blocks import BlockLogSumExp, BlockWeightedKernelSum
from pmilab.similarity._pairwise_exact import chunked_pairs, kernel_sum_pairs, kme_pairs

# Estimated rounding error of the expansion, in units of eps:  ROUNDING · S + EXTRA, with S the
# largest sum of |terms| of a pair's dot products. Measured max of |error| / (eps·(S + EXTRA)) over
# random, unit-norm and nearly duplicated point sets (the cancelling case), d = 8..256,
# σ = 1e-3..1e3, log-weights up to 1e4: 1.33; ROUNDING = 2 leaves 1.5x. (Far-apart sets reach
# 3.2, but there |ℓ| ≈ S, so their relative error stays ~3 eps and they are never near the
# threshold.) EXTRA covers the exp/log/sum roundings.
ROUNDING = 2.0
EXTRA = 8.0


# A pair is recomputed from direct differences when its estimated error exceeds this. KME: on
# |Δℓ| / max(1, |ℓ|), 2x under the 1e-5 contract. WPSE: on the relative error of each kernel
# value, at the contract itself (the estimate already has 1.5x margin; a tighter threshold would
# send all pairs of ordinary inputs, e.g. unit-norm points in d = 256 with σ = 0.3, to the
# slow path).
KME_TOL = {torch.float32: 5e-6, torch.float64: 5e-11}
WPSE_TOL = {torch.float32: 1e-5, torch.float64: 1e-10}

# WPSE pairs the fp32 expansion cannot resolve get the float64 expansion first, one dense block
# reduction over the rows and columns that hold them, when they are at least this fraction of
# that block; the pairs even float64 cannot resolve (tiny σ, near-duplicates far from the centre)
# and sparse ones go to the direct differences. Measured on the 2-core CPU (B = C = 128, M = N = 8,
# d = 256, every pair flagged, fwd+bwd; benchmarks/results/wpse_resolution.md): direct
# differences 75 µs per pair, the float64 block 2.3 µs (the fp32 pass included): even near 3%.
DENSE_FP64_FRACTION = 0.03


def _estimate(s: Tensor, dtype: torch.dtype) -> Tensor:
    """Estimated absolute error of a score from S (B, C)."""
    return torch.finfo(dtype).eps * (ROUNDING * s + EXTRA)


def _centred(px: Tensor, py: Tensor) -> tuple[Tensor, Tensor]:
    """Subtract the (detached) mean of all points; ‖p − q‖ is unchanged, norms shrink."""
    centre = torch.cat([px.flatten(0, 1), py.flatten(0, 1)]).mean(0).detach()  # (d,)
    return px - centre, py - centre


def _rows(p: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """(S, K, d), (S, K), (S, K) -> (S·K, k): the GEMM operand [p, first, second, 0…].

    Zero columns pad k = d + 2 to a multiple of 8: the CPU GEMMs of the backward pass run ~10%
    faster at k = 72 than at k = 66 (measured), more than paying for the 9% extra FLOPs.
    """
    pad = -(p.shape[-1] + 2) % 8
    cols = [p, first[..., None], second[..., None]]
    if pad:
        cols.append(p.new_zeros(*p.shape[:-1], pad))
    return torch.cat(cols, dim=-1).flatten(0, 1)


class _PerReplicate(torch.autograd.Function):
    """fn(*tensors) under vmap, run once per replicate with autograd outside vmap recording it:
    for the steps whose control flow depends on the values (which pairs are flagged), which vmap
    cannot batch. Outside vmap `unbatched` calls fn directly; forward/backward exist only because
    torch requires them (a transform below vmap, e.g. torch.func.grad inside vmap, is refused)."""

    @staticmethod
    def forward(fn, *tensors):
        return fn(*tensors)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, *grads):
        raise InputError(
            "torch.func.grad inside vmap is not supported by the point-set heads' memory-bounded"
            " path; use vmap with autograd outside it (vmap(loss)(params).sum().backward())"
        )

    @staticmethod
    def vmap(info, in_dims, fn, *tensors):
        dims = in_dims[1:]
        outs = [
            fn(*(t if d is None else t.select(d, r) for t, d in zip(tensors, dims, strict=True)))
            for r in range(info.batch_size)
        ]
        return torch.stack(outs), 0


def unbatched(fn, *tensors: Tensor) -> Tensor:
    """fn(*tensors) -> Tensor, once per replicate when vmap batches any of the tensors."""
    if any(torch._C._functorch.is_batchedtensor(t) for t in tensors):
        return _PerReplicate.apply(fn, *tensors)
    return fn(*tensors)


def refuse_functorch() -> None:
    """The fused Triton Functions have no vmap rule (they are not runnable here to check one):
    under torch.func transforms say so in one sentence instead of torch's generic error."""
    if torch._C._are_functorch_transforms_active():
        raise InputError(
            "the fused Triton point-set kernels do not support torch.func transforms (vmap, grad);"
            " run the heads on CPU or in float64, which take the chunked path, to vmap them"
        )


def _splice(out: Tensor, bad: Tensor, fn, args: tuple, per_pair: int) -> Tensor:
    """Replace the flagged entries of out (B, C) by fn evaluated on those pairs (per replicate
    under vmap: which pairs are flagged decides the shapes)."""
    return unbatched(partial(_splice_one, fn=fn, per_pair=per_pair), out, bad, *args)


def _splice_one(out: Tensor, bad: Tensor, *args: Tensor, fn, per_pair: int) -> Tensor:
    if not bool(bad.any()):
        return out
    ii, jj = bad.nonzero(as_tuple=True)
    vals = chunked_pairs(fn, ii, jj, *args, per_pair=per_pair)
    return out.index_put((ii, jj), vals.to(out.dtype))


def _scale_terms(pn: Tensor, qn: Tensor, inv_s2: Tensor) -> Tensor:
    """(B, C) inv_s2 · max‖p_a‖ · max‖q_b‖: the largest |⟨r p_a, r q_b⟩| of each pair."""
    return inv_s2 * pn.amax(1).sqrt()[:, None] * qn.amax(1).sqrt()[None, :]


def kme_expanded(px: Tensor, wx: Tensor, py: Tensor, wy: Tensor, inv_s2: Tensor):
    """The GEMM-expansion KME logits (B, C) and their estimated absolute rounding error (B, C)."""
    m, n = px.shape[1], py.shape[1]
    p, q = _centred(px, py)
    pn, qn = p.pow(2).sum(-1), q.pow(2).sum(-1)  # (B, M), (C, N)
    # scores minus the largest log-weights of each set: ≤ 0, and the shift leaves ℓ unchanged
    # (it is added back, detached: ∂ℓ/∂shift = 1 − Σ softmax = 0)
    ux, uy = wx.detach().amax(1), wy.detach().amax(1)  # (B,), (C,)
    ax = wx - ux[:, None] - pn * (inv_s2 / 2)
    ay = wy - uy[:, None] - qn * (inv_s2 / 2)
    r = inv_s2.sqrt()
    a = _rows(p * r, ax, torch.ones_like(ax))  # (B·M, d+2)
    bm = _rows(q * r, torch.ones_like(ay), ay)  # (C·N, d+2)
    if m * n == 1:  # one score per pair: it is the logit; (B, C) memory is within the bound
        out = a @ bm.T + ux[:, None] + uy[None, :]
    else:
        out = BlockLogSumExp.apply(a, bm, m, n)[0] + ux[:, None] + uy[None, :]  # (B, C)
    with torch.no_grad():
        s = ax.abs().amax(1)[:, None] + ay.abs().amax(1)[None, :] + _scale_terms(pn, qn, inv_s2)
    return out, _estimate(s, out.dtype)


def kme_chunked(px: Tensor, wx: Tensor, py: Tensor, wy: Tensor, sigma: Tensor) -> Tensor:
    """(B, M, d), (B, M), (C, N, d), (C, N), 0-dim σ -> (B, C) KME logits, memory-bounded."""
    m, n = px.shape[1], py.shape[1]
    inv_s2 = sigma.pow(-2)
    out, err = kme_expanded(px, wx, py, wy, inv_s2)
    bad = err > KME_TOL[out.dtype] * out.detach().abs().clamp_min(1.0)
    return _splice(out, bad, kme_pairs, (px, wx, py, wy, inv_s2), m * n * px.shape[2])


def kernel_expanded(px, wx, py, wy, inv_s2: Tensor, kernel: str):
    """The GEMM-expansion Σ_ab wx wy k (B, C) and the estimated relative error of each k (B, C)."""
    p, q = _centred(px, py)
    a, bm, s = _kernel_operands(p, q, inv_s2, kernel)
    d = px.shape[-1]  # A's column d + 1 and Bm's column d are all ones (_kernel_operands)
    if wx.shape[1] * wy.shape[1] == 1:  # one kernel value per pair: plain autograd, (B, C)
        z = a @ bm.T
        k = z.exp() if kernel == "gaussian" else z.clamp_min(1.0).rsqrt()
        ker = wx * k * wy.T
    else:
        ker = BlockWeightedKernelSum.apply(a, bm, wx, wy, kernel, (d + 1, d))  # (B, C)
    return ker, _estimate(s, ker.dtype)


def _kernel_operands(p: Tensor, q: Tensor, inv_s2: Tensor, kernel: str):
    """GEMM operands and the per-pair relative error estimate of k for the Gaussian or IMQ."""
    pn, qn = p.pow(2).sum(-1), q.pow(2).sum(-1)
    r = inv_s2.sqrt()
    if kernel == "gaussian":
        a = _rows(p * r, -pn * (inv_s2 / 2), torch.ones_like(pn))
        bm = _rows(q * r, torch.ones_like(qn), -qn * (inv_s2 / 2))
    else:
        a = _rows(p * r, 1 + pn * inv_s2, torch.ones_like(pn))
        bm = _rows(-2 * r * q, torch.ones_like(qn), qn * inv_s2)
    return a, bm, kernel_score_scale(pn, qn, inv_s2, kernel).detach()


def kernel_score_scale(pn: Tensor, qn: Tensor, inv_s2: Tensor, kernel: str) -> Tensor:
    """(B, C) the size of the terms each pair's expanded kernel score is a sum of, from the
    squared norms pn (B, M), qn (C, N): what its rounding error is relative to (`_estimate`).
    Shared by this path and the Triton kernels (`_triton_wpse`)."""
    s = pn.amax(1)[:, None] + qn.amax(1)[None, :]
    if kernel == "gaussian":
        return s * (inv_s2 / 2) + _scale_terms(pn, qn, inv_s2)
    return 1 + s * inv_s2 + 2 * _scale_terms(pn, qn, inv_s2)


def wpse_chunked(
    px: Tensor,
    wx: Tensor,
    py: Tensor,
    wy: Tensor,
    sigma: Tensor,
    alpha_linear,
    alpha_kernel,
    kernel: str,
) -> Tensor:
    """WPSE similarities (B, C) without the logit scale, memory-bounded; see `_pairwise`."""
    (b, m), (c, n) = px.shape[:2], wy.shape
    out = px.new_zeros(b, c)
    if not _is_zero(alpha_linear):  # Σ_ab wx wy ⟨u_a, v_b⟩ = ⟨Σ_a wx u_a, Σ_b wy v_b⟩
        ex, ey = torch.einsum("bm,bmd->bd", wx, px), torch.einsum("cn,cnd->cd", wy, py)
        out = out + alpha_linear * (ex @ ey.T)
    if not _is_zero(alpha_kernel):
        inv_s2 = sigma.pow(-2)
        ker, err = kernel_expanded(px, wx, py, wy, inv_s2, kernel)
        ker = resolve_kernel_sums(ker, err > WPSE_TOL[ker.dtype], px, wx, py, wy, inv_s2, kernel)
        out = out + alpha_kernel * ker
    return out / (m * n)


def resolve_kernel_sums(ker: Tensor, bad: Tensor, px, wx, py, wy, inv_s2, kernel: str) -> Tensor:
    """Replace the flagged entries of the kernel sums ker (B, C) by values within WPSE_TOL.

    fp32 sums: where the flagged pairs fill at least DENSE_FP64_FRACTION of the block of their
    rows and columns, that block is recomputed by the float64 expansion (a block reduction, at a
    GEMM's rate; its error, eps64·S, resolves all but tiny σ or near-duplicates far from the
    centre); what it still cannot resolve goes to direct differences (`_pairwise_exact`). On
    unnormalised points in high dimension (N(0, 1), d = 256) every fp32 pair is flagged; this
    turns 75 µs per pair into 2.3 µs (CPU, benchmarks/wpse_resolution.py). Shared by the chunked
    path and the Triton kernels.
    """
    fn = partial(_resolve_one, kernel=kernel)
    return unbatched(fn, ker, bad, px, wx, py, wy, inv_s2)


def _resolve_one(ker: Tensor, bad: Tensor, px, wx, py, wy, inv_s2, kernel: str) -> Tensor:
    if ker.dtype != torch.float64 and bool(bad.any()):
        rows, cols = bad.any(1).nonzero().squeeze(1), bad.any(0).nonzero().squeeze(1)
        if bad.sum() >= DENSE_FP64_FRACTION * rows.numel() * cols.numel():
            block = (px[rows].double(), wx[rows].double(), py[cols].double(), wy[cols].double())
            k64, err64 = kernel_expanded(*block, inv_s2.double(), kernel)
            ii, jj = (bad[rows][:, cols] & (err64 <= WPSE_TOL[ker.dtype])).nonzero(as_tuple=True)
            ker = ker.index_put((rows[ii], cols[jj]), k64[ii, jj].to(ker.dtype))
            bad = bad.index_put((rows[ii], cols[jj]), torch.zeros_like(ii, dtype=torch.bool))
    (m, d), n = px.shape[1:], py.shape[1]
    fn = partial(kernel_sum_pairs, kernel=kernel)
    return _splice(ker, bad, fn, (px, wx, py, wy, inv_s2), m * n * d)


def _is_zero(x) -> bool:
    """True for a python number equal to 0 (a tensor always takes part, for its gradient)."""
    return isinstance(x, int | float) and x == 0

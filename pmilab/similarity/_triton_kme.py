"""Fused Triton kernels for the KME logits, forward and backward (docs/theory.md T2).

    ℓ[i,j] = logsumexp_{a,b}( wx[i,a] + wy[j,b] − ‖p_ia − q_jb‖²/(2σ²) )

In base 2, with r = 1/σ² and ux, uy the largest log-weight of each set (a shift added back
outside, so that every score is ≤ 0; ∂ℓ/∂shift = 1 − Σ softmax = 0, as in `_pairwise_chunked`):

    z = c·⟨p_a, q_b⟩ + x_a + y_b,   c = r·log2 e,   x_a = (wx_a − ux − r‖p_a‖²/2)·log2 e  (y alike)
    ℓ = ln 2 · log2 Σ_ab 2^z + ux + uy

Forward (`_kme_fwd`): a program owns a (BLOCK_B, BLOCK_C) tile of ℓ and loops over the point
pairs (a, b), one tl.dot per pair for the tile's ⟨p_a, q_b⟩; the sum s += 2^z stays in
registers. Since z ≤ 0 the sum cannot overflow, and one exp2 per score suffices (at small d the
exp2 unit, not the tensor cores, bounds this loop: benchmarks/README.md). A tile where some sum
leaves [SUM_LO, SUM_HI] (every score of a pair far below 0: far-apart sets, tiny σ) is redone
with FlashAttention's online logsumexp: running max m, s ← s·2^(m − m') + 2^(z − m').

Backward (`_kme_bwd`) recomputes the scores: W = g·softmax = g·2^(z − L2) from the stored
log2-sums L2, on the forward's own tiles and with the forward's own expression (`score_tile`):
at tiny σ the scores reach |z| ~ 1e7, and any other rounding of z − L2 would move W by a
factor 2^(eps·|z|). Per row block and point a, over all columns j and points b: GP = Σ W q,
GX = Σ W; per column block and point b (COLUMNS): GQ = Σ W p, GY = Σ W. Then, on
(B, M, d)-sized tensors in torch:

    ∂ℓ/∂wx = GX,   ∂ℓ/∂p = r (GP − GX p),   ∂ℓ/∂r = Σ W⟨p, q⟩ − ½ Σ GX ‖p‖² − ½ Σ GY ‖q‖²

For bf16/fp16 points the GEMMs for GP, GQ take Ŵ, W rounded to that dtype (the tensor cores'
rate, as FlashAttention's backward), and the points' gradient subtracts Σ Ŵ·p to match; the
weights' and σ's gradients use the fp32 W (σ's through a separate row sum Σ W⟨p, q⟩, since it
cancels between its three terms).

Pairs whose expansion the rounding-error estimate of `_pairwise_chunked` does not trust (tiny σ,
nearly coincident points far from the centre) are recomputed from direct differences
(`_pairwise_exact`), exactly as on the chunked path.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from pmilab.similarity._pairwise_blocks import LN2, LOG2E, SUM_HI, SUM_LO
from pmilab.similarity._pairwise_chunked import (
    KME_TOL,
    _estimate,
    _scale_terms,
    _splice,
    refuse_functorch,
)
from pmilab.similarity._pairwise_exact import kme_pairs
from pmilab.similarity._triton_common import (
    Tiles,
    check_device,
    device_context,
    dot_precision,
    dot_tile,
    interpreted,
    point_operands,
    score_tile,
    splits,
    tiles,
)


@triton.jit
def _kme_fwd(
    P,  # (B, M, D) points, fp32 / bf16 / fp16
    Q,  # (C, N, D)
    X,  # (B, M) fp32 per-point terms x (base 2)
    Y,  # (C, N) fp32
    CP,  # () fp32: c
    OUT,  # (B, C) fp32: L2 = log2 Σ_ab 2^z
    B,
    C,
    D,
    M: tl.constexpr,
    N: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    SUM_LO: tl.constexpr,
    SUM_HI: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_F32: tl.constexpr,  # interpreter only: it cannot multiply bf16 (exact upcast, same result)
):
    rb = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)  # (BB,) rows i
    rc = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)  # (BC,) columns j
    rd = tl.arange(0, BLOCK_D)
    mb, mc, md = rb < B, rc < C, rd < D
    valid = mb[:, None] & mc[None, :]  # (BB, BC)
    c = tl.load(CP)
    s = tl.zeros((BLOCK_B, BLOCK_C), dtype=tl.float32)
    for a in range(M):
        p = tl.load(
            P + (rb[:, None] * M + a) * D + rd[None, :], mask=mb[:, None] & md[None, :], other=0.0
        )
        p = p.to(tl.float32) if DOT_F32 else p
        x = tl.load(X + rb * M + a, mask=mb, other=0.0)  # (BB,)
        for b in range(N):
            q = tl.load(
                Q + (rc[:, None] * N + b) * D + rd[None, :],
                mask=mc[:, None] & md[None, :],
                other=0.0,
            )
            q = q.to(tl.float32) if DOT_F32 else q
            y = tl.load(Y + rc * N + b, mask=mc, other=0.0)  # (BC,)
            s += tl.exp2(score_tile(dot_tile(p, q, PRECISION), x, y, c))
    ok = (s >= SUM_LO) & (s <= SUM_HI)  # False for NaN too
    if tl.sum(tl.where(valid & (ok == 0), 1, 0)) > 0:  # rare: redo with the running max
        mx = tl.full((BLOCK_B, BLOCK_C), -1e30, dtype=tl.float32)  # finite: 2^(m − m') is not NaN
        s = tl.zeros((BLOCK_B, BLOCK_C), dtype=tl.float32)
        for a in range(M):
            p = tl.load(
                P + (rb[:, None] * M + a) * D + rd[None, :],
                mask=mb[:, None] & md[None, :],
                other=0.0,
            )
            p = p.to(tl.float32) if DOT_F32 else p
            x = tl.load(X + rb * M + a, mask=mb, other=0.0)
            for b in range(N):
                q = tl.load(
                    Q + (rc[:, None] * N + b) * D + rd[None, :],
                    mask=mc[:, None] & md[None, :],
                    other=0.0,
                )
                q = q.to(tl.float32) if DOT_F32 else q
                y = tl.load(Y + rc * N + b, mask=mc, other=0.0)
                z = score_tile(dot_tile(p, q, PRECISION), x, y, c)
                new = tl.maximum(mx, z)
                s = s * tl.exp2(mx - new) + tl.exp2(z - new)
                mx = new
        out = mx + tl.log2(tl.where(valid, s, 1.0))  # (lanes outside B×C may hold 0)
    else:
        out = tl.log2(tl.where(valid, s, 1.0))
    tl.store(OUT + rb[:, None].to(tl.int64) * C + rc[None, :], out, mask=valid)


@triton.jit
def _kme_bwd(
    P,  # (B, M, D) points
    Q,  # (C, N, D)
    X,  # (B, M) fp32
    Y,  # (C, N) fp32
    CP,  # () fp32: c
    L,  # (B, C) fp32: the forward's L2
    G,  # (B, C) fp32: upstream gradient
    GO,  # (K, B, M, D) or (K, C, N, D) fp32: partial Σ Ŵ q (rows) or Σ Ŵ p (columns) of split k
    GS,  # (K, B, M, 3) or (K, C, N, 3) fp32: partial Σ W, Σ Ŵ, Σ W⟨p, q⟩ (rows only)
    B,
    C,
    D,
    M: tl.constexpr,
    N: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    COLUMNS: tl.constexpr,  # False: a program owns rows i and a point a; True: columns j, point b
    HALF: tl.constexpr,  # bf16/fp16 points: the GEMM takes Ŵ = W rounded to their dtype
    PRECISION: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    # W = g·2^(z − L2) (BB, BC) on the forward's own tiles, recomputed by `score_tile` exactly as
    # there: at large |z| (tiny σ) any other rounding of z − L2 would move W by eps·|z|.
    # Σ Ŵ goes with Σ Ŵ q into the points' gradient Σ Ŵ (q − p): the same rounding in both terms,
    # so it does not grow with ‖p‖ (bf16 points far from the origin).
    own, pt = tl.program_id(0), tl.program_id(1)  # own block of rows (or columns), own point
    k, nk = tl.program_id(2), tl.num_programs(2)  # this program's split of the other side
    rd = tl.arange(0, BLOCK_D)
    md = rd < D
    c = tl.load(CP)
    if COLUMNS:
        ro = own * BLOCK_C + tl.arange(0, BLOCK_C)  # (BC,) own columns j
        mo = ro < C
        q = tl.load(
            Q + (ro[:, None] * N + pt) * D + rd[None, :], mask=mo[:, None] & md[None, :], other=0.0
        )
        q = q.to(tl.float32) if DOT_F32 else q
        y = tl.load(Y + ro * N + pt, mask=mo, other=0.0)
        acc = tl.zeros((BLOCK_C, BLOCK_D), dtype=tl.float32)  # Σ Ŵ p
        gw = tl.zeros((BLOCK_C,), dtype=tl.float32)  # Σ W
        gh = tl.zeros((BLOCK_C,), dtype=tl.float32)  # Σ Ŵ
        for i0 in range(k * BLOCK_B, B, nk * BLOCK_B):
            rb = i0 + tl.arange(0, BLOCK_B)
            mb = rb < B
            valid = mb[:, None] & mo[None, :]
            at = rb[:, None].to(tl.int64) * C + ro[None, :]
            lt = tl.load(L + at, mask=valid, other=0.0)  # (BB, BC)
            gt = tl.load(G + at, mask=valid, other=0.0)
            for a in range(M):
                p = tl.load(
                    P + (rb[:, None] * M + a) * D + rd[None, :],
                    mask=mb[:, None] & md[None, :],
                    other=0.0,
                )
                p = p.to(tl.float32) if DOT_F32 else p
                x = tl.load(X + rb * M + a, mask=mb, other=0.0)
                z = score_tile(dot_tile(p, q, PRECISION), x, y, c)
                w = tl.where(valid, gt * tl.exp2(z - lt), 0.0)  # (BB, BC)
                wd = w.to(P.dtype.element_ty)  # Ŵ: the tensor cores' dtype
                wr = wd.to(tl.float32)
                acc += tl.dot(tl.trans(wr if DOT_F32 else wd), p, input_precision=PRECISION)
                gw += tl.sum(w, axis=0)
                if HALF:
                    gh += tl.sum(wr, axis=0)
        out = (k * C + ro[:, None].to(tl.int64)) * N + pt  # (BC, 1)
        tl.store(GO + out * D + rd[None, :], acc, mask=mo[:, None] & md[None, :])
        tl.store(GS + ((k * C + ro) * N + pt) * 3, gw, mask=mo)
        tl.store(GS + ((k * C + ro) * N + pt) * 3 + 1, gh if HALF else gw, mask=mo)
    else:
        ro = own * BLOCK_B + tl.arange(0, BLOCK_B)  # (BB,) own rows i
        mo = ro < B
        p = tl.load(
            P + (ro[:, None] * M + pt) * D + rd[None, :], mask=mo[:, None] & md[None, :], other=0.0
        )
        p = p.to(tl.float32) if DOT_F32 else p
        x = tl.load(X + ro * M + pt, mask=mo, other=0.0)
        acc = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float32)  # Σ Ŵ q
        gw = tl.zeros((BLOCK_B,), dtype=tl.float32)  # Σ W
        gh = tl.zeros((BLOCK_B,), dtype=tl.float32)  # Σ Ŵ
        gd = tl.zeros((BLOCK_B,), dtype=tl.float32)  # Σ W ⟨p, q⟩ (σ's gradient: fp32 W)
        for j0 in range(k * BLOCK_C, C, nk * BLOCK_C):
            rc = j0 + tl.arange(0, BLOCK_C)
            mc = rc < C
            valid = mo[:, None] & mc[None, :]
            at = ro[:, None].to(tl.int64) * C + rc[None, :]
            lt = tl.load(L + at, mask=valid, other=0.0)
            gt = tl.load(G + at, mask=valid, other=0.0)
            for b in range(N):
                q = tl.load(
                    Q + (rc[:, None] * N + b) * D + rd[None, :],
                    mask=mc[:, None] & md[None, :],
                    other=0.0,
                )
                q = q.to(tl.float32) if DOT_F32 else q
                y = tl.load(Y + rc * N + b, mask=mc, other=0.0)
                dot = dot_tile(p, q, PRECISION)
                w = tl.where(valid, gt * tl.exp2(score_tile(dot, x, y, c) - lt), 0.0)
                wd = w.to(Q.dtype.element_ty)
                wr = wd.to(tl.float32)
                acc += tl.dot(wr if DOT_F32 else wd, q, input_precision=PRECISION)
                gw += tl.sum(w, axis=1)
                if HALF:
                    gh += tl.sum(wr, axis=1)
                gd += tl.sum(w * dot, axis=1)
        out = (k * B + ro[:, None].to(tl.int64)) * M + pt  # (BB, 1)
        tl.store(GO + out * D + rd[None, :], acc, mask=mo[:, None] & md[None, :])
        tl.store(GS + ((k * B + ro) * M + pt) * 3, gw, mask=mo)
        tl.store(GS + ((k * B + ro) * M + pt) * 3 + 1, gh if HALF else gw, mask=mo)
        tl.store(GS + ((k * B + ro) * M + pt) * 3 + 2, gd, mask=mo)


def _forward(p: Tensor, q: Tensor, x: Tensor, y: Tensor, c: Tensor, t: Tiles) -> Tensor:
    """(B, M, d), (C, N, d), (B, M), (C, N), () -> (B, C) L2 = log2 Σ_ab 2^z."""
    (b, m, d), (cc, n, _) = p.shape, q.shape
    check_device(_kme_fwd, p)
    out = torch.empty(b, cc, device=p.device, dtype=torch.float32)
    grid = (triton.cdiv(b, t.block_b), triton.cdiv(cc, t.block_c))
    with device_context(p):
        _kme_fwd[grid](
            p, q, x, y, c, out, b, cc, d,
            M=m, N=n, BLOCK_B=t.block_b, BLOCK_C=t.block_c, BLOCK_D=t.block_d,
            SUM_LO=SUM_LO[torch.float32], SUM_HI=SUM_HI[torch.float32],
            PRECISION=dot_precision(p), DOT_F32=interpreted(_kme_fwd), **t.launch,
        )  # fmt: skip
    return out


def _backward(p, q, x, y, c, l2: Tensor, g: Tensor, columns: bool, t: Tiles):
    """Rows: Σ_{j,b} Ŵ q_jb (B, M, d), then Σ_{j,b} W, Σ_{j,b} Ŵ, Σ_{j,b} W⟨p, q⟩ (B, M, 3);
    columns: Σ_{i,a} Ŵ p_ia (C, N, d) and the sums over i, a (C, N, 3; the third unset).
    l2, g: (B, C) contiguous."""
    (b, m, d), (cc, n, _) = p.shape, q.shape
    check_device(_kme_bwd, p)
    own, pts, bo, other, bother = (
        (cc, n, t.block_c, b, t.block_b) if columns else (b, m, t.block_b, cc, t.block_c)
    )
    k = splits(own, bo, other, bother, pts, t)
    go = torch.empty(k, own, pts, d, device=p.device, dtype=torch.float32)
    gs = torch.zeros(k, own, pts, 3, device=p.device, dtype=torch.float32)
    with device_context(p):
        _kme_bwd[(triton.cdiv(own, bo), pts, k)](
            p, q, x, y, c, l2, g, go, gs, b, cc, d,
            M=m, N=n, BLOCK_B=t.block_b, BLOCK_C=t.block_c, BLOCK_D=t.block_d, COLUMNS=columns,
            HALF=p.dtype != torch.float32, PRECISION=dot_precision(p),
            DOT_F32=interpreted(_kme_bwd), **t.launch,
        )  # fmt: skip
    return go.sum(0), gs.sum(0)


def _side_terms(p: Tensor, w: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """fp32 ‖p‖² (S, K), the shift u = max w (S,), and x = (w − u − r‖p‖²/2)·log2 e (S, K)."""
    pn = p.float().pow(2).sum(-1)
    u = w.amax(1)
    return pn, u, (w - u[:, None] - pn * (r / 2)) * LOG2E


class KMEFused(torch.autograd.Function):
    """(p (B, M, d), q (C, N, d), wx (B, M), wy (C, N), r = 1/σ² ()) -> ℓ (B, C) fp32.

    p, q: the kernels' operands (`point_operands`); wx, wy, r: fp32. Gradients for all five.
    """

    @staticmethod
    def forward(ctx, p, q, wx, wy, r):
        t = tiles(p.device, p.shape[-1], p.dtype)
        pn, ux, x = _side_terms(p, wx, r)
        qn, uy, y = _side_terms(q, wy, r)
        c = (r * LOG2E).reshape(())
        l2 = _forward(p, q, x.contiguous(), y.contiguous(), c, t)
        ctx.save_for_backward(p, q, x, y, c, r, pn, qn, l2)
        ctx.tiles = t
        return l2 * LN2 + ux[:, None] + uy[None, :]

    @staticmethod
    def backward(ctx, g: Tensor):
        p, q, x, y, c, r, pn, qn, l2 = ctx.saved_tensors
        t, need = ctx.tiles, ctx.needs_input_grad
        g = g.float().contiguous()
        rows = need[0] or need[2] or need[4]
        cols = need[1] or need[3] or need[4]
        gp, sx = _backward(p, q, x, y, c, l2, g, False, t) if rows else (None, None)
        gq, sy = _backward(p, q, x, y, c, l2, g, True, t) if cols else (None, None)
        grad_p = grad_q = grad_r = None
        if need[0]:  # r Σ Ŵ (q − p)
            grad_p = (r * (gp - sx[..., 1:2] * p.float())).to(p.dtype)
        if need[1]:
            grad_q = (r * (gq - sy[..., 1:2] * q.float())).to(q.dtype)
        if need[4]:  # Σ W (⟨p, q⟩ − ‖p‖²/2 − ‖q‖²/2)
            h = sx[..., 2].sum() - 0.5 * (sx[..., 0] * pn).sum() - 0.5 * (sy[..., 0] * qn).sum()
            grad_r = h.reshape(r.shape)
        gx = sx[..., 0] if need[2] else None
        gy = sy[..., 0] if need[3] else None
        return grad_p, grad_q, gx, gy, grad_r


def kme_logits_triton(
    px: Tensor, wx: Tensor, py: Tensor, wy: Tensor, sigma: Tensor, fused=KMEFused.apply
) -> Tensor:
    """(B, M, d), (B, M), (C, N, d), (C, N), 0-dim σ -> (B, C) fp32 KME logits (fused kernels).

    Points in fp32, bf16 or fp16 (fp32 accumulation either way); weights and σ in any float
    dtype. Same contract as `_pairwise.kme_logits`. fused: the kernels' Function, called as
    fused(p, q, wx, wy, r) (`_triton_flat_kme` passes its own).
    """
    refuse_functorch()
    (_, m, d), n = px.shape, py.shape[1]
    p, q = point_operands(px, py)
    wx, wy, r = wx.float(), wy.float(), sigma.float().pow(-2)
    out = fused(p, q, wx, wy, r)
    with torch.no_grad():  # the expansion's error estimate, as `_pairwise_chunked.kme_expanded`
        pn, _, x = _side_terms(p, wx, r)
        qn, _, y = _side_terms(q, wy, r)
        s = (x.abs().amax(1)[:, None] + y.abs().amax(1)[None, :]) * LN2 + _scale_terms(pn, qn, r)
        bad = _estimate(s, torch.float32) > KME_TOL[torch.float32] * out.abs().clamp_min(1.0)
    return _splice(out, bad, kme_pairs, (px.float(), wx, py.float(), wy, r), m * n * d)

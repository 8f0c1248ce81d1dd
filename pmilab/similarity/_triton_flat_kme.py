"""KME logits with the point sets flattened into the tile (docs/theory.md T2; issue 27).

The same logits, scores and numerics as `_triton_kme` (read its docstring first):

    z = c·⟨p_a, q_b⟩ + x_a + y_b  (base 2, every z ≤ 0),   ℓ = ln 2 · log2 Σ_ab 2^z + ux + uy

but the points are a (B·M, d) and a (C·N, d) matrix, and a program's score tile is `rows` points
of P against `cols` points of Q: rows/MP × cols/NP pairs of sets (M, N padded to powers of two
MP, NP), one tensor-core tl.dot per tile instead of one per point pair (fp32 points too: three
TF32 products, "tf32x3", `_triton_common.FLAT_FP32_PRECISION`, where the tiled kernels multiply
fp32 on the FMA units). The tile's MP × NP sub-blocks are reduced in registers (`block_sum`), so
at M = N = 8 a 64 × 64 point tile gives an 8 × 8 tile of logits.

Forward (`_kme_fwd_flat`): a program owns one block of row sets and loops over column blocks (its
row points stay loaded, the column tiles stream). Per tile: s = Σ_sub 2^z (one exp2 per score);
where some sum leaves [SUM_LO, SUM_HI], the tile's scores, still in registers, are reduced again
around their sub-block maximum (no reload, no second pass). The kernel stores L2 = log2 s (for
the backward) and the logits ℓ themselves, shift added (folded into the forward's last step).

Backward (`_kme_bwd_flat`), FlashAttention-2 style: a program owns a block of row sets (COLUMNS
False) or of column sets (True), keeps its points' gradient accumulator in registers and loops
over the other side, recomputing each score tile with the forward's tile shape and expression
(`dot_tile`, `score_tile`: bit for bit, see `_triton_kme`). W = g·2^min(z − L2, 0) (exactly
z ≤ L2; the clamp keeps a recomputation that rounds differently from giving 0 · inf on a pair
spliced with zero upstream gradient). Rows: GP = Σ Ŵ q, GX = Σ W, Σ Ŵ, Σ W⟨p, q⟩; columns:
GQ = Σ Ŵᵀ p, GY, Σ Ŵ. Two ways to get the columns' sums (`FlatTiles.atomic`):
- second pass (default, deterministic): the same kernel owning the columns, recomputing the
  scores (fwd+bwd 10d tensor FLOPs per score, as the tiled kernels);
- atomics: the rows pass also forms Ŵᵀ p per tile and adds it to a (C·N, d) fp32 buffer with
  atomic adds (8d FLOPs per score, plus d·4/rows bytes of atomics per score).
benchmarks/README.md works out which should be faster; a GPU has not measured either.

The torch side (terms x, y, the shift, the error estimate and the splice of the pairs the
expansion cannot resolve) is `_triton_kme`'s, unchanged: `kme_logits_triton_flat` is
`kme_logits_triton` with this Function.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from pmilab.similarity._pairwise_blocks import LN2, LOG2E, SUM_HI, SUM_LO
from pmilab.similarity._triton_common import (
    FlatTiles,
    block_max,
    block_sum,
    dot_tile,
    expand,
    flat_backward,
    flat_forward,
    flat_points,
    flat_tiles,
    load_points,
    score_tile,
)
from pmilab.similarity._triton_kme import _side_terms, kme_logits_triton


@triton.jit
def _kme_fwd_flat(
    P,  # (B·M, D) points, fp32 / bf16 / fp16
    Q,  # (C·N, D)
    X,  # (B·M,) fp32 per-point terms x (base 2)
    Y,  # (C·N,) fp32
    UX,  # (B,) fp32 shifts ux
    UY,  # (C,) fp32
    CP,  # () fp32: c
    L2,  # (B, C) fp32 out: log2 Σ_ab 2^z
    OUT,  # (B, C) fp32 out: ℓ = ln 2 · L2 + ux + uy
    B,
    C,
    D,
    M: tl.constexpr,
    N: tl.constexpr,
    MP: tl.constexpr,
    NP: tl.constexpr,
    BLOCK_B: tl.constexpr,  # sets per tile: BLOCK_B·MP rows, BLOCK_C·NP columns
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    SUM_LO: tl.constexpr,
    SUM_HI: tl.constexpr,
    LN2: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_F32: tl.constexpr,  # interpreter only: it cannot multiply bf16 (exact upcast, same result)
):
    i0 = tl.program_id(0) * BLOCK_B
    k, nk = tl.program_id(1), tl.num_programs(1)  # this program's share of the column blocks
    rd = tl.arange(0, BLOCK_D)
    md = rd < D
    c = tl.load(CP)
    pr, mr = flat_points(i0, B, BLOCK_B, MP, M)  # (RP,) rows of P, real points
    p = load_points(P, pr, mr, rd, md, D, DOT_F32)
    x = tl.load(X + pr, mask=mr, other=0.0)
    ri = i0 + tl.arange(0, BLOCK_B)  # (BB,) output rows i
    ux = tl.load(UX + ri, mask=ri < B, other=0.0)
    for j0 in range(k * BLOCK_C, C, nk * BLOCK_C):
        qr, mq = flat_points(j0, C, BLOCK_C, NP, N)
        q = load_points(Q, qr, mq, rd, md, D, DOT_F32)
        y = tl.load(Y + qr, mask=mq, other=0.0)
        real = mr[:, None] & mq[None, :]  # (RP, CP)
        z = score_tile(dot_tile(p, q, PRECISION), x, y, c)
        s = block_sum(tl.where(real, tl.exp2(z), 0.0), BLOCK_B, MP, BLOCK_C, NP)  # (BB, BC)
        rj = j0 + tl.arange(0, BLOCK_C)
        valid = (ri < B)[:, None] & (rj < C)[None, :]
        ok = (s >= SUM_LO) & (s <= SUM_HI)  # False for NaN too
        if tl.sum(tl.where(valid & (ok == 0), 1, 0)) > 0:  # rare: around each sub-block's max
            mx = block_max(tl.where(real, z, -3.0e38), BLOCK_B, MP, BLOCK_C, NP)
            e = tl.exp2(tl.where(real, z - expand(mx, BLOCK_B, MP, BLOCK_C, NP), -float("inf")))
            s = block_sum(e, BLOCK_B, MP, BLOCK_C, NP)
            l2 = tl.where(valid, mx + tl.log2(tl.where(valid, s, 1.0)), 0.0)
        else:
            l2 = tl.log2(tl.where(valid, s, 1.0))
        uy = tl.load(UY + rj, mask=rj < C, other=0.0)
        at = ri[:, None].to(tl.int64) * C + rj[None, :]
        tl.store(L2 + at, l2, mask=valid)
        tl.store(OUT + at, l2 * LN2 + ux[:, None] + uy[None, :], mask=valid)


@triton.jit
def _kme_bwd_flat(
    P,  # (B·M, D) points
    Q,  # (C·N, D)
    X,  # (B·M,) fp32
    Y,  # (C·N,) fp32
    CP,  # () fp32: c
    L,  # (B, C) fp32: the forward's L2
    G,  # (B, C) fp32: upstream gradient
    GO,  # (K, B·M, D) or (K, C·N, D) fp32: split k's Σ Ŵ q (rows) or Σ Ŵᵀ p (columns)
    GS,  # (K, B·M, 3) or (K, C·N, 3) fp32: split k's Σ W, Σ Ŵ, Σ W⟨p, q⟩ (the third: rows)
    GQ,  # ATOMIC: (C·N, D) fp32, zeroed: Σ Ŵᵀ p added by every rows program
    GQS,  # ATOMIC: (C·N, 3) fp32, zeroed: Σ W, Σ Ŵ over the rows
    B,
    C,
    D,
    M: tl.constexpr,
    N: tl.constexpr,
    MP: tl.constexpr,
    NP: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    COLUMNS: tl.constexpr,  # False: a program owns a block of row sets; True: of column sets
    ATOMIC: tl.constexpr,  # rows only: the columns' sums by atomic adds (no second pass)
    HALF: tl.constexpr,  # bf16/fp16 points: the GEMMs take Ŵ = W rounded to their dtype
    PRECISION: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    own, k, nk = tl.program_id(0), tl.program_id(1), tl.num_programs(1)
    rd = tl.arange(0, BLOCK_D)
    md = rd < D
    c = tl.load(CP)
    if COLUMNS:
        j0 = own * BLOCK_C
        qr, mq = flat_points(j0, C, BLOCK_C, NP, N)
        q = load_points(Q, qr, mq, rd, md, D, DOT_F32)
        y = tl.load(Y + qr, mask=mq, other=0.0)
        rj = j0 + tl.arange(0, BLOCK_C)
        acc = tl.zeros((BLOCK_C * NP, BLOCK_D), dtype=tl.float32)  # Σ Ŵᵀ p
        gw = tl.zeros((BLOCK_C * NP,), dtype=tl.float32)  # Σ W
        gh = tl.zeros((BLOCK_C * NP,), dtype=tl.float32)  # Σ Ŵ
        for i0 in range(k * BLOCK_B, B, nk * BLOCK_B):
            pr, mr = flat_points(i0, B, BLOCK_B, MP, M)
            p = load_points(P, pr, mr, rd, md, D, DOT_F32)
            x = tl.load(X + pr, mask=mr, other=0.0)
            ri = i0 + tl.arange(0, BLOCK_B)
            valid = (ri < B)[:, None] & (rj < C)[None, :]
            at = ri[:, None].to(tl.int64) * C + rj[None, :]
            lt = expand(tl.load(L + at, mask=valid, other=0.0), BLOCK_B, MP, BLOCK_C, NP)
            gt = expand(tl.load(G + at, mask=valid, other=0.0), BLOCK_B, MP, BLOCK_C, NP)
            z = score_tile(dot_tile(p, q, PRECISION), x, y, c)
            w = tl.where(mr[:, None] & mq[None, :], gt * tl.exp2(tl.minimum(z - lt, 0.0)), 0.0)
            wd = w.to(P.dtype.element_ty)  # Ŵ: the tensor cores' dtype
            wr = wd.to(tl.float32)
            acc += tl.dot(tl.trans(wr if DOT_F32 else wd), p, input_precision=PRECISION)
            gw += tl.sum(w, axis=0)
            if HALF:
                gh += tl.sum(wr, axis=0)
        out = k * C * N + qr
        tl.store(GO + out[:, None] * D + rd[None, :], acc, mask=mq[:, None] & md[None, :])
        tl.store(GS + out * 3, gw, mask=mq)
        tl.store(GS + out * 3 + 1, gh if HALF else gw, mask=mq)
    else:
        i0 = own * BLOCK_B
        pr, mr = flat_points(i0, B, BLOCK_B, MP, M)
        p = load_points(P, pr, mr, rd, md, D, DOT_F32)
        x = tl.load(X + pr, mask=mr, other=0.0)
        ri = i0 + tl.arange(0, BLOCK_B)
        acc = tl.zeros((BLOCK_B * MP, BLOCK_D), dtype=tl.float32)  # Σ Ŵ q
        gw = tl.zeros((BLOCK_B * MP,), dtype=tl.float32)  # Σ W
        gh = tl.zeros((BLOCK_B * MP,), dtype=tl.float32)  # Σ Ŵ
        gd = tl.zeros((BLOCK_B * MP,), dtype=tl.float32)  # Σ W⟨p, q⟩ (σ's gradient: fp32 W)
        for j0 in range(k * BLOCK_C, C, nk * BLOCK_C):
            qr, mq = flat_points(j0, C, BLOCK_C, NP, N)
            q = load_points(Q, qr, mq, rd, md, D, DOT_F32)
            y = tl.load(Y + qr, mask=mq, other=0.0)
            rj = j0 + tl.arange(0, BLOCK_C)
            valid = (ri < B)[:, None] & (rj < C)[None, :]
            at = ri[:, None].to(tl.int64) * C + rj[None, :]
            lt = expand(tl.load(L + at, mask=valid, other=0.0), BLOCK_B, MP, BLOCK_C, NP)
            gt = expand(tl.load(G + at, mask=valid, other=0.0), BLOCK_B, MP, BLOCK_C, NP)
            dot = dot_tile(p, q, PRECISION)
            z = score_tile(dot, x, y, c)
            w = tl.where(mr[:, None] & mq[None, :], gt * tl.exp2(tl.minimum(z - lt, 0.0)), 0.0)
            wd = w.to(Q.dtype.element_ty)
            wr = wd.to(tl.float32)
            acc += tl.dot(wr if DOT_F32 else wd, q, input_precision=PRECISION)
            gw += tl.sum(w, axis=1)
            if HALF:
                gh += tl.sum(wr, axis=1)
            gd += tl.sum(w * dot, axis=1)
            if ATOMIC:  # the columns' share of this tile, added where the columns pass would
                part = tl.dot(tl.trans(wr if DOT_F32 else wd), p, input_precision=PRECISION)
                tl.atomic_add(
                    GQ + qr[:, None] * D + rd[None, :], part, mask=mq[:, None] & md[None, :]
                )
                tl.atomic_add(GQS + qr * 3, tl.sum(w, axis=0), mask=mq)
                tl.atomic_add(GQS + qr * 3 + 1, tl.sum(wr if HALF else w, axis=0), mask=mq)
        out = k * B * M + pr
        tl.store(GO + out[:, None] * D + rd[None, :], acc, mask=mr[:, None] & md[None, :])
        tl.store(GS + out * 3, gw, mask=mr)
        tl.store(GS + out * 3 + 1, gh if HALF else gw, mask=mr)
        tl.store(GS + out * 3 + 2, gd, mask=mr)


def _forward(p, q, x, y, ux, uy, c, t: FlatTiles) -> tuple[Tensor, Tensor]:
    """(B, M, d), (C, N, d), (B, M), (C, N), (B,), (C,), () -> ℓ (B, C) and L2 (B, C)."""
    out = torch.empty(p.shape[0], q.shape[0], device=p.device, dtype=torch.float32)
    l2 = torch.empty_like(out)
    lim = {"SUM_LO": SUM_LO[torch.float32], "SUM_HI": SUM_HI[torch.float32], "LN2": LN2}
    flat_forward(_kme_fwd_flat, p, q, (p, q, x, y, ux, uy, c, l2, out), t, **lim)
    return out, l2


def _backward(p, q, x, y, c, l2: Tensor, g: Tensor, columns: bool, t: FlatTiles):
    """Rows: Σ Ŵ q (B, M, d) and Σ W, Σ Ŵ, Σ W⟨p, q⟩ (B, M, 3); with t.atomic also the
    columns' Σ Ŵᵀ p (C, N, d) and Σ W, Σ Ŵ (C, N, 3), else None, None. Columns: Σ Ŵᵀ p and
    the sums over the rows (C, N, 3; the third unset). l2, g: (B, C) contiguous."""
    return flat_backward(_kme_bwd_flat, p, q, (p, q, x, y, c, l2, g), 3, columns, t)


class KMEFlat(torch.autograd.Function):
    """(p (B, M, d), q (C, N, d), wx (B, M), wy (C, N), r = 1/σ² (), atomic) -> ℓ (B, C) fp32.

    As `_triton_kme.KMEFused`, on the flattened tiles; atomic: the backward's columns by atomic
    adds (one pass) instead of a second pass. Gradients for the five tensors.
    """

    @staticmethod
    def forward(ctx, p, q, wx, wy, r, atomic: bool):
        t = flat_tiles(p.device, p.shape[1], q.shape[1], p.shape[-1], p.dtype, atomic)
        pn, ux, x = _side_terms(p, wx, r)
        qn, uy, y = _side_terms(q, wy, r)
        c = (r * LOG2E).reshape(())
        out, l2 = _forward(p, q, x.contiguous(), y.contiguous(), ux, uy, c, t)
        ctx.save_for_backward(p, q, x, y, c, r, pn, qn, l2)
        ctx.tiles = t
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        p, q, x, y, c, r, pn, qn, l2 = ctx.saved_tensors
        t, need = ctx.tiles, ctx.needs_input_grad
        g = g.float().contiguous()
        rows = need[0] or need[2] or need[4] or t.atomic
        gp, sx, gq, sy = _backward(p, q, x, y, c, l2, g, False, t) if rows else (None,) * 4
        if gq is None and (need[1] or need[3] or need[4]):
            gq, sy, _, _ = _backward(p, q, x, y, c, l2, g, True, t)
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
        return grad_p, grad_q, gx, gy, grad_r, None


def kme_logits_triton_flat(
    px: Tensor, wx: Tensor, py: Tensor, wy: Tensor, sigma: Tensor, atomic: bool = False
) -> Tensor:
    """(B, M, d), (B, M), (C, N, d), (C, N), 0-dim σ -> (B, C) fp32 KME logits, flattened
    kernels. Same contract as `_pairwise.kme_logits`; sets of more than FLAT_MAX_POINTS points
    run the tiled kernels."""
    if flat_tiles(px.device, px.shape[1], py.shape[1], px.shape[-1], px.dtype) is None:
        return kme_logits_triton(px, wx, py, wy, sigma)

    def fused(p, q, wx, wy, r):
        return KMEFlat.apply(p, q, wx, wy, r, atomic)

    return kme_logits_triton(px, wx, py, wy, sigma, fused=fused)

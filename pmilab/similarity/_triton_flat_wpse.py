"""WPSE kernel sums with the point sets flattened into the tile (docs/theory.md T2; issue 27).

The same sums, scores and numerics as `_triton_wpse` (read its docstring first):

    S[i,j] = Σ_ab wx[i,a] wy[j,b] k(z),  z = c·⟨p_a, q_b⟩ + x_a + y_b,
    k = 2^min(z, 0) (Gaussian) or max(z, 1)^{-1/2} (IMQ)

on the tiles of `_triton_flat_kme`: a (B·M, d) and a (C·N, d) matrix, `rows` × `cols` points per
score tile (one tensor-core tl.dot; fp32 points: tf32x3, as there), each MP × NP sub-block
reduced in registers: Σ_b wy_b k first, then times wx_a, summed over a.

Backward, FlashAttention-2 style (as `_triton_flat_kme`): a program owns a block of row sets
(or of column sets, COLUMNS) with its points' gradient accumulator in registers and loops over
the other side, recomputing the scores. With V = g wx wy dk/dz_n: rows give GP = Σ V̂ q / wx,
Σ g wy k, Σ V, Σ V̂, Σ V⟨p, q⟩ (scaled by wx_a and the IMQ's −1/2 at the end); columns alike,
with Σ V̂ᵀ p. The columns' sums come from a second pass (default) or, with `FlatTiles.atomic`,
from the rows pass by atomic adds into (C·N, ·) fp32 buffers.

The torch side (terms, the linear term, the error estimate, the recomputation of flagged kernel
values) is `_triton_wpse`'s: `wpse_logits_triton_flat` is `wpse_logits_triton` with this
Function.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from pmilab.similarity._triton_common import (
    FlatTiles,
    dot_tile,
    expand,
    flat_backward,
    flat_forward,
    flat_points,
    flat_tiles,
    load_points,
    score_tile,
)
from pmilab.similarity._triton_wpse import _score_terms, wpse_logits_triton


@triton.jit
def _kernel_value(z, IMQ: tl.constexpr):
    """k(z): the IMQ's max(z, 1)^{-1/2}, or the Gaussian's 2^min(z, 0) (k ≤ 1 whatever the
    rounding of z, see `_triton_wpse`)."""
    if IMQ:
        return tl.rsqrt(tl.maximum(z, 1.0))
    return tl.exp2(tl.minimum(z, 0.0))


@triton.jit
def _wpse_fwd_flat(
    P,  # (B·M, D) points, fp32 / bf16 / fp16
    Q,  # (C·N, D)
    X,  # (B·M,) fp32 per-point score terms
    Y,  # (C·N,) fp32
    WX,  # (B·M,) fp32 weights
    WY,  # (C·N,) fp32
    CP,  # () fp32: c
    OUT,  # (B, C) fp32: Σ_ab wx wy k
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
    IMQ: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_F32: tl.constexpr,  # interpreter only: it cannot multiply bf16 (exact upcast, same result)
):
    i0 = tl.program_id(0) * BLOCK_B
    k, nk = tl.program_id(1), tl.num_programs(1)
    rd = tl.arange(0, BLOCK_D)
    md = rd < D
    c = tl.load(CP)
    pr, mr = flat_points(i0, B, BLOCK_B, MP, M)
    p = load_points(P, pr, mr, rd, md, D, DOT_F32)
    x = tl.load(X + pr, mask=mr, other=0.0)
    wa = tl.reshape(tl.load(WX + pr, mask=mr, other=0.0), (BLOCK_B, MP))  # 0 off the sets
    ri = i0 + tl.arange(0, BLOCK_B)
    for j0 in range(k * BLOCK_C, C, nk * BLOCK_C):
        qr, mq = flat_points(j0, C, BLOCK_C, NP, N)
        q = load_points(Q, qr, mq, rd, md, D, DOT_F32)
        y = tl.load(Y + qr, mask=mq, other=0.0)
        wb = tl.load(WY + qr, mask=mq, other=0.0)
        kv = _kernel_value(score_tile(dot_tile(p, q, PRECISION), x, y, c), IMQ)
        t = tl.sum(tl.reshape(kv * wb[None, :], (BLOCK_B, MP, BLOCK_C, NP)), axis=3)  # Σ_b wy k
        s = tl.sum(t * wa[:, :, None], axis=1)  # (BB, BC)
        rj = j0 + tl.arange(0, BLOCK_C)
        valid = (ri < B)[:, None] & (rj < C)[None, :]
        tl.store(OUT + ri[:, None].to(tl.int64) * C + rj[None, :], s, mask=valid)


@triton.jit
def _wpse_bwd_flat(
    P,  # (B·M, D) points
    Q,  # (C·N, D)
    X,  # (B·M,) fp32
    Y,  # (C·N,) fp32
    WX,  # (B·M,) fp32
    WY,  # (C·N,) fp32
    CP,  # () fp32: c
    G,  # (B, C) fp32 upstream gradient
    GO,  # (K, B·M, D) or (K, C·N, D) fp32: split k's Σ V̂ q (rows) or Σ V̂ᵀ p (columns)
    GS,  # (K, B·M, 4) or (K, C·N, 4) fp32: Σ g w k, Σ V, Σ V̂, Σ V⟨p, q⟩ (the fourth: rows)
    GQ,  # ATOMIC: (C·N, D) fp32, zeroed: the columns' Σ V̂ᵀ p
    GQS,  # ATOMIC: (C·N, 4) fp32, zeroed: the columns' Σ g wx k, Σ V, Σ V̂
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
    COLUMNS: tl.constexpr,
    ATOMIC: tl.constexpr,
    IMQ: tl.constexpr,
    HALF: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    # U = g w_other k (the own side's weight applied once at the end, with the IMQ's −1/2);
    # Σ Û goes with Σ Û q into the points' gradient (the same rounding in both terms).
    own, k, nk = tl.program_id(0), tl.program_id(1), tl.num_programs(1)
    rd = tl.arange(0, BLOCK_D)
    md = rd < D
    c = tl.load(CP)
    sign = -0.5 if IMQ else 1.0  # dk/dz_n: k, or −k³/2
    if COLUMNS:
        j0 = own * BLOCK_C
        qr, mq = flat_points(j0, C, BLOCK_C, NP, N)
        q = load_points(Q, qr, mq, rd, md, D, DOT_F32)
        y = tl.load(Y + qr, mask=mq, other=0.0)
        rj = j0 + tl.arange(0, BLOCK_C)
        acc = tl.zeros((BLOCK_C * NP, BLOCK_D), dtype=tl.float32)
        gw = tl.zeros((BLOCK_C * NP,), dtype=tl.float32)  # Σ g wx k
        gx = tl.zeros((BLOCK_C * NP,), dtype=tl.float32)  # Σ U
        gh = tl.zeros((BLOCK_C * NP,), dtype=tl.float32)  # Σ Û
        for i0 in range(k * BLOCK_B, B, nk * BLOCK_B):
            pr, mr = flat_points(i0, B, BLOCK_B, MP, M)
            p = load_points(P, pr, mr, rd, md, D, DOT_F32)
            x = tl.load(X + pr, mask=mr, other=0.0)
            wa = tl.load(WX + pr, mask=mr, other=0.0)
            ri = i0 + tl.arange(0, BLOCK_B)
            valid = (ri < B)[:, None] & (rj < C)[None, :]
            gt = tl.load(G + ri[:, None].to(tl.int64) * C + rj[None, :], mask=valid, other=0.0)
            kv = _kernel_value(score_tile(dot_tile(p, q, PRECISION), x, y, c), IMQ)
            u = expand(gt, BLOCK_B, MP, BLOCK_C, NP) * wa[:, None] * kv
            gw += tl.sum(u, axis=0)
            if IMQ:
                u = u * (kv * kv)
            ud = u.to(P.dtype.element_ty)
            ur = ud.to(tl.float32)
            acc += tl.dot(tl.trans(ur if DOT_F32 else ud), p, input_precision=PRECISION)
            gx += tl.sum(u, axis=0)
            if HALF:
                gh += tl.sum(ur, axis=0)
        scale = tl.load(WY + qr, mask=mq, other=0.0) * sign
        out = k * C * N + qr
        gmask = mq[:, None] & md[None, :]
        tl.store(GO + out[:, None] * D + rd[None, :], acc * scale[:, None], mask=gmask)
        tl.store(GS + out * 4, gw, mask=mq)
        tl.store(GS + out * 4 + 1, gx * scale, mask=mq)
        tl.store(GS + out * 4 + 2, (gh if HALF else gx) * scale, mask=mq)
    else:
        i0 = own * BLOCK_B
        pr, mr = flat_points(i0, B, BLOCK_B, MP, M)
        p = load_points(P, pr, mr, rd, md, D, DOT_F32)
        x = tl.load(X + pr, mask=mr, other=0.0)
        wa = tl.load(WX + pr, mask=mr, other=0.0)
        ri = i0 + tl.arange(0, BLOCK_B)
        acc = tl.zeros((BLOCK_B * MP, BLOCK_D), dtype=tl.float32)
        gw = tl.zeros((BLOCK_B * MP,), dtype=tl.float32)  # Σ g wy k
        gx = tl.zeros((BLOCK_B * MP,), dtype=tl.float32)  # Σ U
        gh = tl.zeros((BLOCK_B * MP,), dtype=tl.float32)  # Σ Û
        gd = tl.zeros((BLOCK_B * MP,), dtype=tl.float32)  # Σ U⟨p, q⟩
        for j0 in range(k * BLOCK_C, C, nk * BLOCK_C):
            qr, mq = flat_points(j0, C, BLOCK_C, NP, N)
            q = load_points(Q, qr, mq, rd, md, D, DOT_F32)
            y = tl.load(Y + qr, mask=mq, other=0.0)
            wb = tl.load(WY + qr, mask=mq, other=0.0)
            rj = j0 + tl.arange(0, BLOCK_C)
            valid = (ri < B)[:, None] & (rj < C)[None, :]
            gt = tl.load(G + ri[:, None].to(tl.int64) * C + rj[None, :], mask=valid, other=0.0)
            ge = expand(gt, BLOCK_B, MP, BLOCK_C, NP)
            dot = dot_tile(p, q, PRECISION)
            kv = _kernel_value(score_tile(dot, x, y, c), IMQ)
            u = ge * wb[None, :] * kv
            gw += tl.sum(u, axis=1)
            if IMQ:
                u = u * (kv * kv)
            ud = u.to(Q.dtype.element_ty)
            ur = ud.to(tl.float32)
            acc += tl.dot(ur if DOT_F32 else ud, q, input_precision=PRECISION)
            gx += tl.sum(u, axis=1)
            if HALF:
                gh += tl.sum(ur, axis=1)
            gd += tl.sum(u * dot, axis=1)
            if ATOMIC:  # the columns' V = g wx wy dk/dz_n of this tile, scaled here
                v = ge * wa[:, None] * kv
                tl.atomic_add(GQS + qr * 4, tl.sum(v, axis=0), mask=mq)  # Σ g wx k
                if IMQ:
                    v = v * (kv * kv)
                v = v * (wb * sign)[None, :]
                vd = v.to(P.dtype.element_ty)
                vr = vd.to(tl.float32)
                part = tl.dot(tl.trans(vr if DOT_F32 else vd), p, input_precision=PRECISION)
                tl.atomic_add(
                    GQ + qr[:, None] * D + rd[None, :], part, mask=mq[:, None] & md[None, :]
                )
                tl.atomic_add(GQS + qr * 4 + 1, tl.sum(v, axis=0), mask=mq)
                tl.atomic_add(GQS + qr * 4 + 2, tl.sum(vr if HALF else v, axis=0), mask=mq)
        scale = wa * sign
        out = k * B * M + pr
        gmask = mr[:, None] & md[None, :]
        tl.store(GO + out[:, None] * D + rd[None, :], acc * scale[:, None], mask=gmask)
        tl.store(GS + out * 4, gw, mask=mr)
        tl.store(GS + out * 4 + 1, gx * scale, mask=mr)
        tl.store(GS + out * 4 + 2, (gh if HALF else gx) * scale, mask=mr)
        tl.store(GS + out * 4 + 3, gd * scale, mask=mr)


def _forward(p, q, x, y, wx, wy, c, imq: bool, t: FlatTiles) -> Tensor:
    """(B, M, d), (C, N, d), score terms and weights (B, M), (C, N), () -> (B, C) Σ wx wy k."""
    out = torch.empty(p.shape[0], q.shape[0], device=p.device, dtype=torch.float32)
    flat_forward(_wpse_fwd_flat, p, q, (p, q, x, y, wx, wy, c, out), t, IMQ=imq)
    return out


def _backward(p, q, x, y, wx, wy, c, g: Tensor, imq: bool, columns: bool, t: FlatTiles):
    """Rows: GP (B, M, d) and Σ g wy k, Σ V, Σ V̂, Σ V⟨p, q⟩ (B, M, 4), with t.atomic also the
    columns' (C, N, d), (C, N, 4) (else None, None); columns: GQ (C, N, d), sums (C, N, 4)."""
    args = (p, q, x, y, wx, wy, c, g)
    return flat_backward(_wpse_bwd_flat, p, q, args, 4, columns, t, IMQ=imq)


class KernelSumFlat(torch.autograd.Function):
    """(p, q, wx, wy, r, kernel, atomic) -> S (B, C) fp32: `_triton_wpse.KernelSumFused` on the
    flattened tiles; atomic: the backward's columns by atomic adds (one pass)."""

    @staticmethod
    def forward(ctx, p, q, wx, wy, r, kernel: str, atomic: bool):
        imq = kernel == "imq"
        t = flat_tiles(p.device, p.shape[1], q.shape[1], p.shape[-1], p.dtype, atomic)
        pn, qn, x, y, c, cn = _score_terms(p, q, r, imq)
        c = c.reshape(())
        wx, wy, x, y = (v.contiguous() for v in (wx, wy, x, y))
        out = _forward(p, q, x, y, wx, wy, c, imq, t)
        ctx.save_for_backward(p, q, x, y, wx, wy, c, cn, r, pn, qn)
        ctx.imq, ctx.tiles = imq, t
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        p, q, x, y, wx, wy, c, cn, r, pn, qn = ctx.saved_tensors
        imq, t, need = ctx.imq, ctx.tiles, ctx.needs_input_grad
        g = g.float().contiguous()
        args = (p, q, x, y, wx, wy, c, g, imq)
        rows = need[0] or need[2] or need[4] or t.atomic
        gp, sx, gq, sy = _backward(*args, False, t) if rows else (None,) * 4
        if gq is None and (need[1] or need[3] or need[4]):
            gq, sy, _, _ = _backward(*args, True, t)
        grad_p = grad_q = grad_r = None
        if need[0]:  # c_n Σ V̂ (q − p)
            grad_p = (cn * (gp - sx[..., 2:3] * p.float())).to(p.dtype)
        if need[1]:
            grad_q = (cn * (gq - sy[..., 2:3] * q.float())).to(q.dtype)
        if need[4]:
            h = sx[..., 3].sum() - 0.5 * (sx[..., 1] * pn).sum() - 0.5 * (sy[..., 1] * qn).sum()
            grad_r = (h * (-2.0 if imq else 1.0)).reshape(r.shape)
        gwx = sx[..., 0] if need[2] else None
        gwy = sy[..., 0] if need[3] else None
        return grad_p, grad_q, gwx, gwy, grad_r, None, None


def wpse_logits_triton_flat(
    px: Tensor,
    wx: Tensor,
    py: Tensor,
    wy: Tensor,
    sigma: Tensor,
    alpha_linear,
    alpha_kernel,
    kernel: str,
    atomic: bool = False,
) -> Tensor:
    """WPSE similarities (B, C) fp32 with the flattened kernel sum. Same contract as
    `_pairwise.wpse_logits`; sets of more than FLAT_MAX_POINTS points run the tiled kernels."""
    args = (px, wx, py, wy, sigma, alpha_linear, alpha_kernel, kernel)
    if flat_tiles(px.device, px.shape[1], py.shape[1], px.shape[-1], px.dtype) is None:
        return wpse_logits_triton(*args)

    def fused(p, q, wx, wy, r, kernel):
        return KernelSumFlat.apply(p, q, wx, wy, r, kernel, atomic)

    return wpse_logits_triton(*args, fused=fused)

"""Fused Triton kernels for the WPSE kernel sum, forward and backward (docs/theory.md T2).

    S[i,j] = Σ_{a,b} wx[i,a] wy[j,b] k(p_ia, q_jb)
    k = exp(−‖u − v‖²/(2σ²))  or  (1 + ‖u − v‖²/σ²)^{-1/2}

(`_pairwise.wpse_logits` adds the linear term, a rank-d GEMM, and divides by M·N.) With r = 1/σ²,
each kernel value is a function of one score z = c·⟨p_a, q_b⟩ + x_a + y_b:

    Gaussian (base 2): c = r·log2 e,  x_a = −r‖p_a‖²/2·log2 e,  k = 2^z
    IMQ:               c = −2r,       x_a = 1 + r‖p_a‖²,  y_b = r‖q_b‖²,  k = max(z, 1)^{-1/2}

Forward (`_wpse_fwd`): a program owns a (BLOCK_B, BLOCK_C) tile of S and loops over the point
pairs, one tl.dot per pair (a, b) for the tile's ⟨p_a, q_b⟩; the weighted sum stays in registers
(Σ_b wy_b k first, then times wx_a: one multiply per score).

Backward (`_wpse_bwd`) recomputes the scores (`score_tile`, as the forward). With c_n = r
(Gaussian) or −2r (IMQ) the natural coefficient and V = g wx wy dk/dz_n (dk/dz_n = k, or −k³/2
for the IMQ), per row block and point a, over all columns j and points b: GP = Σ V q, GX = Σ V,
GW = Σ g wy k. The same kernel with the sides swapped gives GQ, GY, GWY. Then, in torch on
(B, M, d)-sized tensors:

    ∂S/∂wx = GW,   ∂S/∂p = c_n (GP − GX p),   ∂S/∂r = (c_n / r)(Σ V⟨p, q⟩ − ½ΣGX‖p‖² − ½ΣGY‖q‖²)

For bf16/fp16 points the GEMMs for GP, GQ take V̂, V rounded to that dtype (the tensor cores'
rate), and the points' gradient subtracts Σ V̂·p to match; the weights' and σ's gradients use the
fp32 values (σ's through a separate row sum Σ V⟨p, q⟩, since it cancels between its terms).

Kernel values whose expansion the error estimate of `_pairwise_chunked` does not trust are
recomputed as on the chunked path (`_pairwise_chunked.resolve_kernel_sums`: the float64
expansion, then direct differences for what it cannot resolve).

The Gaussian's score is clamped at 0 before exp2, in both kernels. Exactly, z ≤ 0; but bf16
points are used uncentred (norms ~1e4 in the tests), and at tiny σ the terms c·⟨p, q⟩, x and y
are each ~1e10 and cancel. On a GPU the compiler may contract c·dot + x into one FMA, which
rounds differently from x, so a duplicated pair's z can come out far above 0 and exp2(z) as
inf. Such a pair is flagged and spliced (its value recomputed exactly, its upstream gradient
0), but the backward's 0 · inf made NaN point gradients: seen on an H200 in
`tests/similarity/triton` (bf16, σ = 1e-3, duplicated points). With the clamp its k is 1, the
kernel's upper bound, and the zero upstream gradient cancels it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from pmilab.similarity._pairwise_blocks import LOG2E
from pmilab.similarity._pairwise_chunked import (
    WPSE_TOL,
    _estimate,
    _is_zero,
    kernel_score_scale,
    refuse_functorch,
    resolve_kernel_sums,
)
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
def _wpse_fwd(
    P,  # (B, M, D) points, fp32 / bf16 / fp16
    Q,  # (C, N, D)
    X,  # (B, M) fp32 per-point score terms
    Y,  # (C, N) fp32
    WX,  # (B, M) fp32 weights
    WY,  # (C, N) fp32
    CP,  # () fp32: c
    OUT,  # (B, C) fp32: Σ_ab wx wy k
    B,
    C,
    D,
    M: tl.constexpr,
    N: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    IMQ: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_F32: tl.constexpr,  # interpreter only: it cannot multiply bf16 (exact upcast, same result)
):
    rb = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)  # (BB,) rows i
    rc = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)  # (BC,) columns j
    rd = tl.arange(0, BLOCK_D)
    mb, mc, md = rb < B, rc < C, rd < D
    c = tl.load(CP)
    acc = tl.zeros((BLOCK_B, BLOCK_C), dtype=tl.float32)
    for a in range(M):
        p = tl.load(
            P + (rb[:, None] * M + a) * D + rd[None, :], mask=mb[:, None] & md[None, :], other=0.0
        )
        if DOT_F32:
            p = p.to(tl.float32)
        x = tl.load(X + rb * M + a, mask=mb, other=0.0)  # (BB,)
        wa = tl.load(WX + rb * M + a, mask=mb, other=0.0)
        t = tl.zeros((BLOCK_B, BLOCK_C), dtype=tl.float32)  # Σ_b wy_b k
        for b in range(N):
            q = tl.load(
                Q + (rc[:, None] * N + b) * D + rd[None, :],
                mask=mc[:, None] & md[None, :],
                other=0.0,
            )
            if DOT_F32:
                q = q.to(tl.float32)
            y = tl.load(Y + rc * N + b, mask=mc, other=0.0)  # (BC,)
            wb = tl.load(WY + rc * N + b, mask=mc, other=0.0)
            z = score_tile(dot_tile(p, q, PRECISION), x, y, c)
            if IMQ:
                k = tl.rsqrt(tl.maximum(z, 1.0))
            else:  # z = −r‖p − q‖²·log2(e)/2 ≤ 0, but rounding can push it above (module doc)
                k = tl.exp2(tl.minimum(z, 0.0))
            t += k * wb[None, :]
        acc += t * wa[:, None]
    mask = mb[:, None] & mc[None, :]
    tl.store(OUT + rb[:, None].to(tl.int64) * C + rc[None, :], acc, mask=mask)


@triton.jit
def _wpse_bwd(
    P,  # (R, M, D) the rows' points (p, or q for the transposed call)
    Q,  # (S, N, D) the columns' points
    X,  # (R, M) fp32
    Y,  # (S, N) fp32
    WX,  # (R, M) fp32 the rows' weights
    WY,  # (S, N) fp32
    CP,  # () fp32: c
    G,  # (R, S) fp32 upstream gradient, strides (g_r, g_s)
    GP,  # (K, R, M, D) fp32: partial Σ V̂ q of each column split k
    GS,  # (K, R, M, 4) fp32: partial Σ g wy k, Σ V, Σ V̂, Σ V⟨p, q⟩
    R,
    S,
    D,
    g_r,
    g_s,
    M: tl.constexpr,
    N: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_D: tl.constexpr,
    IMQ: tl.constexpr,
    HALF: tl.constexpr,  # bf16/fp16 points: the GEMM takes V̂ = V rounded to their dtype
    PRECISION: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    # Σ V̂ goes with Σ V̂ q into the points' gradient Σ V̂ (q − p) (same rounding in both terms);
    # the weights' and σ's gradients use the fp32 values.
    rr = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)  # (BR,)
    a = tl.program_id(1)  # this program's point of each row set
    k_, nk = tl.program_id(2), tl.num_programs(2)  # column split k_ of nk
    rd = tl.arange(0, BLOCK_D)
    mr, md = rr < R, rd < D
    c = tl.load(CP)
    p = tl.load(
        P + (rr[:, None] * M + a) * D + rd[None, :], mask=mr[:, None] & md[None, :], other=0.0
    )
    if DOT_F32:
        p = p.to(tl.float32)
    x = tl.load(X + rr * M + a, mask=mr, other=0.0)
    wa = tl.load(WX + rr * M + a, mask=mr, other=0.0)
    acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)  # Σ g wy k' q  (times wx_a below)
    gx = tl.zeros((BLOCK_R,), dtype=tl.float32)  # Σ g wy k'
    gh = tl.zeros((BLOCK_R,), dtype=tl.float32)  # the same from the rounded values
    gw = tl.zeros((BLOCK_R,), dtype=tl.float32)  # Σ g wy k
    gd = tl.zeros((BLOCK_R,), dtype=tl.float32)  # Σ g wy k' ⟨p, q⟩
    r64 = rr[:, None].to(tl.int64)
    for s0 in range(k_ * BLOCK_S, S, nk * BLOCK_S):
        rs = s0 + tl.arange(0, BLOCK_S)  # (BS,)
        ms = rs < S
        valid = mr[:, None] & ms[None, :]
        gt = tl.load(G + r64 * g_r + rs[None, :] * g_s, mask=valid, other=0.0)  # (BR, BS)
        for b in range(N):
            q = tl.load(
                Q + (rs[:, None] * N + b) * D + rd[None, :],
                mask=ms[:, None] & md[None, :],
                other=0.0,
            )
            y = tl.load(Y + rs * N + b, mask=ms, other=0.0)
            wb = tl.load(WY + rs * N + b, mask=ms, other=0.0)
            qd = q.to(tl.float32) if DOT_F32 else q
            dot = dot_tile(p, qd, PRECISION)
            z = score_tile(dot, x, y, c)
            if IMQ:
                k = tl.rsqrt(tl.maximum(z, 1.0))
            else:
                k = tl.exp2(tl.minimum(z, 0.0))  # as the forward: k ≤ 1 whatever the rounding
            u = tl.where(valid, gt * wb[None, :] * k, 0.0)  # (BR, BS): g wy k
            gw += tl.sum(u, axis=1)
            if IMQ:
                u = u * (k * k)  # g wy k³ (the −1/2 is applied once below)
            ud = u.to(q.dtype)  # the tensor cores' dtype
            ur = ud.to(tl.float32)
            acc += tl.dot(ur if DOT_F32 else ud, qd, input_precision=PRECISION)
            gx += tl.sum(u, axis=1)
            if HALF:
                gh += tl.sum(ur, axis=1)
            gd += tl.sum(u * dot, axis=1)
    scale = wa * (-0.5 if IMQ else 1.0)  # (BR,): wx_a dk/dz factor
    out = (k_ * R + rr[:, None].to(tl.int64)) * M + a  # (BR, 1)
    tl.store(GP + out * D + rd[None, :], acc * scale[:, None], mask=mr[:, None] & md[None, :])
    st = GS + ((k_ * R + rr) * M + a) * 4
    tl.store(st, gw, mask=mr)
    tl.store(st + 1, gx * scale, mask=mr)
    tl.store(st + 2, (gh if HALF else gx) * scale, mask=mr)
    tl.store(st + 3, gd * scale, mask=mr)


def _forward(p, q, x, y, wx, wy, c, imq: bool, t: Tiles) -> Tensor:
    """(B, M, d), (C, N, d), score terms (B, M), (C, N), weights alike, () -> (B, C) Σ wx wy k."""
    (b, m, d), (cc, n, _) = p.shape, q.shape
    check_device(_wpse_fwd, p)
    out = torch.empty(b, cc, device=p.device, dtype=torch.float32)
    grid = (triton.cdiv(b, t.block_b), triton.cdiv(cc, t.block_c))
    with device_context(p):
        _wpse_fwd[grid](
            p, q, x, y, wx, wy, c, out, b, cc, d,
            M=m, N=n, BLOCK_B=t.block_b, BLOCK_C=t.block_c, BLOCK_D=t.block_d, IMQ=imq,
            PRECISION=dot_precision(p), DOT_F32=interpreted(_wpse_fwd), **t.launch,
        )  # fmt: skip
    return out


def _rows(p, q, x, y, wx, wy, c, g: Tensor, imq: bool, blocks: tuple[int, int], t: Tiles):
    """GP (R, M, d) and the sums GW, GX, GX̂, Σ V⟨p, q⟩ (R, M, 4) for the rows of g (R, S);
    blocks: (rows, columns) of a program's score tile."""
    (r, m, d), (s, n, _) = p.shape, q.shape
    check_device(_wpse_bwd, p)
    k = splits(r, blocks[0], s, blocks[1], m, t)
    gp = torch.empty(k, r, m, d, device=p.device, dtype=torch.float32)
    gs = torch.empty(k, r, m, 4, device=p.device, dtype=torch.float32)
    with device_context(p):
        _wpse_bwd[(triton.cdiv(r, blocks[0]), m, k)](
            p, q, x, y, wx, wy, c, g, gp, gs, r, s, d, *g.stride(),
            M=m, N=n, BLOCK_R=blocks[0], BLOCK_S=blocks[1], BLOCK_D=t.block_d, IMQ=imq,
            HALF=p.dtype != torch.float32, PRECISION=dot_precision(p),
            DOT_F32=interpreted(_wpse_bwd), **t.launch,
        )  # fmt: skip
    return gp.sum(0), gs.sum(0)


def _score_terms(p: Tensor, q: Tensor, r: Tensor, imq: bool):
    """fp32 norms ‖p‖² (B, M), ‖q‖² (C, N), terms x, y and coefficients c (kernel's), c_n."""
    pn, qn = p.float().pow(2).sum(-1), q.float().pow(2).sum(-1)
    if imq:
        return pn, qn, 1 + pn * r, qn * r, -2 * r, -2 * r
    h = -(r / 2) * LOG2E
    return pn, qn, pn * h, qn * h, r * LOG2E, r


class KernelSumFused(torch.autograd.Function):
    """(p (B, M, d), q (C, N, d), wx (B, M), wy (C, N), r = 1/σ² (), kernel) -> S (B, C) fp32.

    S = Σ_ab wx wy k, unnormalised. p, q: the kernels' operands (`point_operands`); wx, wy, r:
    fp32. Gradients for all five tensors.
    """

    @staticmethod
    def forward(ctx, p, q, wx, wy, r, kernel: str):
        imq, t = kernel == "imq", tiles(p.device, p.shape[-1], p.dtype)
        pn, qn, x, y, c, cn = _score_terms(p, q, r, imq)
        c = c.reshape(())
        wx, wy = wx.contiguous(), wy.contiguous()
        out = _forward(p, q, x.contiguous(), y.contiguous(), wx, wy, c, imq, t)
        ctx.save_for_backward(p, q, x, y, wx, wy, c, cn, r, pn, qn)
        ctx.imq, ctx.tiles = imq, t
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        p, q, x, y, wx, wy, c, cn, r, pn, qn = ctx.saved_tensors
        imq, t, need = ctx.imq, ctx.tiles, ctx.needs_input_grad
        g = g.float()
        rows = need[0] or need[2] or need[4]
        cols = need[1] or need[3] or need[4]
        fwd, swapped = (t.block_b, t.block_c), (t.block_c, t.block_b)
        gp, sx = _rows(p, q, x, y, wx, wy, c, g, imq, fwd, t) if rows else (None, None)
        gq, sy = _rows(q, p, y, x, wy, wx, c, g.T, imq, swapped, t) if cols else (None, None)
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
        return grad_p, grad_q, gwx, gwy, grad_r, None


def wpse_logits_triton(
    px: Tensor,
    wx: Tensor,
    py: Tensor,
    wy: Tensor,
    sigma: Tensor,
    alpha_linear,
    alpha_kernel,
    kernel: str,
    fused=KernelSumFused.apply,
) -> Tensor:
    """WPSE similarities (B, C) fp32 without the logit scale, with the fused kernel sum.

    Same contract as `_pairwise.wpse_logits`; points in fp32, bf16 or fp16. fused: the kernel
    sum's Function, called as fused(p, q, wx, wy, r, kernel) (`_triton_flat_wpse` passes its own).
    """
    refuse_functorch()
    (b, m), (c, n) = px.shape[:2], wy.shape
    wx, wy = wx.float(), wy.float()
    out = torch.zeros(b, c, device=px.device, dtype=torch.float32)
    if not _is_zero(alpha_linear):  # Σ_ab wx wy ⟨u_a, v_b⟩ = ⟨Σ_a wx u_a, Σ_b wy v_b⟩
        ex = torch.einsum("bm,bmd->bd", wx, px.float())
        ey = torch.einsum("cn,cnd->cd", wy, py.float())
        out = out + alpha_linear * (ex @ ey.T)
    if not _is_zero(alpha_kernel):
        r = sigma.float().pow(-2)
        p, q = point_operands(px, py)
        ker = fused(p, q, wx, wy, r, kernel)
        with torch.no_grad():  # the expansion's error estimate, as `_pairwise_chunked`
            pn, qn = p.float().pow(2).sum(-1), q.float().pow(2).sum(-1)
            s = kernel_score_scale(pn, qn, r, kernel)
            bad = _estimate(s, torch.float32) > WPSE_TOL[torch.float32]
        ker = resolve_kernel_sums(ker, bad, px.float(), wx, py.float(), wy, r, kernel)
        out = out + alpha_kernel * ker
    return out / (m * n)

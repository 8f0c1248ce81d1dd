"""Fused KME and WPSE-Gaussian logit matrices for small point sets: the path of the heads sweep
and of the replicate trainer (docs/theory.md T2; docs/architecture.md "Many seeds as one
computation").

At the heads sweep's shapes (24 x 20 tables, M = N = 8 points in d = 2) the materialising
reference (`_pairwise.kme_logits_naive`) spends a training step in ~60 elementwise passes over
the (B, C, M, N, d) differences and autograd's broadcast reductions of them; stacking seeds with
vmap multiplied the tensors, not the speed (2.1x at R = 32). Here one `torch.autograd.Function`
per head works on the (..., B, M, C, N) scores, row (i, a) and column (j, b):
- forward: the scores as one batched GEMM of rank d + 2 in float64 (`_expanded_scores`: points
  centred on their common mean, then scaled by c = 1/(√2 σ)), rounded once to the inputs' dtype,
  exponentiated, summed per (i, j). Where that expansion's estimated rounding error could exceed
  the heads' tolerance (`_pairwise_chunked.KME_TOL` / `WPSE_TOL`: float64 inputs far from the
  centre or at tiny σ) the replicate's scores are direct differences instead;
- backward, by hand: with P the softmax (KME) or weight·kernel (WPSE) times the upstream
  gradient, ∂/∂u_a = -2 Σ_{j,b} P (u_a - v_b) = -2 (u_a Σ P - Σ P v_b) and the like for v, the
  sums as batched GEMMs on views of P; the weights' gradients are the same sums' ones column;
  σ's gradient is Σ g_u·x + g_v·y over each replicate's own block.

Values and gradients match autograd through the reference within 1e-12 in float64 and 1e-5 in
float32 (tests/similarity/test_pairwise_small.py). Each Function has a `vmap` rule that runs the
same code on the stacked replicates (every op broadcasts over leading dims), and a replicate's
numbers do not depend on which others share the call: every fall-back is decided per replicate,
and a call outside vmap also multiplies with a batched GEMM (`_lead`).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from pmilab.similarity._pairwise_chunked import KME_TOL, WPSE_TOL, _estimate


def _centred(u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """u, v minus the mean of all their points (per leading index): distances do not change,
    norms, and with them the expansion's cancellation, shrink."""
    ctr = torch.cat([u.flatten(-3, -2), v.flatten(-3, -2)], -2).mean(-2)[..., None, None, :]
    return u - ctr, v - ctr


def _expanded_scores(px: Tensor, sx: Tensor, py: Tensor, sy: Tensor, c: Tensor, tol: dict):
    """(..., B, M, C, N) scores sx_a + sy_b - c²‖x_a - y_b‖² as one batched GEMM of rank d + 2
    in float64 (`_pairwise_chunked`'s expansion), with u = c·(x - centre), v = c·(y - centre),
    centred on the points' common mean before scaling, in float64:

        sx_a + sy_b - ‖u_a - v_b‖² = ⟨[2u_a, sx_a - ‖u_a‖², 1], [v_b, 1, sy_b - ‖v_b‖²]⟩,

    rounded once to the inputs' dtype. Its rounding error, eps64·(2S + 8) with S the largest
    terms (`_pairwise_chunked._estimate`), is far under fp32's; where it could exceed `tol` of the
    inputs' dtype (float64 inputs at tiny σ or far from the centre) that replicate's scores are
    formed from direct differences instead (`_shifted_scores`). Also returns u, v in the inputs'
    dtype, for the backward's GEMMs.
    """
    c64 = c.double()[..., None, None, None]
    pc, qc = _centred(px.double(), py.double())
    uc, vc = pc * c64, qc * c64
    ax, ay = sx.double() - uc.square().sum(-1), sy.double() - vc.square().sum(-1)
    a = torch.cat([2 * uc, ax[..., None], torch.ones_like(ax)[..., None]], -1)
    bm = torch.cat([vc, torch.ones_like(ay)[..., None], ay[..., None]], -1)
    z = a.flatten(-3, -2) @ bm.flatten(-3, -2).transpose(-2, -1)
    z = z.to(px.dtype).view(*ax.shape, *ay.shape[-2:])
    big = ax.abs().amax((-2, -1)) + ay.abs().amax((-2, -1))
    big = big + 2 * uc.norm(dim=-1).amax((-2, -1)) * vc.norm(dim=-1).amax((-2, -1))
    exact = _estimate(big, torch.float64) > tol[px.dtype]  # (...,)
    if bool(exact.any()):
        direct = _shifted_scores(px, sx, py, sy, c)
        z = torch.where(exact[..., None, None, None, None], direct, z)
    return z, uc.to(px.dtype), vc.to(px.dtype)


def _shifted_scores(px: Tensor, sx: Tensor, py: Tensor, sy: Tensor, c: Tensor) -> Tensor:
    """(..., B, M, C, N) scores sx_a + sy_b - c²‖x_a - y_b‖² from direct differences, one
    coordinate at a time, each scaled after the subtraction (as the reference does)."""
    x, y = px[..., :, :, None, None, :], py[..., None, None, :, :, :]
    cb = c[..., None, None, None, None]
    t = torch.sub(x[..., 0], y[..., 0]).mul_(cb)
    z = torch.addcmul(sx[..., :, :, None, None], t, t, value=-1.0)
    for k in range(1, px.shape[-1]):
        t = torch.sub(x[..., k], y[..., k], out=t).mul_(cb)
        z.addcmul_(t, t, value=-1.0)
    return z.add_(sy[..., None, None, :, :])


def _point_gradients(p: Tensor, u: Tensor, v: Tensor):
    """For p of shape (..., B, M, C, N) and the centred points u (..., B, M, d), v (..., C, N, d):
    -2 Σ_{j,b} p (u_a - v_b), +2 Σ_{i,a} p (u_a - v_b), and p's row and column sums, from two
    batched GEMMs on a view of p against the points with a column of ones appended:
    Σ_{j,b} p (v_b, 1) and Σ_{i,a} p (u_a, 1)."""
    flat = p.flatten(-4, -3).flatten(-2, -1)  # (..., B·M, C·N), a view
    v1 = torch.cat([v, torch.ones_like(v[..., :1])], -1).flatten(-3, -2)
    u1 = torch.cat([u, torch.ones_like(u[..., :1])], -1).flatten(-3, -2)
    pv = (flat @ v1).unflatten(-2, u.shape[-3:-1])  # (..., B, M, d + 1)
    pu = (flat.transpose(-2, -1) @ u1).unflatten(-2, v.shape[-3:-1])  # (..., C, N, d + 1)
    rows, cols = pv[..., -1], pu[..., -1]  # (..., B, M), (..., C, N)
    gu = (u * rows[..., None] - pv[..., :-1]).mul_(-2.0)
    gv = (pu[..., :-1] - v * cols[..., None]).mul_(2.0)
    return gu, gv, rows, cols


def _unscaled(gu: Tensor, gv: Tensor, px: Tensor, py: Tensor, c: Tensor):
    """Gradients for (px, py, c) from those for u = c·px, v = c·py. c's is a sum over each
    replicate's own contiguous (B·M·d) block, so it does not depend on how many replicates share
    the call (autograd's reduction of the broadcast c did, in the last bit)."""
    cb = c[..., None, None, None]
    gc = (gu * px).flatten(-3).sum(-1) + (gv * py).flatten(-3).sum(-1)
    return gu * cb, gv * cb, gc


def _lead(*ts: Tensor) -> list[Tensor]:
    """Each tensor with a leading dim of 1: the Functions then always multiply with a batched
    GEMM, called alone or under vmap (which adds the replicate dim in front), so a replicate's
    numbers do not depend on whether it is batched (a plain GEMM may round differently)."""
    return [t[None] for t in ts]


def _batched(args: tuple, in_dims: tuple) -> tuple[list, bool]:
    """The vmap rule's inputs: batch dims moved to the front; unbatched inputs stay as they are
    (they broadcast against the leading dim)."""
    out = [a if d is None else a.movedim(d, 0) for a, d in zip(args, in_dims, strict=True)]
    return out, any(d is not None for d in in_dims)


class _KMESmall(torch.autograd.Function):
    """(px, wx, py, wy, c) -> (..., B, C): logsumexp_{a,b}(wx_a + wy_b - c²‖x_a - y_b‖²), the KME
    logits with c = 1/(√2 σ) of shape (...) (`kme_logits_small`).

    Scores from `_expanded_scores` in the layout (..., B, M, C, N), shifted by each set's largest
    log-weight so that all are ≤ 0 (the shifts are added back outside the exp); if a total
    underflows (every pair of points more than ~9 bandwidths apart) that replicate is shifted by
    its exact per-cell max instead. Backward: P = softmax · g, and `_point_gradients`.
    """

    @staticmethod
    def forward(px: Tensor, wx: Tensor, py: Tensor, wy: Tensor, c: Tensor):
        mx, my = wx.amax(-1, keepdim=True), wy.amax(-1, keepdim=True)
        z, uc, vc = _expanded_scores(px, wx - mx, py, wy - my, c, KME_TOL)  # all <= 0
        e = z.exp()
        total = e.sum(-1).sum(-2)  # (..., B, C)
        shift = mx + my.transpose(-2, -1)  # (..., B, 1) + (..., 1, C)
        under = ~(total > _TINY[total.dtype]).flatten(-2).all(-1)  # (...,) per replicate
        if bool(under.any()):  # far-apart points: those replicates shift by the true max
            m = z.amax(-1, keepdim=True).amax(-3, keepdim=True)  # (..., B, 1, C, 1)
            m = m.masked_fill(m.abs() == float("inf"), 0.0)
            m = torch.where(under[..., None, None, None, None], m, 0.0)
            e = torch.exp(z - m)
            total = e.sum(-1).sum(-2)
            shift = shift + m[..., :, 0, :, 0]
        return total.log() + shift, e, total, uc, vc

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        px, _, py, _, c = inputs
        _, e, total, uc, vc = output
        ctx.mark_non_differentiable(e, total, uc, vc)
        ctx.save_for_backward(e, total, uc, vc, px, py, c)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor, *_):
        e, total, u, v, px, py, c = ctx.saved_tensors  # u, v centred
        p = e * (g / total)[..., :, None, :, None]  # (..., B, M, C, N): softmax times g
        gu, gv, rows, cols = _point_gradients(p, u, v)
        gpx, gpy, gc = _unscaled(gu, gv, px, py, c)
        return gpx, rows, gpy, cols, gc

    @staticmethod
    def vmap(info, in_dims, *args):
        batched, any_batched = _batched(args, in_dims)
        return _KMESmall.apply(*batched), (0 if any_batched else None,) * 5


_TINY = {t: torch.finfo(t).tiny * 2.0**10 for t in (torch.float32, torch.float64, torch.bfloat16)}


def kme_logits_small(px: Tensor, wx: Tensor, py: Tensor, wy: Tensor, sigma) -> Tensor:
    """`_pairwise.kme_logits_naive`'s (B, C) values with the fused backward above."""
    sigma = torch.as_tensor(sigma, dtype=px.dtype, device=px.device)
    c = torch.rsqrt(2 * sigma**2)  # ‖u - v‖²/(2σ²) = ‖c·u - c·v‖²
    return _KMESmall.apply(*_lead(px, wx, py, wy, c))[0][0]


class _GaussSum(torch.autograd.Function):
    """(px, wx, py, wy, c) -> (..., B, C): Σ_{a,b} wx_a wy_b exp(-c²‖x_a - y_b‖²), WPSE's Gaussian
    kernel sum with c = 1/(√2 σ) (`wpse_logits_small`).

    Kernel values from `_expanded_scores` (WPSE_TOL), exponentiated in place, in the layout
    (..., B, M, C, N). Backward, with W = g_ij wx_a wy_b and P = W·K:
        ∂/∂wx_a = Σ_j g_ij Σ_b K wy_b (kept from the forward),  ∂/∂wy_b = Σ_{i,a} g_ij wx_a K,
        ∂/∂u_a = -2 Σ_{j,b} P (u_a - v_b),  ∂/∂v_b = +2 Σ_{i,a} P (u_a - v_b)  (`_point_gradients`).
    """

    @staticmethod
    def forward(px: Tensor, wx: Tensor, py: Tensor, wy: Tensor, c: Tensor):
        zeros_x, zeros_y = torch.zeros_like(wx), torch.zeros_like(wy)
        k, uc, vc = _expanded_scores(px, zeros_x, py, zeros_y, c, WPSE_TOL)
        k = k.exp_()  # (..., B, M, C, N)
        kw = (k * wy[..., None, None, :, :]).sum(-1)  # (..., B, M, C): Σ_b K wy_b
        out = (kw * wx[..., None]).sum(-2)  # (..., B, C)
        return out, k, kw, uc, vc

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        px, wx, py, wy, c = inputs
        _, k, kw, uc, vc = output
        ctx.mark_non_differentiable(k, kw, uc, vc)
        ctx.save_for_backward(wx, wy, k, kw, uc, vc, px, py, c)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor, *_):
        wx, wy, k, kw, u, v, px, py, c = ctx.saved_tensors  # u, v centred
        gwx = (kw * g[..., :, None, :]).sum(-1)  # (..., B, M)
        q = k * (g[..., :, None, :] * wx[..., None])[..., None]  # (..., B, M, C, N): g wx K
        gwy = q.sum((-4, -3))  # (..., C, N): Σ_{i,a} g wx K
        p = q.mul_(wy[..., None, None, :, :])  # P = W·K, in place of q (not needed any more)
        gu, gv, _, _ = _point_gradients(p, u, v)
        gpx, gpy, gc = _unscaled(gu, gv, px, py, c)
        return gpx, gwx, gpy, gwy, gc

    @staticmethod
    def vmap(info, in_dims, *args):
        batched, any_batched = _batched(args, in_dims)
        return _GaussSum.apply(*batched), (0 if any_batched else None,) * 5


def wpse_logits_small(
    px: Tensor,
    wx: Tensor,
    py: Tensor,
    wy: Tensor,
    sigma,
    alpha_linear=0.0,
    alpha_kernel=1.0,
) -> Tensor:
    """`_pairwise.wpse_logits_naive`'s (B, C) values for the Gaussian kernel, with the fused
    backward of `_GaussSum`; the linear part is ⟨Σ_a wx_a x_a, Σ_b wy_b y_b⟩ on (B, d) tensors."""
    m, n = px.shape[-2], py.shape[-2]
    sigma = torch.as_tensor(sigma, dtype=px.dtype, device=px.device)
    c = torch.rsqrt(2 * sigma**2)  # ‖x - y‖²/(2σ²) = ‖c·x - c·y‖²
    out = alpha_kernel * _GaussSum.apply(*_lead(px, wx, py, wy, c))[0][0]
    if not (isinstance(alpha_linear, float | int) and alpha_linear == 0):
        # the weighted sums and their GEMM, written so that a replicate's numbers do not depend
        # on vmap (a reduction per row; a batched GEMM called alone too, as in `_lead`)
        sx, sy = (wx[..., None] * px).sum(-2), (wy[..., None] * py).sum(-2)  # (B, d), (C, d)
        out = out + alpha_linear * (sx[None] @ sy[None].mT)[0]
    return out / (m * n)

"""Memory-bounded block reductions of a low-rank score matrix (THEORY.md T2, DESIGN.md "Performance").

Both point-set heads reduce, for every pair of sets (i, j), an M×N block of scores

    z[i,a,j,b] = ⟨A[i,a], Bm[j,b]⟩,      A: (B·M, k),  Bm: (C·N, k)

where the callers fold ‖u−v‖² = ‖u‖² + ‖v‖² − 2⟨u,v⟩, the bandwidth and the log-weights into the
k = d + 2 columns of A and Bm. The full (B·M, C·N) score matrix is never stored: it is computed one
tile of whole blocks at a time with a GEMM into a reused buffer, reduced, and recomputed in
backward (flash-attention style). Memory is O(B·C + (B+C)·M·k + tile), time is the three GEMMs
of 2·B·C·M·N·k FLOPs each plus a few elementwise passes per tile.

- `BlockLogSumExp`: L[i,j] = logsumexp_{a,b} z[i,a,j,b]                      (KME)
- `BlockWeightedKernelSum`: S[i,j] = Σ_{a,b} wx[i,a] wy[j,b] k(z[i,a,j,b])   (WPSE), with
  k = exp (Gaussian, z = −‖u−v‖²/(2σ²)) or k = max(z, 1)^{-1/2} (IMQ, z = 1 + ‖u−v‖²/σ²).

The Functions take and return the input dtype; callers upcast half precision to fp32 first.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

# One tile holds TILE_ELEMS scores: 2**19 fp32 numbers = 2 MiB, small enough to stay in the
# CPU's L2/L3 cache between the GEMM that writes it and the elementwise passes that read it
# (measured on the 2-core EPYC: elementwise passes run ~1.5x faster than on 32 MiB tiles).
TILE_ELEMS = 1 << 19
# Columns of a tile: wide enough that the GEMM stays near its peak rate.
TILE_COLS = 4096


def tiles(b: int, c: int, m: int, n: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield (i0, i1, j0, j1) covering the (B, C) pairs once; each tile is ≤ TILE_ELEMS scores.

    A tile always holds whole M×N blocks; one block larger than the budget is its own tile.
    """
    budget = TILE_ELEMS
    cj = max(1, min(c, TILE_COLS // n, budget // (m * n)))
    bi = max(1, min(b, budget // (m * cj * n)))
    for i0 in range(0, b, bi):
        for j0 in range(0, c, cj):
            yield i0, min(b, i0 + bi), j0, min(c, j0 + cj)


def _buffer(a: Tensor, b: int, c: int, m: int, n: int) -> Tensor:
    """Flat scratch space for the largest tile `tiles` yields."""
    return a.new_empty(min(b * c * m * n, max(TILE_ELEMS, m * n)))


def _scores(a: Tensor, bm: Tensor, buf: Tensor, shape: tuple[int, int, int, int]) -> Tensor:
    """z = a @ bmᵀ written into buf, returned as a (bi, M, cj, N) view."""
    rows, cols = a.shape[0], bm.shape[0]
    z = torch.mm(a, bm.T, out=buf[: rows * cols].view(rows, cols))
    return z.view(shape)


class BlockLogSumExp(torch.autograd.Function):
    """(A (B·M, k), Bm (C·N, k), M, N) -> L (B, C) = logsumexp over each M×N block of A Bmᵀ."""

    @staticmethod
    def forward(ctx, a: Tensor, bm: Tensor, m: int, n: int) -> Tensor:
        b, c = a.shape[0] // m, bm.shape[0] // n
        out = a.new_empty(b, c)
        buf = _buffer(a, b, c, m, n)
        for i0, i1, j0, j1 in tiles(b, c, m, n):
            z = _scores(a[i0 * m : i1 * m], bm[j0 * n : j1 * n], buf, (i1 - i0, m, j1 - j0, n))
            mx = z.amax(dim=3).amax(dim=1)  # (bi, cj); two one-dim reductions are faster here
            z.sub_(mx[:, None, :, None]).exp_()
            out[i0:i1, j0:j1] = mx + z.sum(dim=3).sum(dim=1).log_()
        ctx.save_for_backward(a, bm, out)
        ctx.mn = (m, n)
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        a, bm, out = ctx.saved_tensors
        with torch.autocast(a.device.type, enabled=False):  # backward(), if called under autocast
            return BlockLogSumExp._backward(ctx, g, a, bm, out)

    @staticmethod
    def _backward(ctx, g: Tensor, a: Tensor, bm: Tensor, out: Tensor):
        m, n = ctx.mn
        b, c = out.shape
        ga, gb = torch.zeros_like(a), torch.zeros_like(bm)
        g = g.contiguous()
        buf = _buffer(a, b, c, m, n)
        for i0, i1, j0, j1 in tiles(b, c, m, n):
            ai, bj = a[i0 * m : i1 * m], bm[j0 * n : j1 * n]
            z = _scores(ai, bj, buf, (i1 - i0, m, j1 - j0, n))
            # softmax weight of each score times the upstream gradient: g_ij exp(z - L_ij)
            z.sub_(out[i0:i1, j0:j1, None][:, None]).exp_().mul_(g[i0:i1, j0:j1, None][:, None])
            gz = z.view(ai.shape[0], bj.shape[0])
            ga[i0 * m : i1 * m].addmm_(gz, bj)
            gb[j0 * n : j1 * n].addmm_(gz.T, ai)
        return ga, gb, None, None


def _kernel_(z: Tensor, kernel: str) -> Tensor:
    """k(z) in place: exp for the Gaussian, max(z, 1)^{-1/2} for the IMQ (z = 1 + d²/σ² ≥ 1)."""
    if kernel == "gaussian":
        return z.exp_()
    return z.clamp_min_(1.0).rsqrt_()


class BlockWeightedKernelSum(torch.autograd.Function):
    """(A, Bm, wx (B, M), wy (C, N), kernel) -> S (B, C) = Σ_ab wx wy k(⟨A_ia, Bm_jb⟩)."""

    @staticmethod
    def forward(ctx, a: Tensor, bm: Tensor, wx: Tensor, wy: Tensor, kernel: str) -> Tensor:
        (b, m), (c, n) = wx.shape, wy.shape
        out = a.new_empty(b, c)
        buf = _buffer(a, b, c, m, n)
        for i0, i1, j0, j1 in tiles(b, c, m, n):
            z = _scores(a[i0 * m : i1 * m], bm[j0 * n : j1 * n], buf, (i1 - i0, m, j1 - j0, n))
            kw = _kernel_(z, kernel).mul_(wy[None, None, j0:j1])  # (bi, M, cj, N)
            out[i0:i1, j0:j1] = torch.einsum("iaj,ia->ij", kw.sum(dim=3), wx[i0:i1])
        ctx.save_for_backward(a, bm, wx, wy)
        ctx.kernel = kernel
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        a, bm, wx, wy = ctx.saved_tensors
        with torch.autocast(a.device.type, enabled=False):
            return BlockWeightedKernelSum._backward(ctx, g, a, bm, wx, wy)

    @staticmethod
    def _backward(ctx, g: Tensor, a: Tensor, bm: Tensor, wx: Tensor, wy: Tensor):
        (b, m), (c, n) = wx.shape, wy.shape
        ga, gb = torch.zeros_like(a), torch.zeros_like(bm)
        gwx, gwy = torch.zeros_like(wx), torch.zeros_like(wy)
        g = g.contiguous()
        buf, buf2 = _buffer(a, b, c, m, n), _buffer(a, b, c, m, n)
        for i0, i1, j0, j1 in tiles(b, c, m, n):
            ai, bj = a[i0 * m : i1 * m], bm[j0 * n : j1 * n]
            shape = (i1 - i0, m, j1 - j0, n)
            k = _kernel_(_scores(ai, bj, buf, shape), ctx.kernel)  # (bi, M, cj, N)
            gw = g[i0:i1, None, j0:j1, None] * wx[i0:i1, :, None, None]  # g_ij wx_ia
            u = torch.mul(k, gw, out=buf2[: k.numel()].view(shape))  # g_ij wx_ia k
            gwy[j0:j1] += u.sum(dim=(0, 1))
            if ctx.kernel == "imq":  # dk/dz = -k³/2 where z > 1
                u.mul_(k).mul_(k).mul_(-0.5)
            u.mul_(wy[None, None, j0:j1])  # dS/dz, times g
            kw = k.mul_(wy[None, None, j0:j1]).sum(dim=3)  # (bi, M, cj): Σ_b wy_jb k
            gwx[i0:i1] += torch.einsum("iaj,ij->ia", kw, g[i0:i1, j0:j1])
            gz = u.view(ai.shape[0], bj.shape[0])
            ga[i0 * m : i1 * m].addmm_(gz, bj)
            gb[j0 * n : j1 * n].addmm_(gz.T, ai)
        return ga, gb, gwx, gwy, None

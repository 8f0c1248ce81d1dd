"""Memory-bounded block reductions of a low-rank score matrix (docs/theory.md T2, docs/architecture.md "Performance").

Both point-set heads reduce, for every pair of sets (i, j), an M×N block of scores

    z[i,a,j,b] = ⟨A[i,a], Bm[j,b]⟩,      A: (B·M, k),  Bm: (C·N, k)

where the callers fold ‖u−v‖² = ‖u‖² + ‖v‖² − 2⟨u,v⟩, the bandwidth and the log-weights into the
k ≈ d + 2 columns of A and Bm. The full (B·M, C·N) score matrix is never stored: it is computed one
tile of whole blocks at a time with a GEMM into a reused buffer, reduced, and recomputed in
backward (flash-attention style). Memory is O(B·C + (B+C)·M·k + tile), time is the three GEMMs
of 2·B·C·M·N·k FLOPs each plus a few elementwise passes per tile.

- `BlockLogSumExp`: L[i,j] = logsumexp_{a,b} z[i,a,j,b]                      (KME)
- `BlockWeightedKernelSum`: S[i,j] = Σ_{a,b} wx[i,a] wy[j,b] k(z[i,a,j,b])   (WPSE), with
  k = exp (Gaussian, z = −‖u−v‖²/(2σ²)) or k = max(z, 1)^{-1/2} (IMQ, z = 1 + ‖u−v‖²/σ²).

The Functions take and return the input dtype; callers upcast half precision to fp32 first.

CPU threading: a tile's ops are small, and on a loaded machine an OpenMP barrier per op stalls
whenever one core is taken (measured: 2 threads 18x slower than 1 on the shared 2-core hosts).
So the tiles are shared out to torch.get_num_threads() python threads, each running its ops
single-threaded and pulling the next row of tiles when done (torch releases the GIL). While
they run, torch's intra-op thread count is set to 1 process-wide and restored afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

# One tile holds TILE_ELEMS scores: 2**19 fp32 numbers = 2 MiB, small enough to stay in the
# CPU's L2/L3 cache between the GEMM that writes it and the elementwise passes that read it
# (measured on the 2-core EPYC: elementwise passes run ~1.5x faster than on 32 MiB tiles).
TILE_ELEMS = 1 << 19
# Columns of a tile (score columns, i.e. cj·N). Tall tiles suit the backward GEMM (A-tileᵀ @ g),
# whose inner dimension is the tile's row count: measured on the 2-core EPYC at B = 1024, fwd+bwd
# time / GEMM floor for 4096 / 1024 / 512 / 256 columns: 2.8 / 2.6 / 2.45 / 2.7 (M = 8, d = 64)
# and 2.1 / 1.8 / 1.8 (M = 4, d = 256).
TILE_COLS = 512


# On a GPU, tiles are made larger so each kernel launch has work: 2**24 scores (64 MiB fp32).
# (Untested on hardware in this project so far; the tiling logic is the CPU's.)
CUDA_TILE_ELEMS = 1 << 24
CUDA_TILE_COLS = 1 << 14


def _tile_shape(device: torch.device | None) -> tuple[int, int]:
    if device is not None and device.type == "cuda":
        return CUDA_TILE_ELEMS, CUDA_TILE_COLS
    return TILE_ELEMS, TILE_COLS


def tiles(
    b: int, c: int, m: int, n: int, device: torch.device | None = None
) -> Iterator[tuple[int, int, int, int]]:
    """Yield (i0, i1, j0, j1) covering the (B, C) pairs once; each tile is ≤ TILE_ELEMS scores
    (CUDA_TILE_ELEMS on a GPU).

    A tile always holds whole M×N blocks; one block larger than the budget is its own tile.
    """
    budget, width = _tile_shape(device)
    cj = max(1, min(c, width // n, budget // (m * n)))
    bi = max(1, min(b, budget // (m * cj * n)))
    for i0 in range(0, b, bi):
        for j0 in range(0, c, cj):
            yield i0, min(b, i0 + bi), j0, min(c, j0 + cj)


def _buffer(a: Tensor, b: int, c: int, m: int, n: int) -> Tensor:
    """Flat scratch space for the largest tile `tiles` yields."""
    return a.new_empty(min(b * c * m * n, max(_tile_shape(a.device)[0], m * n)))


LN2 = 0.6931471805599453


def _block_sum(e: Tensor) -> Tensor:
    """(bi, M, cj, N) -> (bi, cj): the sum of each block; rows first (vectorised across the
    row), then the short contiguous runs of N (3x faster than the other order, measured)."""
    return e.sum(dim=1).sum(dim=2)


def _scores(a: Tensor, bm: Tensor, buf: Tensor, shape: tuple[int, int, int, int]) -> Tensor:
    """z = a @ bmᵀ written into buf, returned as a (bi, M, cj, N) view."""
    rows, cols = a.shape[0], bm.shape[0]
    z = torch.mm(a, bm.T, out=buf[: rows * cols].view(rows, cols))
    return z.view(shape)


def _run_rows(
    b: int, c: int, m: int, n: int, device: torch.device, work: Callable, state: Callable
):
    """Call work(row_of_tiles, st) for every row of tiles; returns the per-worker states `st`.

    Rows go to torch.get_num_threads() single-threaded workers on the CPU (see module docstring);
    one worker writes whole rows, so per-row outputs never race; column-indexed accumulators
    live in the per-worker state and are summed by the caller.
    """
    rows: dict[int, list] = {}
    for t in tiles(b, c, m, n, device):
        rows.setdefault(t[0], []).append(t)
    queue, lock = iter(list(rows.values())), threading.Lock()
    workers = min(len(rows), torch.get_num_threads()) if device.type == "cpu" else 1

    def run(_: int):
        if workers > 1:
            torch.set_num_threads(1)
        st = state()
        with torch.no_grad():
            while True:
                with lock:
                    row = next(queue, None)
                if row is None:
                    return st
                work(row, st)

    if workers <= 1:
        return [run(0)]
    prev = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(run, range(workers)))
    finally:
        torch.set_num_threads(prev)


# Scores are computed in base 2 (z·log2 e, by scaling A's copy) and exponentiated with exp2,
# which torch's CPU kernels run ~1.4x faster than exp (measured); values are unchanged.
LOG2E = 1.4426950408889634


def _base2(a: Tensor) -> Tensor:
    """A copy of A scaled by log2(e): its scores z·log2(e) go through exp2 instead of exp."""
    return a * LOG2E


# A tile's sums of exp(z) must lie in [SUM_LO, SUM_HI] for the shift-free path (see
# BlockLogSumExp): above SUM_LO the largest term is a normal float (≥ SUM_LO / (M·N)), below
# SUM_HI nothing overflowed. Outside, the tile is redone with the exact per-block max.
SUM_LO = {torch.float32: 2.0**-100, torch.float64: 2.0**-900}
SUM_HI = {torch.float32: 2.0**100, torch.float64: 2.0**900}


def per_replicate(fn: type[torch.autograd.Function], info, in_dims: tuple, args: tuple):
    """The vmap rule of the block Functions: fn.apply once per replicate, outputs stacked on dim 0.

    Each replicate's numbers are then exactly what it gets alone (the tiles, the exact-max test
    and the threads see one replicate's tensors). Arguments with in_dim None (ints, the kernel
    name, unbatched tensors) are shared. Autograd outside vmap records one Function per replicate,
    so backward works as for separate calls; torch.func.grad inside vmap would run backward on
    batched tensors, whose data-dependent tile tests cannot be batched, and is not supported.
    """
    dims = [d if isinstance(d, int) else None for d in in_dims]  # a tuple arg has a tuple of Nones
    moved = [a if d is None else a.movedim(d, 0) for a, d in zip(args, dims, strict=True)]
    outs = [
        fn.apply(*(a if d is None else a[r] for a, d in zip(moved, dims, strict=True)))
        for r in range(info.batch_size)
    ]
    if isinstance(outs[0], tuple):
        return tuple(torch.stack(o) for o in zip(*outs, strict=True)), (0,) * len(outs[0])
    return torch.stack(outs), 0


class BlockLogSumExp(torch.autograd.Function):
    """(A (B·M, k), Bm (C·N, k), M, N) -> L (B, C) = logsumexp over each M×N block of A Bmᵀ.

    The caller shifts the scores so that they are ≤ 0 and usually ≥ −80 (KME: minus the largest
    log-weights). Then log Σ exp(z) needs no per-block max: one GEMM, one exp, one sum. Tiles
    whose sums leave [SUM_LO, SUM_HI] (far-apart sets, tiny σ) are redone with the exact max,
    and their backward subtracts L before the exp; the others fold exp(−L) into the gradient.
    """

    @staticmethod
    def forward(a: Tensor, bm: Tensor, m: int, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """-> (L (B, C), L in base 2, which tiles took the exact max): the last two are for
        backward only (setup_context sees inputs and outputs, nothing else)."""
        b, c = a.shape[0] // m, bm.shape[0] // n
        out2 = a.new_empty(b, c)  # log2 Σ 2^(z log2 e), kept for backward in the same base
        exact = torch.zeros(b, c, dtype=torch.bool, device=a.device)  # tiles done with the max
        lo, hi = SUM_LO[a.dtype], SUM_HI[a.dtype]

        a2 = _base2(a)

        def work(row, buf):
            for i0, i1, j0, j1 in row:
                ai, bj, shape = a2[i0 * m : i1 * m], bm[j0 * n : j1 * n], (i1 - i0, m, j1 - j0, n)
                s = _block_sum(_scores(ai, bj, buf, shape).exp2_())  # (bi, cj)
                if bool(((s >= lo) & (s <= hi)).all()):
                    out2[i0:i1, j0:j1] = s.log2_()
                    continue
                z = _scores(ai, bj, buf, shape)  # base-2 scores
                mx = z.amax(dim=1).amax(dim=2)  # (bi, cj)
                z.sub_(mx[:, None, :, None]).exp2_()
                out2[i0:i1, j0:j1] = mx + _block_sum(z).log2_()
                exact[i0:i1, j0:j1] = True

        _run_rows(b, c, m, n, a.device, work, lambda: _buffer(a, b, c, m, n))
        return out2 * LN2, out2, exact

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        a, bm, m, n = inputs
        _, out2, exact = output
        ctx.mark_non_differentiable(out2, exact)
        ctx.save_for_backward(a, bm, out2, exact)
        ctx.mn = (m, n)

    @staticmethod
    def vmap(info, in_dims, *args):
        return per_replicate(BlockLogSumExp, info, in_dims, args)

    @staticmethod
    def backward(ctx, g: Tensor, _g2=None, _ge=None):
        a, bm, out, exact = ctx.saved_tensors
        with torch.autocast(a.device.type, enabled=False):  # backward(), if called under autocast
            return BlockLogSumExp._backward(ctx, g.contiguous(), a, bm, out, exact)

    @staticmethod
    def _backward(ctx, g: Tensor, a: Tensor, bm: Tensor, out: Tensor, exact: Tensor):
        m, n = ctx.mn
        b, c = out.shape
        ga, a2 = torch.zeros_like(a), _base2(a)

        def work(row, st):
            buf, gb = st
            for i0, i1, j0, j1 in row:
                ai, bj = a[i0 * m : i1 * m], bm[j0 * n : j1 * n]
                z = _scores(a2[i0 * m : i1 * m], bj, buf, (i1 - i0, m, j1 - j0, n))  # base 2
                # softmax weight of each score times the upstream gradient: g_ij exp(z - L_ij),
                # in base 2 with the forward's own log2-sum (consistent roundings)
                lij, gij = out[i0:i1, j0:j1, None][:, None], g[i0:i1, j0:j1, None][:, None]
                if bool(exact[i0, j0]):
                    z.sub_(lij).exp2_().mul_(gij)
                else:  # here 2^(-L2) ≤ 1/SUM_LO: no overflow
                    z.exp2_().mul_(gij * lij.neg().exp2())
                gz = z.view(ai.shape[0], bj.shape[0])
                ga[i0 * m : i1 * m].addmm_(gz, bj)
                gb[j0 * n : j1 * n].addmm_(gz.T, ai)

        states = _run_rows(
            b, c, m, n, a.device, work, lambda: (_buffer(a, b, c, m, n), torch.zeros_like(bm))
        )
        return ga, sum(st[1] for st in states), None, None


def _kernel_(z: Tensor, kernel: str) -> Tensor:
    """k(z) in place: exp for the Gaussian, max(z, 1)^{-1/2} for the IMQ (z = 1 + d²/σ² ≥ 1)."""
    if kernel == "gaussian":  # z in base 2 (see _base2)
        return z.exp2_()
    return z.clamp_min_(1.0).rsqrt_()


class BlockWeightedKernelSum(torch.autograd.Function):
    """(A, Bm, wx (B, M), wy (C, N), kernel, ones) -> S (B, C) = Σ_ab wx wy k(⟨A_ia, Bm_jb⟩).

    ones = (column of A that is all ones, column of Bm that is all ones). Backward multiplies the
    recomputed kernel values by g_ij only, and moves the weights into the GEMM operands:
    T_A = (g k) @ (wy ⊙ Bm), T_B = (g k)ᵀ @ (wx ⊙ A); then ∂/∂A = wx ⊙ T_A, ∂/∂Bm = wy ⊙ T_B and,
    through the ones columns, ∂/∂wx = T_A[:, ones_b], ∂/∂wy = T_B[:, ones_a] (Gaussian: dk/dz = k).
    """

    @staticmethod
    def forward(a, bm, wx, wy, kernel: str, ones: tuple[int, int]) -> Tensor:
        (b, m), (c, n) = wx.shape, wy.shape
        out = a.new_empty(b, c)
        az = _base2(a) if kernel == "gaussian" else a

        def work(row, buf):
            for i0, i1, j0, j1 in row:
                z = _scores(az[i0 * m : i1 * m], bm[j0 * n : j1 * n], buf, (i1 - i0, m, j1 - j0, n))
                kw = _kernel_(z, kernel).mul_(wx[i0:i1, :, None, None]).sum(dim=1)  # (bi, cj, N)
                out[i0:i1, j0:j1] = (kw * wy[None, j0:j1]).sum(dim=2)

        _run_rows(b, c, m, n, a.device, work, lambda: _buffer(a, b, c, m, n))
        return out

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        a, bm, wx, wy, kernel, ones = inputs
        ctx.save_for_backward(a, bm, wx, wy)
        ctx.kernel, ctx.ones = kernel, ones

    @staticmethod
    def vmap(info, in_dims, *args):
        return per_replicate(BlockWeightedKernelSum, info, in_dims, args)

    @staticmethod
    def backward(ctx, g: Tensor):
        a, bm, wx, wy = ctx.saved_tensors
        with torch.autocast(a.device.type, enabled=False):
            grads = BlockWeightedKernelSum._backward(ctx, g.contiguous(), a, bm, wx, wy)
        return (*grads, None, None)

    @staticmethod
    def _backward(ctx, g: Tensor, a: Tensor, bm: Tensor, wx: Tensor, wy: Tensor):
        (b, m), (c, n) = wx.shape, wy.shape
        aw, bw = a * wx.reshape(-1, 1), bm * wy.reshape(-1, 1)  # (B·M, k), (C·N, k)
        imq = ctx.kernel == "imq"
        az = a if imq else _base2(a)
        ta = torch.zeros_like(a)
        gwx = torch.zeros_like(wx) if imq else None

        def work(row, st):
            buf, buf2, tb, gwy = st
            for i0, i1, j0, j1 in row:
                rows, cols = slice(i0 * m, i1 * m), slice(j0 * n, j1 * n)
                shape, gij = (i1 - i0, m, j1 - j0, n), g[i0:i1, None, j0:j1, None]
                k = _kernel_(_scores(az[rows], bm[cols], buf, shape), ctx.kernel)
                if imq:  # the weights' gradients need g k; the points' need g dk/dz = -g k³/2
                    u = torch.mul(k, gij, out=buf2[: k.numel()].view(shape))
                    u2 = u.view(a[rows].shape[0], bm[cols].shape[0])
                    gwx[i0:i1] += (u2 @ wy[j0:j1].reshape(-1)).view(i1 - i0, m)
                    gwy[j0:j1] += (u2.T @ wx[i0:i1].reshape(-1)).view(j1 - j0, n)
                    u.mul_(k).mul_(k).mul_(-0.5)
                else:
                    u = k.mul_(gij)  # g_ij k, (bi, M, cj, N)
                u2 = u.view(a[rows].shape[0], bm[cols].shape[0])
                ta[rows].addmm_(u2, bw[cols])
                tb[cols].addmm_(u2.T, aw[rows])

        def state():
            buf2 = _buffer(a, b, c, m, n) if imq else None
            return _buffer(a, b, c, m, n), buf2, torch.zeros_like(bm), torch.zeros_like(wy)

        states = _run_rows(b, c, m, n, a.device, work, state)
        tb = sum(st[2] for st in states)
        if not imq:
            gwx = ta[:, ctx.ones[1]].view(b, m)
            gwy = tb[:, ctx.ones[0]].view(c, n)
        else:
            gwy = sum(st[3] for st in states)
        return ta * wx.reshape(-1, 1), tb * wy.reshape(-1, 1), gwx, gwy

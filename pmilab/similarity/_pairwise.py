"""Pairwise point-set reductions shared by the KME and WPSE heads (docs/theory.md T2).

Contract (owned here, used by `similarity.kme` and `similarity.wpse`):

    kme_logits(px, wx, py, wy, sigma)            -> (B, C)
        logsumexp_{a,b}( wx[i,a] + wy[j,b] - ||px[i,a] - py[j,b]||^2 / (2 sigma^2) )
    wpse_logits(px, wx, py, wy, sigma, alpha_linear, alpha_kernel, kernel="gaussian")  -> (B, C)
        1/(M N) sum_{a,b} wx[i,a] wy[j,b] [ alpha_linear <px_a, py_b> + alpha_kernel k(px_a, py_b) ]
        k = exp(-||u-v||^2/(2 sigma^2))  ("gaussian")  or  1/sqrt(1 + ||u-v||^2/sigma^2)  ("imq")

Shapes: px (B, M, d), wx (B, M), py (C, N, d), wy (C, N). sigma, alpha_* are python floats or
0-dim tensors (they may require grad; gradients flow to all inputs).

The public functions are memory-bounded: they never hold the (B, C, M, N) scores (see
`_pairwise_blocks`, and `_pairwise_exact` for the pairs the GEMM expansion cannot resolve).
They compute in fp32 for half-precision inputs or under autocast, in float64 for float64 inputs.
`_backend` picks the implementation: CUDA tensors in fp32/bf16/fp16 run the fused Triton kernels
(`_triton_kme`, `_triton_wpse`; docs/theory.md T2) when Triton is installed, everything else (CPU,
float64) the chunked torch code, unchanged. $PMILAB_TRITON_VARIANT picks the kernels' variant
(`triton_variant`: tiled by default, or the point sets flattened into the tile). The kernels
multiply bf16/fp16 points as given, accumulating in fp32.
The `*_naive` versions materialise (B, C, M, N, d) and are the brute-force references the tests
compare against; the `*_einsum` versions materialise (B, C, M, N) with autograd, the usual
implementation, and are the benchmarks' "naive" baseline.
"""

from __future__ import annotations

import importlib.util
import os
from functools import cache

import torch
from torch import Tensor

from pmilab.errors import InputError
from pmilab.similarity._pairwise_chunked import kme_chunked, wpse_chunked


def sq_dists(px: Tensor, py: Tensor) -> Tensor:
    """(B, C, M, N) squared distances ||px[i,a] - py[j,b]||^2 (direct differences)."""
    return pair_sq_dists(px[:, None, :, None, :], py[None, :, None, :, :])


def _sq_dists_materialised(px: Tensor, py: Tensor) -> Tensor:
    """`sq_dists` as it was: materialises (B, C, M, N, d). The tests' bit-for-bit reference."""
    diff = px[:, None, :, None, :] - py[None, :, None, :, :]  # (B, C, M, N, d)
    return diff.pow(2).sum(-1)


# Point dimensions up to SMALL_D get their squared distances coordinate by coordinate
# (`_SmallDSqDists`), bit for bit equal to `(x - y).pow(2).sum(-1)`, values and gradients: torch's
# CPU sum adds up to 4 elements in index order, which the coordinate loop repeats (measured,
# fp32 and float64, tests/similarity/test_small_d.py); from d = 5 it keeps 4 interleaved partial
# sums, so the forward values differ in the last bit. At B = 24, C = 20, M = N = 8, d = 2 a KME
# training step is about as fast as before: the bit-identical backward must reduce the same
# (..., d) gradient tensor (benchmarks/results/small_d_distances.md). d = 1 keeps the reference:
# there is no sum to save, and the Function's overhead made it slower (measured 0.76x).
SMALL_D = 4


def pair_sq_dists(x: Tensor, y: Tensor) -> Tensor:
    """||x - y||^2 over the last axis of two broadcastable (..., d) tensors: the one owner of the
    direct-difference squared distances of `sq_dists` and the heads' `paired_logits`.

    Equal bit for bit to `(x - y).pow(2).sum(-1)`, forward and gradients; for 2 <= d <= SMALL_D
    and row-major operands (`_row_major`) without the (..., d) difference in the forward.
    """
    if 2 <= x.shape[-1] <= SMALL_D and _row_major(x) and _row_major(y):
        return _SmallDSqDists.apply(x, y)
    return (x - y).pow(2).sum(-1)


def _row_major(t: Tensor) -> bool:
    """True when t's non-broadcast dims (size > 1, stride != 0) have decreasing strides.

    Then torch lays out x - y, and the gradient g[..., None] * 2 (x - y) of a row-major g,
    contiguously (TensorIterator keeps the dims' order when no operand asks to swap them): the
    layout `_SmallDSqDists.backward` writes, so its reductions add in the same order.
    """
    if torch._C._functorch.is_functorch_wrapped_tensor(t):  # strides hidden: take the reference
        return False
    s = [st for size, st in zip(t.shape, t.stride(), strict=True) if size > 1 and st != 0]
    return all(a > b for a, b in zip(s, s[1:], strict=False))


class _SmallDSqDists(torch.autograd.Function):
    """(x (..., d), y (..., d)) -> sum_k (x_k - y_k)^2, coordinate by coordinate (see SMALL_D).

    Forward: one (broadcast shape) tensor per coordinate instead of the (..., d) difference, whose
    `pow` and `sum` over a last axis of size 2 took 42% of a KME training step. Backward: the
    reference's own gradient, g * 2 (x - y) summed to each input's shape, written coordinate by
    coordinate into the contiguous (..., d) tensor the reference reduces, so it is reduced in the
    same order (a sum over the broadcast dims of each coordinate separately is not: it measured
    different in the last bit). Under vmap the batch dims are moved to the front: the op
    broadcasts over leading dims.
    """

    @staticmethod
    def forward(x: Tensor, y: Tensor) -> Tensor:
        return coordinate_sq_dists(x, y)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, y = ctx.saved_tensors
        if _row_major(g):
            xs, ys = _coordinates(x, y)
            grad = g.new_empty(*g.shape, x.shape[-1])  # contiguous, as the reference's
            for k, (xk, yk) in enumerate(zip(xs, ys, strict=True)):
                torch.mul(g, torch.sub(xk, yk).mul_(2.0), out=grad[..., k])
        else:  # the reference's backward ops as they are (pow's: grad * (2 * self))
            grad = g[..., None] * ((x - y) * 2.0)
        gx = grad.sum_to_size(x.shape) if ctx.needs_input_grad[0] else None
        gy = grad.neg().sum_to_size(y.shape) if ctx.needs_input_grad[1] else None
        return gx, gy

    @staticmethod
    def vmap(info, in_dims, x: Tensor, y: Tensor):
        """Batch dims to the front; an unbatched operand broadcasts against them."""
        xb = x if in_dims[0] is None else x.movedim(in_dims[0], 0)
        yb = y if in_dims[1] is None else y.movedim(in_dims[1], 0)
        return _SmallDSqDists.apply(xb, yb), 0


def coordinate_sq_dists(x: Tensor, y: Tensor) -> Tensor:
    """sum_k (x_k - y_k)^2 of two broadcastable (..., d) tensors, coordinate by coordinate: for
    2 <= d <= SMALL_D bit for bit `(x - y).pow(2).sum(-1)` (see SMALL_D), without the (..., d)
    difference. Forward only (`_SmallDSqDists` and `_pairwise_small` own the gradients)."""
    xs, ys = _coordinates(x, y)
    out = torch.sub(xs[0], ys[0]).square_()
    for xk, yk in zip(xs[1:], ys[1:], strict=True):
        out.add_(torch.sub(xk, yk).square_())  # ((0 + a0) + a1) + ...: the sum's order
    return out


def _coordinates(x: Tensor, y: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """x, y (..., d) as d contiguous tensors each, expanded over the last two dims of their
    broadcast shape: the subtraction x_k - y_k then runs over a contiguous block of M·N (or N)
    numbers with a vector loop; over broadcast strides of size N it ran 3x slower (measured).
    The values are the same; only where the operands sit in memory changes."""
    shape = torch.broadcast_shapes(x.shape, y.shape)
    inner = len(shape) - 1 - min(2, len(shape) - 1)  # first dim of the block (d excluded)

    def split(t: Tensor) -> list[Tensor]:
        t = t.expand(*t.shape[:inner], *shape[inner:]) if t.dim() == len(shape) else t
        return list(t.movedim(-1, 0).contiguous().unbind(0))

    return split(x), split(y)


def _kme_from_sq_dists(d2: Tensor, wx: Tensor, wy: Tensor, sigma) -> Tensor:
    """(B, C) logsumexp over the materialised (B, C, M, N) scores."""
    s2 = torch.as_tensor(sigma, dtype=d2.dtype, device=d2.device) ** 2
    z = wx[:, None, :, None] + wy[None, :, None, :] - d2 / (2 * s2)
    return torch.logsumexp(z.flatten(2), dim=-1)


def _wpse_from_sq_dists(
    d2: Tensor,
    px: Tensor,
    wx: Tensor,
    py: Tensor,
    wy: Tensor,
    sigma,
    alpha_linear,
    alpha_kernel,
    kernel,
) -> Tensor:
    """(B, C) weighted kernel sum over the materialised (B, C, M, N) kernel values."""
    m, n = px.shape[1], py.shape[1]
    mix = alpha_kernel * kernel_values(d2, sigma, kernel)
    if not (isinstance(alpha_linear, float | int) and alpha_linear == 0):
        mix = mix + alpha_linear * torch.einsum("bmd,cnd->bcmn", px, py)
    return torch.einsum("bm,cn,bcmn->bc", wx, wy, mix) / (m * n)


def kme_logits_naive(px: Tensor, wx: Tensor, py: Tensor, wy: Tensor, sigma) -> Tensor:
    """The float64 reference: direct differences, materialised."""
    return _kme_from_sq_dists(sq_dists(px, py), wx, wy, sigma)


def kernel_values(d2: Tensor, sigma, kernel: str) -> Tensor:
    s2 = torch.as_tensor(sigma, dtype=d2.dtype, device=d2.device) ** 2
    if kernel == "gaussian":
        return torch.exp(-d2 / (2 * s2))
    if kernel == "imq":
        return torch.rsqrt(1 + d2 / s2)
    raise ValueError(f"unknown kernel {kernel!r}; use 'gaussian' or 'imq'")


def wpse_logits_naive(
    px: Tensor,
    wx: Tensor,
    py: Tensor,
    wy: Tensor,
    sigma,
    alpha_linear=0.0,
    alpha_kernel=1.0,
    kernel: str = "gaussian",
) -> Tensor:
    """The float64 reference: direct differences, materialised."""
    d2 = sq_dists(px, py)
    return _wpse_from_sq_dists(d2, px, wx, py, wy, sigma, alpha_linear, alpha_kernel, kernel)


def _einsum_sq_dists(px: Tensor, py: Tensor) -> Tensor:
    """(B, C, M, N) squared distances via ‖u‖² + ‖v‖² − 2⟨u, v⟩ (one einsum, no (.., d) tensor)."""
    pn, qn = px.pow(2).sum(-1), py.pow(2).sum(-1)  # (B, M), (C, N)
    dot = torch.einsum("bmd,cnd->bcmn", px, py)
    return pn[:, None, :, None] + qn[None, :, None, :] - 2 * dot


def kme_logits_einsum(px: Tensor, wx: Tensor, py: Tensor, wy: Tensor, sigma) -> Tensor:
    """The usual implementation: materialises (B, C, M, N), kept by autograd for backward."""
    return _kme_from_sq_dists(_einsum_sq_dists(px, py), wx, wy, sigma)


def wpse_logits_einsum(
    px: Tensor,
    wx: Tensor,
    py: Tensor,
    wy: Tensor,
    sigma,
    alpha_linear=0.0,
    alpha_kernel=1.0,
    kernel: str = "gaussian",
) -> Tensor:
    """The usual implementation: materialises (B, C, M, N), kept by autograd for backward."""
    d2 = _einsum_sq_dists(px, py).clamp_min(0)
    return _wpse_from_sq_dists(d2, px, wx, py, wy, sigma, alpha_linear, alpha_kernel, kernel)


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64; everything else (fp32, bf16, fp16) is computed in fp32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _as(x, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A python number or a 0-dim tensor as a tensor of `dtype` (keeping its autograd graph)."""
    if isinstance(x, Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.tensor(float(x), dtype=dtype, device=device)


# Which fused kernels "triton" runs: "tiled" (`_triton_kme`, `_triton_wpse`: one tl.dot per point
# pair on a tile of sets; the default until a GPU shows the others faster), "flat" (the point sets
# flattened into the tile, `_triton_flat_*`, issue 27) or "flat-atomic" (the same, the backward in
# one pass with atomic adds). Read from the environment at each call, so a benchmark can choose.
TRITON_VARIANT_ENV = "PMILAB_TRITON_VARIANT"
TRITON_VARIANTS = ("tiled", "flat", "flat-atomic")


def triton_variant() -> str:
    """The fused kernels' variant: $PMILAB_TRITON_VARIANT, "tiled" when unset."""
    name = os.environ.get(TRITON_VARIANT_ENV, "") or "tiled"
    if name not in TRITON_VARIANTS:
        raise InputError(
            f"{TRITON_VARIANT_ENV}={name!r}: expected one of {', '.join(TRITON_VARIANTS)}"
        )
    return name


def _kme_triton(*args) -> Tensor:
    variant = triton_variant()
    if variant == "tiled":
        from pmilab.similarity._triton_kme import kme_logits_triton  # imports triton: on use

        return kme_logits_triton(*args)
    from pmilab.similarity._triton_flat_kme import kme_logits_triton_flat

    return kme_logits_triton_flat(*args, atomic=variant == "flat-atomic")


def _wpse_triton(*args) -> Tensor:
    variant = triton_variant()
    if variant == "tiled":
        from pmilab.similarity._triton_wpse import wpse_logits_triton

        return wpse_logits_triton(*args)
    from pmilab.similarity._triton_flat_wpse import wpse_logits_triton_flat

    return wpse_logits_triton_flat(*args, atomic=variant == "flat-atomic")


# Implementations by backend name: "chunked" (pure torch, CPU and CUDA; gets its inputs in the
# compute dtype) and "triton" (fused kernels for CUDA; gets the inputs as given, so bf16 points
# reach the tensor cores). Both pass the same tests against `kme_logits_naive` /
# `wpse_logits_naive` (tests/similarity/triton runs the kernels in Triton's CPU interpreter).
_KME = {"chunked": kme_chunked, "triton": _kme_triton}
_WPSE = {"chunked": wpse_chunked, "triton": _wpse_triton}
_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def _backend(px: Tensor) -> str:
    """Which implementation runs for these inputs: "triton" for CUDA tensors in fp32/bf16/fp16
    when Triton is installed, "chunked" otherwise (CPU tensors always; float64 everywhere)."""
    if px.device.type == "cuda" and px.dtype in _TRITON_DTYPES and _triton_installed():
        return "triton"
    return "chunked"


def kme_logits(px: Tensor, wx: Tensor, py: Tensor, wy: Tensor, sigma) -> Tensor:
    """(B, M, d), (B, M), (C, N, d), (C, N), σ -> (B, C) KME logits; memory O(B·C + (B+C)·M·d).

    fp32 output for fp32/half inputs and under autocast (bf16 scores would lose the logits), float64
    for float64 inputs. Equal to `kme_logits_naive` within 1e-5·max(1, |ℓ|) in fp32.
    """
    dt, dev, backend = _compute_dtype(px), px.device, _backend(px)
    with torch.autocast(dev.type, enabled=False):
        args = [t.to(dt) for t in (px, wx, py, wy)] if backend == "chunked" else [px, wx, py, wy]
        return _KME[backend](*args, _as(sigma, dt, dev))


def wpse_logits(
    px: Tensor,
    wx: Tensor,
    py: Tensor,
    wy: Tensor,
    sigma,
    alpha_linear=0.0,
    alpha_kernel=1.0,
    kernel: str = "gaussian",
) -> Tensor:
    """(B, M, d), (B, M), (C, N, d), (C, N) -> (B, C) WPSE similarities (no logit scale).

    Memory O(B·C + (B+C)·M·d); dtype rules as `kme_logits`. α's may be tensors with gradients.
    """
    if kernel not in ("gaussian", "imq"):
        raise ValueError(f"unknown kernel {kernel!r}; use 'gaussian' or 'imq'")
    dt, dev, backend = _compute_dtype(px), px.device, _backend(px)
    with torch.autocast(dev.type, enabled=False):
        args = [t.to(dt) for t in (px, wx, py, wy)] if backend == "chunked" else [px, wx, py, wy]
        al = alpha_linear if isinstance(alpha_linear, int | float) else _as(alpha_linear, dt, dev)
        ak = alpha_kernel if isinstance(alpha_kernel, int | float) else _as(alpha_kernel, dt, dev)
        return _WPSE[backend](*args, _as(sigma, dt, dev), al, ak, kernel)

"""What the fused Triton kernels of the point-set heads share (docs/theory.md T2).

Both heads reduce, for every pair of sets (i, j), the M×N scores of their point pairs

    z[i,j,a,b] = c · ⟨p_ia, q_jb⟩ + x[i,a] + y[j,b]

where the bandwidth goes into the scalar c and the squared norms (and, for KME, the log-weights)
into the per-point terms x, y ("norms folded in": −‖p − q‖²/(2σ²) = (⟨p, q⟩ − ‖p‖²/2 − ‖q‖²/2)/σ²).
A program owns one (BLOCK_B, BLOCK_C) tile of the (B, C) output, keeps its accumulator in registers
and loops over the M·N point pairs with one `tl.dot` of (BLOCK_B, d) × (d, BLOCK_C) per pair. The
backward pass recomputes the scores (FlashAttention style): nothing of size B·C·M·N is stored.

This module holds the torch side: which dtype and precision the dot products run in, the tile
sizes, the launch checks, and the flattened kernels' launches (`flat_forward`, `flat_backward`).
The kernels live in `_triton_kme` and `_triton_wpse`; `_pairwise._backend` selects
them for CUDA tensors. The flattened variant (`_triton_flat_kme`, `_triton_flat_wpse`; issue 27:
the point sets as two matrices, one tl.dot per tile of points, `FlatTiles`, `block_sum`) runs
instead when $PMILAB_TRITON_VARIANT asks for it (`_pairwise.triton_variant`). On CPU tensors
they run only under Triton's interpreter (`TRITON_INTERPRET=1` set before triton is first
imported), which is how the tests run them (tests/similarity/triton).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from pmilab.similarity._pairwise_chunked import _centred

HALF = (torch.bfloat16, torch.float16)

# fp32 dot products of the tiled kernels in IEEE fp32 (the FMA units): TF32 (Triton's default on
# NVIDIA GPUs) has a 10-bit mantissa, an error of ~5e-4 on ⟨u, v⟩/σ², far above the 1e-5 contract
# of `_pairwise`. The tiled kernels are the default and what the H200 measured: they stay so.
FP32_PRECISION = "ieee"

# fp32 dot products of the flattened kernels (issue 27) on the tensor cores, as three TF32
# products (Triton's "tf32x3"): a = hi + lo with hi = a rounded to TF32 (11 significant bits),
# lo = a − hi; a·b ≈ hi·hi' + hi·lo' + lo·hi' accumulated in fp32. What it drops, lo·lo' and
# lo's own bits below TF32 (the tensor cores read 19 of its 32), is about 2^-20 of |a·b| per
# product, next to fp32's 2^-24 rounding: the emulation in tests/similarity/triton/
# test_flat_tf32x3.py finds the heads' errors at the fp32 tolerances' cases equal to IEEE's
# (≤ 5e-7 against 1e-4), where a single TF32 product misses them by up to 1500×. 3× the
# tensor-core work of one product.
FLAT_FP32_PRECISION = "tf32x3"


def point_operands(px: Tensor, py: Tensor) -> tuple[Tensor, Tensor]:
    """(B, M, d), (C, N, d) -> the dot-product operands p, q of the kernels, contiguous.

    bf16/fp16 points (both sets in the same dtype) are used as given: the tensor cores multiply
    them exactly and accumulate in fp32. Other inputs are computed in fp32, centred on their
    common mean as in `_pairwise_chunked` (distances unchanged, smaller norms, less
    cancellation); the centred points are not rounded back to half precision, which would change
    them.
    """
    if px.dtype == py.dtype and px.dtype in HALF:
        return px.contiguous(), py.contiguous()
    p, q = _centred(px.float(), py.float())
    return p.contiguous(), q.contiguous()


@dataclass(frozen=True)
class Tiles:
    """Launch parameters. block_b × block_c: the score tile of every kernel, forward and
    backward (the KME backward must recompute the forward's scores bit for bit, see
    `_triton_kme`); block_d: d padded to a power of two ≥ 16 (tl.dot's minimum); programs: the
    backward grid is split along the reduced dimension until it has about this many programs;
    num_stages: Triton's software-pipelining depth, None for Triton's default."""

    block_b: int
    block_c: int
    block_d: int
    num_warps: int
    programs: int
    num_stages: int | None = None

    @property
    def launch(self) -> dict:
        """The launch options every kernel call passes (num_stages only when set)."""
        stages = {} if self.num_stages is None else {"num_stages": self.num_stages}
        return {"num_warps": self.num_warps} | stages


# The interpreter runs a program's numpy ops one after another: 16-wide tiles (tl.dot's minimum)
# keep the tests fast and make small ragged shapes span several tiles.
INTERPRETER_PROGRAMS = 4


def tile_shape(dtype: torch.dtype, block_d: int) -> tuple[int, int, int]:
    """(block_b, block_c, num_warps) on a GPU for points of this dtype and padded dimension.

    bf16/fp16: 64 × 32 with 8 warps up to d = 128 (Hopper's wgmma needs 64 rows); above, 32 × 32
    with 4 warps (mma.sync). fp32 (IEEE dot products on the FMA units, operands in registers):
    32 × 32 with 8 warps up to d = 64, 16 × 16 with 4 warps above. These are the tiles the one
    GPU run so far measured (benchmarks/results/gpu); they are not tuned for speed.

    They were chosen to avoid register spills in an offline compile for sm_90a that, it turned
    out, did not specialise the kernels as Triton's launcher does (aligned pointers, sizes
    divisible by 16), so every point load was a 2-byte scalar load there. Compiled as they run
    (`benchmarks/triton_compile_check.py`; benchmarks/results/triton_compile_sm90.md), 64 × 32
    with 8 warps at d = 256 uses wgmma in all but the WPSE column pass and spills 48 bytes in one
    kernel (KME columns), not the 44–80 bytes in every backward that set d = 256 to 32 × 32.
    Which is faster is for a GPU to say: `benchmarks/gpu_check.sh --focus` sweeps the tiles at
    the issue's target; `override_tiles` (below) lets any caller try others.
    """
    if dtype in HALF:
        return (64, 32, 8) if block_d <= 128 else (32, 32, 4)
    return (32, 32, 8) if block_d <= 64 else (16, 16, 4)


_override: tuple[int, ...] | None = None


def _check_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise ValueError(
            f"tiles: expected (block_b, block_c, num_warps[, num_stages]), got {shape}"
        )
    return tuple(shape)


def parse_tiles(text: str) -> tuple[int, ...] | None:
    """The benchmarks' --tiles: "BB,BC,WARPS" or "BB,BC,WARPS,STAGES" (positive integers) -> a
    shape for `override_tiles`; "default" -> None. ValueError, saying why, otherwise."""
    if text == "default":
        return None
    try:
        return _check_shape(tuple(int(v) for v in text.split(",")))
    except ValueError:
        raise ValueError(
            f"expected BB,BC,WARPS or BB,BC,WARPS,STAGES (positive integers) or default, "
            f"got {text!r}"
        ) from None


@contextmanager
def override_tiles(shape: tuple[int, ...] | None) -> Iterator[None]:
    """Inside the block every launch on a GPU takes (block_b, block_c, num_warps[, num_stages])
    instead of `tile_shape`'s (benchmarks and tuning; None: no override). Launches on CPU tensors
    (Triton's interpreter) keep their own tiles."""
    global _override
    old, _override = _override, (_check_shape(shape) if shape is not None else None)
    try:
        yield
    finally:
        _override = old


def gpu_tiles(dtype: torch.dtype, block_d: int, sms: int) -> Tiles:
    """The GPU launch parameters: `tile_shape`'s, or the active `override_tiles`."""
    bb, bc, warps, *stages = _override or tile_shape(dtype, block_d)
    return Tiles(bb, bc, block_d, warps, 2 * sms, stages[0] if stages else None)


def tiles(device: torch.device, d: int, dtype: torch.dtype = torch.bfloat16) -> Tiles:
    """Tile sizes for points of dimension d and this dtype on this device."""
    bd = max(16, 1 << (d - 1).bit_length())
    if device.type != "cuda":
        return Tiles(16, 16, bd, 1, INTERPRETER_PROGRAMS)
    return gpu_tiles(dtype, bd, torch.cuda.get_device_properties(device).multi_processor_count)


def splits(own: int, block_own: int, other: int, block_other: int, points: int, t: Tiles) -> int:
    """How many ranges the backward grid (own blocks, points, splits) cuts the reduced (other)
    dimension into: enough programs to fill the device, at most one per block. Each split
    writes its own partial sums, added in torch afterwards (deterministic, no atomics)."""
    own_blocks = -(-own // block_own)
    other_blocks = -(-other // block_other)
    return max(1, min(other_blocks, -(-t.programs // (own_blocks * points))))


@triton.jit
def dot_tile(p, q, PRECISION: tl.constexpr):
    """(BB, BD), (BC, BD) -> ⟨p_i, q_j⟩ (BB, BC) fp32: the one tl.dot per point pair."""
    return tl.dot(p, tl.trans(q), input_precision=PRECISION)


@triton.jit
def score_tile(dot, x, y, c):
    """(BB, BC), (BB,), (BC,), () -> z = c·dot + x + y (BB, BC).

    Every kernel computes its scores with `dot_tile` and this one expression, on the same tiles,
    so a backward pass that recomputes them gets the forward's values bit for bit (checked in the
    interpreter; on a GPU by the tiny-σ tests, whose gradients depend on it).
    """
    return dot * c + x[:, None] + y[None, :]


# --- the flattened variant (`_triton_flat_kme`, `_triton_flat_wpse`) -------------------------
# The point sets as a (B·M, d) and a (C·N, d) matrix: a program's score tile is `rows` points of
# P against `cols` points of Q (rows/MP sets × cols/NP sets, M and N padded to powers of two MP,
# NP), one tl.dot per tile, its MP × NP sub-blocks reduced in registers (`block_sum`). Sets of
# more than FLAT_MAX_POINTS points take the tiled kernels (the tile would outgrow the registers).
FLAT_MAX_POINTS = 128


@dataclass(frozen=True)
class FlatTiles:
    """Launch parameters of the flattened kernels: rows × cols points per score tile (the same
    tile in the forward and both backward passes, so that the backward recomputes the forward's
    scores bit for bit, as the tiled kernels do), MP, NP the padded set sizes, block_d the padded
    d; atomic: the backward's one pass adds the columns' gradients by atomics (else a second pass
    over the columns, deterministic)."""

    rows: int
    cols: int
    mp: int
    np: int
    block_d: int
    num_warps: int
    programs: int
    num_stages: int | None = None
    atomic: bool = False

    @property
    def block_b(self) -> int:
        return self.rows // self.mp

    @property
    def block_c(self) -> int:
        return self.cols // self.np

    @property
    def launch(self) -> dict:
        stages = {} if self.num_stages is None else {"num_stages": self.num_stages}
        return {"num_warps": self.num_warps} | stages


def flat_tile_shape(dtype: torch.dtype, block_d: int) -> tuple[int, ...]:
    """(rows, cols, num_warps, num_stages) of the flattened kernels on a GPU, in points.

    bf16/fp16: 128 × 64 points (16 × 8 sets at M = N = 8), 8 warps, 2 pipeline stages, for every
    d. Chosen on paper and by the compile check for sm_90a (benchmarks/results/
    triton_compile_sm90.md), not on a GPU: every flattened kernel uses wgmma there; at d = 256
    it is the largest tile whose backward does not spill (KME and the Gaussian; the IMQ's rows
    and columns passes spill 8 and 260 bytes), and its 128-row tiles halve the bytes per score
    of 64-row ones (benchmarks/README.md). 128 × 128 does not fit (257 KiB of shared memory at d = 256,
    spills at every d). fp32 points (tf32x3, FLAT_FP32_PRECISION: mma.sync in every kernel; at
    most ~0.1 of the bf16 rate on paper, benchmarks/README.md; not what this variant is for):
    32 × 32 points with 8 warps up to d = 64, 16 × 16 above (no spills up to d = 128; at d = 256
    the forward spills 120–180 bytes, the atomic pass 92–160; the other fp32 tiles tried spill
    more there: 16 × 16 with 4 warps 144–544 bytes, 32 × 32 and 64 × 32 with 4 warps KiB).
    `override_tiles` replaces these too (its BB, BC then count points);
    `benchmarks/gpu_check.sh --short` is to measure them on a GPU.
    """
    if dtype in HALF:
        return (128, 64, 8, 2)
    return (32, 32, 8) if block_d <= 64 else (16, 16, 8)


def _pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def flat_tiles(
    device: torch.device, m: int, n: int, d: int, dtype: torch.dtype, atomic: bool = False
) -> FlatTiles | None:
    """The flattened kernels' tiles for sets of m and n points of dimension d, or None where a
    set has more than FLAT_MAX_POINTS points. Rows and columns grow to hold one whole set."""
    if max(m, n) > FLAT_MAX_POINTS:
        return None
    mp, np_, bd = _pow2(m), _pow2(n), max(16, _pow2(d))
    if device.type != "cuda":
        rows, cols, warps, stages, programs = 16, 16, 1, None, INTERPRETER_PROGRAMS
    else:
        rows, cols, warps, *more = _override or flat_tile_shape(dtype, bd)
        stages = more[0] if more else None
        programs = 2 * torch.cuda.get_device_properties(device).multi_processor_count
    return FlatTiles(max(rows, mp), max(cols, np_), mp, np_, bd, warps, programs, stages, atomic)


def flat_launch(kernel, p: Tensor, q: Tensor, t: FlatTiles) -> dict:
    """The launch keywords every flattened kernel takes for points p (B, M, d), q (C, N, d) on
    the tiles t: set sizes, tiles, tl.dot's input precision (`dot_precision`, flat) and the
    interpreter's upcast (DOT_F32), and `t.launch`."""
    return {
        "M": p.shape[1],
        "N": q.shape[1],
        "MP": t.mp,
        "NP": t.np,
        "BLOCK_B": t.block_b,
        "BLOCK_C": t.block_c,
        "BLOCK_D": t.block_d,
        "PRECISION": dot_precision(p, flat=True),
        "DOT_F32": interpreted(kernel),
    } | t.launch


def flat_forward(kernel, p: Tensor, q: Tensor, args: tuple, t: FlatTiles, **consts) -> None:
    """Launch a flattened forward kernel on the grid (row blocks, splits of the columns):
    kernel(*args, B, C, d, **consts, **`flat_launch`); args end with its outputs."""
    (b, _, d), cc = p.shape, q.shape[0]
    check_device(kernel, p)
    k = splits(b, t.block_b, cc, t.block_c, 1, t)
    with device_context(p):
        kernel[(triton.cdiv(b, t.block_b), k)](
            *args, b, cc, d, **consts, **flat_launch(kernel, p, q, t)
        )


def flat_backward(
    kernel, p: Tensor, q: Tensor, args: tuple, sums: int, columns: bool, t: FlatTiles, **consts
) -> tuple:
    """Run one pass of a flattened backward kernel, kernel(*args, GO, GS, GQ, GQS, B, C, d,
    COLUMNS, ATOMIC, HALF, **consts, **`flat_launch`), on the grid (own blocks, splits of the
    other side). Returns GO (own, points, d) and GS (own, points, sums), summed over the splits,
    and for a rows pass with t.atomic the columns' GQ (C, N, d) and GQS (C, N, sums) the kernel
    added by atomics, else None, None."""
    (b, m, d), (cc, n, _) = p.shape, q.shape
    check_device(kernel, p)
    own, pts, bo, other, bother = (
        (cc, n, t.block_c, b, t.block_b) if columns else (b, m, t.block_b, cc, t.block_c)
    )
    atomic = t.atomic and not columns
    k = splits(own, bo, other, bother, 1, t)
    f32 = {"device": p.device, "dtype": torch.float32}
    go = torch.empty(k, own, pts, d, **f32)
    gs = torch.zeros(k, own, pts, sums, **f32)
    gq = torch.zeros(cc, n, d if atomic else 1, **f32)
    gqs = torch.zeros(cc, n, sums if atomic else 1, **f32)
    with device_context(p):
        kernel[(triton.cdiv(own, bo), k)](
            *args, go, gs, gq, gqs, b, cc, d, COLUMNS=columns, ATOMIC=atomic,
            HALF=p.dtype != torch.float32, **consts, **flat_launch(kernel, p, q, t),
        )  # fmt: skip
    if atomic:
        return go.sum(0), gs.sum(0), gq, gqs
    return go.sum(0), gs.sum(0), None, None


@triton.jit
def flat_points(s0, S, BLOCK: tl.constexpr, MP: tl.constexpr, K: tl.constexpr):
    """The BLOCK·MP rows of a flattened tile starting at set s0 (of S sets of K points, padded
    to MP): their row in the (S·K, d) matrix, and whether they are real points."""
    r = tl.arange(0, BLOCK * MP)
    if MP == K:
        return s0 * K + r, r < (S - s0) * K
    i, a = s0 + r // MP, r % MP
    return i * K + a, (i < S) & (a < K)


@triton.jit
def load_points(P, rows, real, rd, md, D, DOT_F32: tl.constexpr):
    """The point tile (len(rows), BLOCK_D) at these rows of the (·, D) matrix P, 0 off the real
    points and past d (rd: tl.arange(0, BLOCK_D), md: rd < D); DOT_F32 (the interpreter, which
    cannot multiply bf16): upcast to fp32, exactly."""
    t = tl.load(P + rows[:, None] * D + rd[None, :], mask=real[:, None] & md[None, :], other=0.0)
    return t.to(tl.float32) if DOT_F32 else t


@triton.jit
def block_sum(t, BB: tl.constexpr, MP: tl.constexpr, BC: tl.constexpr, NP: tl.constexpr):
    """(BB·MP, BC·NP) -> (BB, BC): the sum of each MP × NP sub-block (one pair of sets)."""
    return tl.sum(tl.sum(tl.reshape(t, (BB, MP, BC, NP)), axis=3), axis=1)


@triton.jit
def block_max(t, BB: tl.constexpr, MP: tl.constexpr, BC: tl.constexpr, NP: tl.constexpr):
    """(BB·MP, BC·NP) -> (BB, BC): the largest element of each sub-block."""
    return tl.max(tl.max(tl.reshape(t, (BB, MP, BC, NP)), axis=3), axis=1)


@triton.jit
def expand(v, BB: tl.constexpr, MP: tl.constexpr, BC: tl.constexpr, NP: tl.constexpr):
    """(BB, BC) -> (BB·MP, BC·NP): each pair of sets' value over its sub-block."""
    return tl.reshape(tl.broadcast_to(v[:, None, :, None], (BB, MP, BC, NP)), (BB * MP, BC * NP))


def interpreted(kernel) -> bool:
    """True when `kernel` was decorated under TRITON_INTERPRET=1 (it runs on CPU tensors)."""
    return type(kernel).__name__ == "InterpretedFunction"


def check_device(kernel, t: Tensor) -> None:
    """Fail clearly instead of handing CPU pointers to a compiled kernel."""
    if t.device.type != "cuda" and not interpreted(kernel):
        raise RuntimeError(
            "the Triton kernels need CUDA tensors; CPU tensors run them only under Triton's "
            "interpreter (TRITON_INTERPRET=1 set before triton is first imported)"
        )


def device_context(t: Tensor):
    """The tensor's CUDA device as the current one for the launch (multi-GPU safe)."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else nullcontext()


def input_precision(dtype: torch.dtype, flat: bool = False) -> str:
    """tl.dot's input_precision for operands of this dtype: for fp32 FP32_PRECISION (the tiled
    kernels) or FLAT_FP32_PRECISION (flat: the flattened ones). Half precision operands ignore it
    (exact products, fp32 accumulation); Triton's default is kept."""
    if dtype != torch.float32:
        return "tf32"
    return FLAT_FP32_PRECISION if flat else FP32_PRECISION


def dot_precision(t: Tensor, flat: bool = False) -> str:
    """`input_precision` for operands like t (flat: the flattened kernels')."""
    return input_precision(t.dtype, flat)

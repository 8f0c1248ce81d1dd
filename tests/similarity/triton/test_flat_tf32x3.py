"""The flattened kernels' fp32 dot products on the tensor cores, tf32x3 (issue 27), emulated.

`_triton_common.FLAT_FP32_PRECISION` = "tf32x3": Triton 3.9 lowers tl.dot(a, b) to three TF32
products (read off the TTGIR of an sm_90 compile: three warp_group_dots): hi = cvt.rna.tf32(a)
(round to nearest with 10 explicit mantissa bits), lo = a − hi in fp32, then
acc = lo·hi' + hi·lo' + hi·hi' on the tensor cores, accumulated in fp32. Triton's interpreter ignores input_precision (an fp32 numpy
matmul), so the flat tests in test_flat_heads.py do not see what tf32x3 does. Here the
interpreter's tl.dot is replaced by a numpy emulation of those products, keyed by the precision
each dot asks for, and the flattened heads run whole (kernels, torch side, splice) against the
float64 references with the fp32 tolerances of harness.py, on the shapes and extreme cases of
test_flat_heads.py, and on the kernels alone (the direct-difference fallback off).

lo goes to the tensor cores unrounded: TF32 operands are read as their top 19 bits, so lo is
emulated truncated (the worse of the two readings; rounded to nearest as well on the kernels
alone). What the emulation cannot show is the tensor cores' own accumulation order and
rounding (taken here as fp32 round-to-nearest): the compiled tests on a GPU check that.

Calibration: the same emulation with one TF32 product (hi·hi', FLAT_FP32_PRECISION = "tf32")
must fail the same check; it misses the tolerance by 1.8× to 1500× on the KME cases here
(test_plain_tf32_misses_the_tolerance asserts the 1.8× one and the 3.7× of the kernels alone).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from tests.similarity.triton.conftest import ON_GPU, SKIP_REASON

pytest.importorskip("triton", reason=SKIP_REASON)

from triton._C.libtriton import ir  # noqa: E402
from triton.runtime import interpreter as interp  # noqa: E402

from pmilab.similarity import _pairwise_chunked as chunked  # noqa: E402
from pmilab.similarity import _triton_common as common  # noqa: E402
from tests.similarity.triton import harness as H  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:overflow encountered in exp2:RuntimeWarning"),
    pytest.mark.skipif(ON_GPU, reason="emulates the tensor cores in Triton's CPU interpreter"),
]

F32 = torch.float32
TOL = H.FWD_TOL[F32]
assert TOL == H.GRAD_TOL[F32]  # one fp32 tolerance, forward and gradients
HEADS = {
    "kme": H.flat_kme_head,
    "wpse-gaussian": lambda atomic: H.flat_wpse_head("gaussian", atomic),
    "wpse-imq": lambda atomic: H.flat_wpse_head("imq", atomic),
}
# test_flat_heads.py's fp32 cases, (kind, (B, C, M, N, d), σ, atomic): its shapes (ragged B and
# C, M ≠ N both ways, M = N = 1, 8 × 8; the one-pass backward once) and its extreme σ
SHAPES = [(19, 23, 3, 2, 20), (6, 17, 2, 5, 9), (20, 17, 1, 1, 8), (5, 7, 8, 8, 33)]
CASES = [("random", s, 3.0, False) for s in SHAPES] + [("random", SHAPES[0], 3.0, True)]
CASES += [(k, (9, 18, 3, 2, 16), s, False) for k, s in [("duplicate", 1e-3), ("far", 1e-3)]]
CASES += [("sphere", (9, 18, 3, 2, 16), 1e3, False)]
ALONE = ("sphere", (21, 18, 2, 3, 24), 0.3, False)  # test_kernels_alone_meet_the_tolerance's


def tf32(x: np.ndarray, nearest: bool = True) -> np.ndarray:
    """fp32 -> TF32 (10 explicit mantissa bits) as fp32: round to nearest, ties away from zero
    (cvt.rna: add half a TF32 ulp to the magnitude's bits, carry into the exponent), or
    truncated (what the tensor cores read of an fp32 register)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    if nearest:
        bits = bits + np.uint32(0x1000)
    return (bits & np.uint32(0xFFFFE000)).view(np.float32)


def emulated_dot(a: np.ndarray, b: np.ndarray, precision: str, lo_nearest: bool) -> np.ndarray:
    """a @ b (fp32) as the tensor cores form it at this input precision, fp32 accumulation."""
    if precision == "tf32":
        return np.matmul(tf32(a), tf32(b))
    ah, bh = tf32(a), tf32(b)
    al, bl = tf32(a - ah, lo_nearest), tf32(b - bh, lo_nearest)
    return np.matmul(al, bh) + np.matmul(ah, bl) + np.matmul(ah, bh)  # Triton's order


@contextmanager
def tensor_cores(lo_nearest: bool = False, seen: list | None = None):
    """Inside the block the interpreter's fp32 tl.dot computes TF32 and tf32x3 as the tensor
    cores would (IEEE: unchanged); `seen` collects every dot's (precision, operand dtype)."""
    original = interp.InterpreterBuilder.create_dot
    names = {ir.INPUT_PRECISION.TF32: "tf32", ir.INPUT_PRECISION.TF32x3: "tf32x3"}

    def create_dot(self, a, b, d, precision, max_num_imprecise_acc):
        name = names.get(precision, "ieee")
        if seen is not None:
            seen.append((name, str(a.data.dtype)))
        if name == "ieee" or a.data.dtype != np.float32 or b.data.dtype != np.float32:
            return original(self, a, b, d, precision, max_num_imprecise_acc)
        out = d.data + emulated_dot(a.data, b.data, name, lo_nearest)
        return interp.TensorHandle(out.astype(np.float32), d.dtype.scalar)

    interp.InterpreterBuilder.create_dot = create_dot
    try:
        yield
    finally:
        interp.InterpreterBuilder.create_dot = original


def _errors(head_name: str, case, device) -> dict:
    kind, shape, sigma, atomic = case
    head = HEADS[head_name](atomic)
    return H.errors(head, H.inputs(head, kind, *shape), sigma, F32, device)


def test_tf32_rounding_against_float64_arithmetic():
    """The bit trick against the definition, in float64: hi = 2^e·round(m·2^11)/2^11 with
    a = m·2^e, ½ ≤ |m| < 1 (ties away from zero), or trunc for truncation; lo = a − hi is exact
    in fp32 and |lo| ≤ 2^-11·2^e."""
    g = np.random.default_rng(0)
    a = (g.standard_normal(20_000) * np.exp(g.uniform(-30, 30, 20_000))).astype(np.float32)
    a[:3] = [1 + 2**-11, -(1 + 3 * 2**-11), 1 - 2**-13]  # ties (away from zero), a carry
    m, e = np.frexp(a.astype(np.float64))
    away = np.sign(m) * np.floor(np.abs(m) * 2**11 + 0.5)
    assert np.array_equal(tf32(a), np.ldexp(away / 2**11, e).astype(np.float32))
    assert np.array_equal(tf32(a, False), np.ldexp(np.trunc(m * 2**11) / 2**11, e))
    lo = a.astype(np.float64) - tf32(a)
    assert np.array_equal(lo, (a - tf32(a)).astype(np.float64))
    assert np.all(np.abs(lo) <= np.ldexp(1.0, e - 12))  # half a TF32 ulp


def test_emulated_products_error_on_one_dot():
    """One (64, 256) × (256, 64) product of fp32 points against the float64 dot, relative to
    Σ|a b|: tf32x3 within 2× the IEEE fp32 product's error (2.9 and 3.3 units of 2^-24), a
    single TF32 product near its 2^-11 (1700 units)."""
    g = np.random.default_rng(1)
    a = g.standard_normal((64, 256)).astype(np.float32)
    b = g.standard_normal((256, 64)).astype(np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    ieee = (np.abs(a @ b - exact) / scale).max()
    for lo_nearest in (True, False):
        x3 = (np.abs(emulated_dot(a, b, "tf32x3", lo_nearest) - exact) / scale).max()
        assert x3 < 2 * ieee, (x3, ieee)
    one = (np.abs(emulated_dot(a, b, "tf32", True) - exact) / scale).max()
    assert 2.0**-15 < one < 2.0**-11 and one > 100 * ieee


def test_the_flat_kernels_ask_for_tf32x3_on_every_fp32_dot(device):
    """Every tl.dot of the flattened kernels on fp32 points asks for FLAT_FP32_PRECISION; the
    tiled kernels keep IEEE fp32; bf16 points (upcast exactly by the interpreter) keep TF32,
    which rounds nothing of a bf16 value."""
    assert common.FLAT_FP32_PRECISION == "tf32x3" and common.FP32_PRECISION == "ieee"
    for make, atomic in ((H.flat_kme_head, True), (lambda a: H.flat_wpse_head("imq", a), False)):
        head = make(atomic)
        pts = H.inputs(head, "random", 5, 6, 3, 2, 8)
        seen = []
        with tensor_cores(seen=seen):
            H.errors(head, pts, 0.7, F32, device)
        assert set(seen) == {("tf32x3", "float32")}, (head.name, set(seen))
        seen.clear()
        with tensor_cores(seen=seen):
            H.errors(head, pts, 0.7, torch.bfloat16, device)
        assert {p for p, _ in seen} == {"tf32"}, (head.name, set(seen))
    seen = []
    with tensor_cores(seen=seen):
        H.errors(H.kme_head(), H.inputs(H.kme_head(), "random", 5, 6, 3, 2, 8), 0.7, F32, device)
    assert {p for p, _ in seen} == {"ieee"}


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("case", CASES, ids=[f"{k}-{s}-{g}-{a}" for k, s, g, a in CASES])
def test_tf32x3_keeps_the_fp32_tolerance(head, case, device):
    """The whole head (kernels, splice) with the emulated tf32x3 products: every error within
    the fp32 tolerance, without the fp32 baseline's allowance."""
    with tensor_cores():
        errs = _errors(head, case, device)
    H.assert_within(errs, F32)


@pytest.mark.parametrize("lo_nearest", [False, True], ids=["lo-truncated", "lo-rounded"])
@pytest.mark.parametrize("head", HEADS)
def test_tf32x3_kernels_alone(head, lo_nearest, device, monkeypatch):
    """The direct-difference fallback off: the kernels' own values and gradients, with lo read
    either way, at under a hundredth of the tolerance (IEEE fp32 there: 1.6e-7 to 3.3e-7)."""
    monkeypatch.setitem(chunked.KME_TOL, F32, math.inf)
    monkeypatch.setitem(chunked.WPSE_TOL, F32, math.inf)
    with tensor_cores(lo_nearest):
        errs = _errors(head, ALONE, device)
    assert max(errs.values()) < TOL / 100, errs


def test_plain_tf32_misses_the_tolerance(device, monkeypatch):
    """Calibration: one TF32 product per dot (the rule set to "tf32") fails the same checks,
    by 1.8× on the first KME case of test_flat_heads.py (its forward, with the splice) and by
    3.7× on the kernels alone (the columns' log-weights): the check tells the two apart."""
    monkeypatch.setattr(common, "FLAT_FP32_PRECISION", "tf32")
    with tensor_cores():
        errs = _errors("kme", CASES[0], device)
    assert 1.5 * TOL < errs["forward"] < 2.5 * TOL, errs
    with pytest.raises(AssertionError, match="forward"):
        H.assert_within(errs, F32)
    monkeypatch.setitem(chunked.KME_TOL, F32, math.inf)
    with tensor_cores():
        errs = _errors("kme", ALONE, device)
    assert 3 * TOL < errs["wy"] < 5 * TOL and errs["wy"] == max(errs.values()), errs
    with pytest.raises(AssertionError, match="above tolerance"):
        H.assert_within(errs, F32)

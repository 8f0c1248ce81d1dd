"""The flattened Triton kernels (`_triton_flat_kme`, `_triton_flat_wpse`; issue 27) against the
float64 references, forward and every gradient (points, weights, σ, the α's), in both backward
modes (second pass, atomics): ragged B and C, M ≠ N and M = N = 1, sets that do not fill a power
of two, extreme σ with nearly duplicated and far-apart sets, fp32 and bf16 inputs; the KME tile
fallback around the sub-block maximum; the backward's splits; the variant switch of
`_pairwise`. Tolerances: harness.py, the same as the tiled kernels'. On CPU the kernels run in
Triton's interpreter (16 × 16 point tiles); on a CUDA machine compiled.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.similarity.triton.conftest import SKIP_REASON

pytest.importorskip("triton", reason=SKIP_REASON)

from pmilab.errors import InputError  # noqa: E402
from pmilab.similarity import _pairwise as P  # noqa: E402
from pmilab.similarity import _pairwise_blocks as blocks  # noqa: E402
from pmilab.similarity import _triton_common as common  # noqa: E402
from tests.similarity.triton import harness as H  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in exp2:RuntimeWarning")

MODES = [False, True]  # FlatTiles.atomic
MODE_IDS = ["two-pass", "atomic"]
HEADS = [H.flat_kme_head, lambda a: H.flat_wpse_head("gaussian", a)]
HEADS += [lambda a: H.flat_wpse_head("imq", a)]
HEAD_IDS = ["kme", "wpse-gaussian", "wpse-imq"]
DTYPES = [torch.float32, torch.bfloat16]


# (B, C, M, N, d), atomic: ragged B and C; M ≠ N both ways (3 pads to 4, 5 to 8); M = N = 1;
# 8 × 8 (whole sets per tile); the one-pass backward on the ragged and the 8 × 8 cases
SHAPES = [
    ((19, 23, 3, 2, 20), False),
    ((6, 17, 2, 5, 9), False),
    ((20, 17, 1, 1, 8), False),
    ((5, 7, 8, 8, 33), False),
    ((19, 23, 3, 2, 20), True),
    ((5, 7, 8, 8, 33), True),
]


@pytest.mark.parametrize("make", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize(("shape", "atomic"), SHAPES, ids=[f"{s}-{a}" for s, a in SHAPES])
@pytest.mark.parametrize("dtype", DTYPES)
def test_shapes(make, atomic, shape, dtype, device):
    head = make(atomic)
    H.check(head, H.inputs(head, "random", *shape), 3.0, dtype, device)


EXTREME = [("duplicate", 1e-3, False), ("far", 1e-3, False), ("sphere", 1e3, False)]
EXTREME += [("duplicate", 1e-3, True)]


@pytest.mark.parametrize("make", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize(("kind", "sigma", "atomic"), EXTREME, ids=[str(e) for e in EXTREME])
@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_sigma_and_point_sets(make, atomic, kind, sigma, dtype, device):
    """Tiny σ on nearly duplicated points far from the origin (cancellation: those pairs go to
    the direct differences, as on the tiled and chunked paths) and on far-apart sets (KME: every
    score far below 0, the tiles take the fallback around the sub-block maximum); huge σ."""
    head = make(atomic)
    H.check(head, H.inputs(head, kind, 9, 18, 3, 2, 16), sigma, dtype, device)


@pytest.mark.parametrize("make", HEADS, ids=HEAD_IDS)
def test_kernels_alone_meet_the_tolerance(make, device, monkeypatch):
    """The direct-difference fallback switched off: the kernels' own values and gradients."""
    from pmilab.similarity import _pairwise_chunked as chunked

    monkeypatch.setitem(chunked.KME_TOL, torch.float32, math.inf)
    monkeypatch.setitem(chunked.WPSE_TOL, torch.float32, math.inf)
    head = make(False)
    for dtype in DTYPES:
        H.check(head, H.inputs(head, "sphere", 21, 18, 2, 3, 24), 0.3, dtype, device)


@pytest.mark.parametrize("atomic", MODES, ids=MODE_IDS)
def test_kme_fallback_around_the_maximum(atomic, device, monkeypatch):
    """Every tile through the fallback (its sums recomputed around each sub-block's maximum),
    on inputs whose tiles would otherwise take the single-exp2 path."""
    monkeypatch.setitem(blocks.SUM_LO, torch.float32, math.inf)
    head = H.flat_kme_head(atomic)
    for dtype in DTYPES:
        H.check(head, H.inputs(head, "random", 19, 23, 3, 2, 20), 0.7, dtype, device)


@pytest.mark.parametrize("programs", [1, 10_000])
@pytest.mark.parametrize("make", HEADS[:2], ids=HEAD_IDS[:2])
def test_splits(make, programs, device, monkeypatch):
    """The forward and backward grids split the other side into 1 range (one program loops over
    every block) or one per block (partial sums added in torch)."""
    monkeypatch.setattr(common, "INTERPRETER_PROGRAMS", programs)
    head = make(False)
    H.check(head, H.inputs(head, "random", 19, 50, 3, 2, 20), 0.7, torch.float32, device)


@settings(max_examples=6, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 20), st.integers(1, 20), st.integers(1, 9), st.integers(1, 9)),
    d=st.integers(1, 40),
    kind=st.sampled_from(["random", "sphere", "duplicate", "far"]),
    sigma=st.sampled_from([1e-2, 0.3, 1.0, 7.0]),
    head=st.sampled_from(range(3)),
    atomic=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_reference_over_shapes(shape, d, kind, sigma, head, atomic, seed):
    """Any shape: sets of up to 9 points (padded to 16: one set per 16-row tile), d from 1."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    h = HEADS[head](atomic)
    H.check(h, H.inputs(h, kind, *shape, d, seed=seed), sigma, torch.float32, device)


def test_float16_inputs(device):
    for make in HEADS:
        head = make(True)
        H.check(head, H.inputs(head, "sphere", 19, 23, 3, 2, 20), 0.5, torch.float16, device)


def test_large_sets_take_the_tiled_kernels(device, monkeypatch):
    """Sets of more than FLAT_MAX_POINTS points run the tiled kernels (no flat launch)."""
    from pmilab.similarity import _triton_flat_kme as FK
    from pmilab.similarity import _triton_flat_wpse as FW

    monkeypatch.setattr(common, "FLAT_MAX_POINTS", 2)
    for module in (FK, FW):
        monkeypatch.setattr(module, "_forward", _refuse)
    for make in (H.flat_kme_head, lambda a: H.flat_wpse_head("gaussian", a)):
        head = make(False)
        H.check(head, H.inputs(head, "sphere", 9, 10, 3, 2, 8), 0.5, torch.float32, device)


def _refuse(*args):
    raise AssertionError("the flattened kernels ran")


@pytest.mark.parametrize("variant", ["flat", "flat-atomic"])
def test_the_variant_switch_runs_the_flat_kernels(variant, device, monkeypatch):
    """$PMILAB_TRITON_VARIANT sends the public functions' "triton" entry to the flattened
    kernels (counted), whose results equal the references."""
    from pmilab.similarity import _triton_flat_kme as FK
    from pmilab.similarity import _triton_flat_wpse as FW

    calls = []
    for module in (FK, FW):
        fwd = module._forward
        monkeypatch.setattr(module, "_forward", lambda *a, _f=fwd: calls.append(a[-1]) or _f(*a))
    monkeypatch.setenv(P.TRITON_VARIANT_ENV, variant)
    monkeypatch.setattr(P, "_backend", lambda px: "triton")
    kme = H.Head("kme", P.kme_logits, P.kme_logits_naive)
    H.check(kme, H.inputs(kme, "sphere", 9, 11, 3, 2, 8), 0.5, torch.bfloat16, device)
    wpse = H.wpse_head("imq")

    def public(px, wx, py, wy, sigma, al, ak):
        return P.wpse_logits(px, wx, py, wy, sigma, al, ak, "imq")

    wpse = H.Head(wpse.name, public, wpse.reference, wpse.alphas, wpse.kwargs)
    H.check(wpse, H.inputs(wpse, "random", 9, 11, 3, 2, 8), 0.5, torch.float32, device)
    assert len(calls) == 2 and all(t.atomic == (variant == "flat-atomic") for t in calls)


def test_the_variant_switch_defaults_to_tiled_and_rejects_unknown_names(monkeypatch):
    monkeypatch.delenv(P.TRITON_VARIANT_ENV, raising=False)
    assert P.triton_variant() == "tiled"
    monkeypatch.setenv(P.TRITON_VARIANT_ENV, "")
    assert P.triton_variant() == "tiled"
    monkeypatch.setenv(P.TRITON_VARIANT_ENV, "flat")
    assert P.triton_variant() == "flat"
    monkeypatch.setenv(P.TRITON_VARIANT_ENV, "fast")
    with pytest.raises(InputError, match="PMILAB_TRITON_VARIANT='fast'") as err:
        P.triton_variant()
    assert "\n" not in str(err.value) and "flat-atomic" in str(err.value)


def test_flat_tiles_hold_whole_sets():
    """Rows and columns are a whole number of padded sets, at least one, on CPU and GPU."""
    cpu = torch.device("cpu")
    t = common.flat_tiles(cpu, 3, 5, 20, torch.float32)
    assert (t.rows, t.cols, t.mp, t.np, t.block_b, t.block_c, t.block_d) == (16, 16, 4, 8, 4, 2, 32)
    t = common.flat_tiles(cpu, 40, 1, 8, torch.float32)
    assert (t.rows, t.block_b, t.cols, t.block_c) == (64, 1, 16, 16)
    assert common.flat_tiles(cpu, common.FLAT_MAX_POINTS + 1, 1, 8, torch.float32) is None
    for dtype in (torch.bfloat16, torch.float32):
        for bd in (16, 64, 128, 256):
            rows, cols, warps = common.flat_tile_shape(dtype, bd)[:3]
            assert rows >= 16 and cols >= 16 and rows & (rows - 1) == 0 and cols & (cols - 1) == 0

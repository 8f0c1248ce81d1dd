"""The fused Triton kernels of the KME and WPSE heads against the float64 references (issue 15).

Forward values and gradients for every input (points, weights, σ, the α's), by autograd of
`kme_logits_naive` / `wpse_logits_naive`, on: ragged B and C (not multiples of the 16-wide tiles
the interpreter runs), M ≠ N and M = N = 1, d below, at and above a power of two, extreme σ,
nearly duplicated and far-apart point sets, fp32 and bf16 (and fp16) inputs. Tolerances and their
reasons: harness.py. On CPU the kernels run in Triton's interpreter (conftest.py); on a CUDA
machine the same tests run the compiled kernels.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.similarity.triton.conftest import SKIP_REASON

pytest.importorskip("triton", reason=SKIP_REASON)

from pmilab.similarity import _pairwise as P  # noqa: E402
from pmilab.similarity import _pairwise_blocks as blocks  # noqa: E402
from pmilab.similarity import _pairwise_chunked as chunked  # noqa: E402
from pmilab.similarity import _triton_common as common  # noqa: E402
from tests.similarity.triton import harness as H  # noqa: E402

# The interpreter evaluates 2^z in numpy: where the fast path meets a huge z (the expansion's error
# for bf16 points far from the origin, flagged and redone), numpy warns; the GPU returns inf.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in exp2:RuntimeWarning")

HEADS = H.heads()
IDS = [h.name for h in HEADS]
DTYPES = [torch.float32, torch.bfloat16]
KINDS = ("random", "sphere", "duplicate", "far")


@pytest.mark.parametrize("head", HEADS, ids=IDS)
@pytest.mark.parametrize(
    "shape",  # (B, C, M, N, d): ragged B and C, M ≠ N both ways, d = 5, 16, 20, 33
    [(19, 23, 3, 2, 20), (17, 1, 2, 4, 5), (33, 18, 4, 3, 16), (2, 35, 1, 3, 33)],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ragged_shapes(head, shape, dtype, device):
    H.check(head, H.inputs(head, "random", *shape), 0.7, dtype, device)


@pytest.mark.parametrize("head", HEADS, ids=IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_single_point_sets(head, dtype, device):
    """M = N = 1: one score per pair of sets (CLIP-like)."""
    H.check(head, H.inputs(head, "sphere", 20, 17, 1, 1, 8), 0.4, dtype, device)


@pytest.mark.parametrize("head", HEADS, ids=IDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sigma", [1e-3, 0.5, 1e3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_sigma_and_point_sets(head, kind, sigma, dtype, device):
    """Tiny and huge σ; nearly duplicated points far from the origin; far-apart sets (KME: every
    score far below 0, the tiles take the online-max path). Pairs the expansion cannot resolve
    go to the direct differences of `_pairwise_exact`, as on the chunked path."""
    H.check(head, H.inputs(head, kind, 9, 18, 3, 2, 16), sigma, dtype, device)


@pytest.mark.parametrize("head", HEADS, ids=IDS)
@pytest.mark.parametrize("kind", ["random", "sphere"])
@pytest.mark.parametrize("sigma", [0.3, 1e3])
def test_kernels_alone_meet_the_tolerance(head, kind, sigma, device, monkeypatch):
    """With the direct-difference fallback switched off, the kernels' own values and gradients
    are what is compared (ordinary inputs never need the fallback)."""
    monkeypatch.setitem(chunked.KME_TOL, torch.float32, math.inf)
    monkeypatch.setitem(chunked.WPSE_TOL, torch.float32, math.inf)
    for dtype in DTYPES:
        H.check(head, H.inputs(head, kind, 21, 18, 2, 3, 24), sigma, dtype, device)


def test_kme_online_max_path(device, monkeypatch):
    """Every tile through the online logsumexp (FlashAttention's running max), on inputs whose
    tiles would otherwise take the single-exp path."""
    monkeypatch.setitem(blocks.SUM_LO, torch.float32, math.inf)
    head = H.kme_head()
    for dtype in DTYPES:
        H.check(head, H.inputs(head, "random", 19, 23, 3, 2, 20), 0.7, dtype, device)


@pytest.mark.parametrize("programs", [1, 10_000])
@pytest.mark.parametrize("head", HEADS, ids=IDS)
def test_backward_column_splits(head, programs, device, monkeypatch):
    """The backward grid splits the columns into 1 range (one program loops over every column
    block) or one range per column block (partial sums added in torch)."""
    monkeypatch.setattr(common, "INTERPRETER_PROGRAMS", programs)
    H.check(head, H.inputs(head, "random", 19, 50, 3, 2, 20), 0.7, torch.float32, device)


@pytest.mark.parametrize("head", HEADS, ids=IDS)
def test_float16_inputs(head, device):
    H.check(head, H.inputs(head, "sphere", 19, 23, 3, 2, 20), 0.5, torch.float16, device)


@settings(max_examples=12, deadline=None)
@given(
    shape=st.tuples(
        *(st.integers(1, 40) for _ in range(2)), *(st.integers(1, 5) for _ in range(2))
    ),
    d=st.integers(1, 40),
    kind=st.sampled_from(KINDS),
    sigma=st.sampled_from([1e-2, 0.3, 1.0, 7.0]),
    head=st.sampled_from(HEADS),
    seed=st.integers(0, 2**16),
)
def test_matches_reference_over_shapes(shape, d, kind, sigma, head, seed):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    H.check(head, H.inputs(head, kind, *shape, d, seed=seed), sigma, torch.float32, device)


@pytest.mark.parametrize("head", HEADS, ids=IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_error_estimate_bounds_the_kernel_error(head, dtype, device):
    """The fallback trusts the kernels where `_pairwise_chunked`'s rounding-error estimate (made
    for its GEMMs) is small; check that the estimate bounds the kernels' actual error too, also
    where it is large (cancellation: nearly duplicated points, small σ). fp32 points are
    centred, bf16 points are not (their estimate uses the raw norms)."""
    for kind in ("random", "sphere", "duplicate"):
        for sigma in (1e-2, 0.5, 5.0):
            pts = [t.to(dtype) for t in H.inputs(head, kind, 9, 10, 4, 4, 64)]
            out, ref, bound = _unspliced(head, *pts, sigma, device)
            err = (out - ref).abs()
            assert (err <= bound).all(), (kind, sigma, (err / bound).max().item())


def _unspliced(head, px, wx, py, wy, sigma, device):
    """The kernels' output before the fallback replaces any pair, its float64 reference and the
    estimated bound on its absolute error, all (B, C): KME logits, or WPSE's Σ_ab wx wy k."""
    from pmilab.similarity import _triton_kme as K
    from pmilab.similarity import _triton_wpse as W

    ref_in = [t.double() for t in (px, wx, py, wy)]
    px, wx, py, wy = (t.to(device) for t in (px, wx, py, wy))
    wx, wy, r = wx.float(), wy.float(), torch.tensor(sigma, device=device).pow(-2)
    p, q = common.point_operands(px, py)
    pn, qn = p.float().pow(2).sum(-1), q.float().pow(2).sum(-1)
    if head.name == "kme":
        out = K.KMEFused.apply(p, q, wx, wy, r)
        x, y = K._side_terms(p, wx, r)[2], K._side_terms(q, wy, r)[2]
        s = (x.abs().amax(1)[:, None] + y.abs().amax(1)[None, :]) * blocks.LN2
        bound = chunked._estimate(s + chunked._scale_terms(pn, qn, r), torch.float32)
        ref = head.reference(*ref_in, sigma)
    else:
        kernel = head.kwargs["kernel"]
        out = W.KernelSumFused.apply(p, q, wx, wy, r, kernel)
        s = pn.amax(1)[:, None] + qn.amax(1)[None, :]
        if kernel == "imq":
            s = 1 + s * r + 2 * chunked._scale_terms(pn, qn, r)
        else:
            s = s * (r / 2) + chunked._scale_terms(pn, qn, r)
        # each k ≤ 1 has relative error ≤ the estimate: |Δ Σ wx wy k| ≤ est·Σ|wx wy|
        bound = chunked._estimate(s, torch.float32) * (wx.abs().sum(1)[:, None] * wy.abs().sum(1))
        m, n = px.shape[1], py.shape[1]
        ref = P.wpse_logits_naive(*ref_in, sigma, 0.0, 1.0, kernel) * (m * n)
    return out.cpu().double(), ref, bound.cpu().double() + 1e-30

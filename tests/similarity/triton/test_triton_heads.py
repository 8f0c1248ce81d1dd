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
    # σ = 3: the kernels' own values reach the output. At σ = 0.7 every WPSE value of these
    # random points (~e^-40) is below what the expansion resolves and is recomputed exactly
    # (`_splice`), so the WPSE kernel was not what this test compared.
    H.check(head, H.inputs(head, "random", *shape), 3.0, dtype, device)


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


def test_wpse_gaussian_kernel_value_is_at_most_one(device):
    """k = 2^z with z = −r‖p − q‖²·log2(e)/2 ≤ 0 exactly, but the kernels get z from the
    expansion c·⟨p, q⟩ + x + y, whose rounding can push it far above 0 (on an H200, bf16
    duplicated points at σ = 1e-3 gave k = inf; that pair is spliced with upstream gradient 0,
    and the backward's 0 · inf made NaN point gradients). Forced here: x of one point raised by
    300, so its score against its duplicate is 300 and 2^300 overflows fp32. The kernels clamp
    k at 1: the forward is the float64 sum with that k = 1, and the backward with zero upstream
    gradient on that row gives the unforced gradients exactly (row sums and column sums)."""
    from pmilab.similarity import _triton_wpse as W

    g = torch.Generator().manual_seed(3)
    b, c, m, n, d = 3, 4, 2, 2, 16
    p = torch.randn(b, m, d, generator=g) * 0.3
    q = torch.randn(c, n, d, generator=g) * 0.3
    q[:, 0] = p[0, 0]  # every column set holds a copy of row 0's first point
    wx, wy = torch.rand(b, m, generator=g), torch.rand(c, n, generator=g)
    r = torch.tensor(1.0)
    _, _, x, y, cc, _ = W._score_terms(p, q, r, False)
    forced = x.clone()
    forced[0, 0] += 300.0
    t = common.tiles(device, d, torch.float32)
    on = [v.to(device).contiguous() for v in (p, q, x, forced, y, wx, wy, cc.reshape(()))]
    p_, q_, x_, f_, y_, wx_, wy_, c_ = on

    out = W._forward(p_, q_, f_, y_, wx_, wy_, c_, False, t).cpu().double()
    z = (p.double() @ q.double().reshape(c * n, d).T).reshape(b, m, c, n) * float(cc)
    z = z + forced.double()[:, :, None, None] + y.double()[None, None]
    want = torch.einsum("am,amcn,cn->ac", wx.double(), z.clamp(max=0).exp2(), wy.double())
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)

    up = torch.randn(b, c, generator=g)
    up[0] = 0.0  # the spliced row: no gradient flows into the kernel's value there
    up_ = up.to(device)
    blocks = (t.block_b, t.block_c)
    rows = [W._rows(p_, q_, xv, y_, wx_, wy_, c_, up_, False, blocks, t) for xv in (x_, f_)]
    cols = [W._rows(q_, p_, y_, xv, wy_, wx_, c_, up_.T, False, blocks[::-1], t) for xv in (x_, f_)]
    (gp0, gs0), (gp1, gs1) = rows
    (gq0, sq0), (gq1, sq1) = cols
    assert all(torch.isfinite(v).all() for v in (gp1, gs1, gq1, sq1))
    assert gp1[0].abs().max() == 0 and gs1[0].abs().max() == 0
    for got, unforced in ((gp1[1:], gp0[1:]), (gs1[1:], gs0[1:]), (gq1, gq0), (sq1, sq0)):
        torch.testing.assert_close(got, unforced, rtol=0, atol=0)

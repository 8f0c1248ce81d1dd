"""Compare a fused Triton head with its float64 reference: forward values and all gradients.

Tolerances (docs/theory.md T2 heads; issue 15):
- fp32 inputs: 1e-4 relative, forward and every gradient.
- bf16 / fp16 inputs, forward: also 1e-4. The kernels multiply the half-precision points exactly
  (a bf16 × bf16 product fits in fp32) and accumulate in fp32, so the logits carry fp32 rounding
  only; the reference is evaluated on the same (rounded) input values.
- bf16 gradients: 2^-6 ≈ 1.6e-2 relative. Two roundings to bf16 (unit roundoff u = 2^-9) enter:
  the backward GEMM multiplies the softmax/kernel weights W rounded to bf16 (as FlashAttention
  does), and the gradient of a bf16 input is stored in bf16. The point gradient r(Σ W q − Σ W·p)
  is a difference of two such sums, which amplifies their error by their ratio to the result
  (≤ 2 on these inputs): 2·(u + u)·2 = 8u = 2^-6.
- fp16 gradients: the same reasoning with u = 2^-11: 8u = 2^-8.
- Where fp32 arithmetic itself cannot resolve a gradient, no fp32 kernel can: at small σ the KME
  softmax weighs scores |z| ≫ 1 by their differences, which fp32 rounds by eps·|z| (eps = 2^-24).
  Two fp32 evaluations on the same values (`baseline`: the brute-force reference, and the
  chunked path) then miss the float64 gradient by more than the tolerance: e.g. 2.4e-4 and
  5.1e-4 for d = 1 duplicated points at σ = 0.01, or ~6% for bf16-rounded duplicates (exactly
  coincident points) at σ = 1e-3, or 8–13% for bf16 points at ±300. A gradient passes if it is
  within its tolerance or within BASELINE_X times the larger of those two fp32 errors. On
  well-conditioned inputs they are ~1e-7 and the tolerances above are what binds (over 120
  random cases the kernels' error never exceeded 1.1 times max(1e-4, the brute force's)).

"Relative" means: KME forward |Δℓ| ≤ tol·max(1, |ℓ|) elementwise (ℓ is a log); WPSE forward
|Δ| ≤ tol·Σ|wx wy|(|α₁|‖u‖‖v‖ + |α₂|k)/(MN) elementwise (the scale of its signed terms, as in
tests/similarity/test_pairwise.py); a tensor's gradient: max|Δg| ≤ tol·max|g_ref| over the
tensor; a scalar's (σ, α's): |Δg| ≤ tol·Σ_ij |G_ij ∂out_ij/∂θ|, the scale of the signed sum it
is (with a signed upstream G it can cancel a thousandfold: B = C = 31, d = 28, σ = 0.3 gives
a sum of 1e3 from terms of 1.3e6, which fp32 can only resolve to ~4e-4 relative; the chunked
path is off by 3.6e-4 there too).

The points' and σ's gradients are also allowed the accuracy of the terms they are computed from
(`_expansion_scales`): Σ W q and (Σ W) p for Σ W (q − p), and ⟨p, q⟩, ‖p‖², ‖q‖² for ‖p − q‖².
Where points coincide exactly or nearly, relative to their norms, the true gradient is a small
difference of those terms, and fp32 resolves it only to eps times the terms, in the chunked path
as well (d = 1, all points at ±1, σ = 0.3: σ's or px's gradient is 1e-8 of its terms, and both
paths miss it entirely). The forward contract of `_pairwise` makes the same choice for WPSE
values. On ordinary inputs these scales are 1–3 times max|g| (Σ W q and (Σ W) p do not cancel).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from pmilab.similarity import _pairwise as P
from pmilab.similarity._pairwise_chunked import kme_chunked, wpse_chunked
from tests.similarity.test_pairwise import point_sets, wpse_scale

FWD_TOL = {torch.float32: 1e-4, torch.bfloat16: 1e-4, torch.float16: 1e-4}
GRAD_TOL = {torch.float32: 1e-4, torch.bfloat16: 2.0**-6, torch.float16: 2.0**-8}
BASELINE_X = 4.0
NAMES = ("px", "wx", "py", "wy", "sigma", "alpha_linear", "alpha_kernel")


@dataclass(frozen=True)
class Head:
    """One head: its Triton function, its float64 reference, and extra arguments."""

    name: str
    triton: Callable[..., Tensor]
    reference: Callable[..., Tensor]
    alphas: tuple[float, ...] = ()  # WPSE: (α₁, α₂), passed as tensors with gradients
    kwargs: dict = field(default_factory=dict)

    def scale(self, px, wx, py, wy, sigma, *alphas) -> Tensor:
        """(B, C) float64 scale that forward errors are divided by."""
        if not self.alphas:
            return self.reference(px, wx, py, wy, sigma).abs().clamp_min(1.0)
        al, ak = (float(a) for a in alphas)
        # 1e-30·Σ|w w|: fp32 flushes kernel values below ~1e-38 to zero, as the naive fp32 does
        return wpse_scale(px, wx, py, wy, float(sigma), al, ak, self.kwargs["kernel"]) + 1e-30


def kme_head() -> Head:
    from pmilab.similarity._triton_kme import kme_logits_triton

    return Head("kme", kme_logits_triton, P.kme_logits_naive)


def wpse_head(kernel: str, alphas=(0.3, -0.8)) -> Head:
    from pmilab.similarity._triton_wpse import wpse_logits_triton

    def tri(px, wx, py, wy, sigma, al, ak):
        return wpse_logits_triton(px, wx, py, wy, sigma, al, ak, kernel)

    def ref(px, wx, py, wy, sigma, al, ak):
        return P.wpse_logits_naive(px, wx, py, wy, sigma, al, ak, kernel)

    return Head(f"wpse-{kernel}", tri, ref, alphas, {"kernel": kernel})


def heads() -> list[Head]:
    return [kme_head(), wpse_head("gaussian"), wpse_head("imq")]


def flat_kme_head(atomic: bool = False) -> Head:
    """KME on the flattened kernels (`_triton_flat_kme`); atomic: the one-pass backward."""
    from pmilab.similarity._triton_flat_kme import kme_logits_triton_flat

    def tri(px, wx, py, wy, sigma):
        return kme_logits_triton_flat(px, wx, py, wy, sigma, atomic=atomic)

    return Head("kme-flat" + "-atomic" * atomic, tri, P.kme_logits_naive)


def flat_wpse_head(kernel: str, atomic: bool = False, alphas=(0.3, -0.8)) -> Head:
    """WPSE on the flattened kernels (`_triton_flat_wpse`)."""
    from pmilab.similarity._triton_flat_wpse import wpse_logits_triton_flat

    def tri(px, wx, py, wy, sigma, al, ak):
        return wpse_logits_triton_flat(px, wx, py, wy, sigma, al, ak, kernel, atomic=atomic)

    base = wpse_head(kernel, alphas)
    name = f"wpse-{kernel}-flat" + "-atomic" * atomic
    return Head(name, tri, base.reference, base.alphas, base.kwargs)


def inputs(head: Head, kind: str, b, c, m, n, d, seed=0) -> list[Tensor]:
    """Float64 (px, wx, py, wy): `point_sets` of `kind`; WPSE gets signed weights."""
    px, wx, py, wy = point_sets(kind, b, c, m, n, d, seed=seed)
    if head.alphas:
        g = torch.Generator().manual_seed(seed + 1)
        wx = torch.randn(b, m, generator=g, dtype=torch.float64)
        wy = torch.randn(c, n, generator=g, dtype=torch.float64)
    return [px, wx, py, wy]


def errors(head: Head, pts: list[Tensor], sigma: float, dtype, device, fn=None) -> dict:
    """Relative errors of `fn` (default head.triton) against the float64 reference.

    The points and weights are cast to `dtype` on `device`; σ and the α's are fp32 tensors with
    gradients. The reference runs in float64 on exactly those values; gradients are of
    Σ out·G for one fixed random G (B, C).
    """
    fn = fn or head.triton
    leaves = [t.to(dtype).to(device).requires_grad_() for t in pts]
    leaves += [torch.tensor(v, device=device).requires_grad_() for v in (sigma, *head.alphas)]
    return _errors(head, fn, leaves)


def _errors(head: Head, fn, leaves: list[Tensor]) -> dict:
    refs = [t.detach().cpu().double().requires_grad_() for t in leaves]
    out, ref = fn(*leaves), head.reference(*refs)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    gout = _upstream(ref.shape)
    (out * gout.to(out.device)).sum().backward()
    (ref * gout.double()).sum().backward()
    with torch.no_grad():
        scale = head.scale(*refs)
        errs = {"forward": ((out.cpu().double() - ref).abs() / scale).max().item()}
    norms = _norms(head, refs, gout)
    for name, got, want in zip(NAMES, leaves, refs, strict=False):
        assert got.grad is not None and torch.isfinite(got.grad).all(), name
        err = (got.grad.cpu().double() - want.grad).abs().max().item()
        errs[name] = err / norms[name]
    return errs


def _upstream(shape) -> Tensor:
    """The fixed random upstream gradient G (B, C) of every comparison."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(7))


def _norms(head: Head, refs: list[Tensor], gout: Tensor) -> dict:
    """What each gradient's error is divided by: max|g_ref| for a tensor, the term scale for a
    scalar (refs hold the reference's gradients already)."""
    out = {}
    expansion = _expansion_scales(head, refs, gout.double())
    for k, (name, want) in enumerate(zip(NAMES, refs, strict=False)):
        if want.dim() == 0:  # a scalar's gradient: a signed sum over all (i, j)
            norm = _term_scale(head, refs, k, gout.double())
        else:
            norm = want.grad.abs().max()
        if name in expansion:
            norm = torch.maximum(norm, expansion[name])
        out[name] = max(norm.item(), 1e-30)
    return out


def gradient_norms(head: Head, pts: list[Tensor], sigma: float, dtype) -> dict:
    """The normalisers `errors` uses for these inputs (for tests that inject known errors)."""
    refs = [t.to(dtype).double().requires_grad_() for t in pts]
    refs += [torch.tensor(v).double().requires_grad_() for v in (sigma, *head.alphas)]
    ref = head.reference(*refs)
    gout = _upstream(ref.shape)
    (ref * gout.double()).sum().backward()
    return _norms(head, refs, gout)


def _expansion_scales(head: Head, refs: list[Tensor], gout: Tensor) -> dict:
    """The scale of the terms the kernels compute the points' and σ's gradients from.

    With W = G ∂out/∂(‖p − q‖²)·(−2σ²) per point pair (KME: G π; WPSE: G wx wy k, or k³ for the
    IMQ, times α₂/(MN)), the points' gradient (1/σ²) Σ_jb W (q − p) is computed as the
    difference of Σ W q and (Σ W) p: its scale is the larger of the two, per point. σ's,
    (2/σ³) Σ W ‖p − q‖²/2, is computed from ⟨p, q⟩, ‖p‖², ‖q‖²: its scale is
    (2/σ³) Σ |W| (|⟨p, q⟩| + ‖p‖²/2 + ‖q‖²/2). The points are taken as the kernels see them
    (`point_operands`: fp32 centred, bf16 as given).
    """
    from pmilab.similarity._triton_common import point_operands

    px, wx, py, wy, sigma = (t.detach() for t in refs[:5])
    dtype = torch.float64 if px.dtype == torch.float64 else px.dtype
    p, q = (t.double() for t in point_operands(px.to(dtype), py.to(dtype)))
    pn, qn = p.pow(2).sum(-1), q.pow(2).sum(-1)  # (B, M), (C, N)
    d2 = P.sq_dists(px, py)  # (B, C, M, N)
    if not head.alphas:
        z = wx[:, None, :, None] + wy[None, :, None, :] - d2 / (2 * sigma**2)
        w = torch.softmax(z.flatten(2), -1).view_as(z)
    else:
        k = P.kernel_values(d2, sigma, head.kwargs["kernel"])
        w = k if head.kwargs["kernel"] == "gaussian" else k**3
        m, n = px.shape[1], py.shape[1]
        w = w * wx[:, None, :, None] * wy[None, :, None, :] * head.alphas[1] / (m * n)
    w = w * gout[:, :, None, None]
    gp, gx = torch.einsum("bcmn,cnd->bmd", w, q), w.sum((1, 3))  # Σ W q, Σ W (B, M)
    gq, gy = torch.einsum("bcmn,bmd->cnd", w, p), w.sum((0, 2))
    spread = (
        torch.einsum("bmd,cnd->bcmn", p, q).abs()
        + (pn[:, None, :, None] + qn[None, :, None, :]) / 2
    )
    return {
        "px": torch.maximum(gp.norm(dim=-1), gx.abs() * pn.sqrt()).max() / sigma**2,
        "py": torch.maximum(gq.norm(dim=-1), gy.abs() * qn.sqrt()).max() / sigma**2,
        "sigma": (w.abs() * spread).sum() * 2 / sigma**3,
    }


def _term_scale(head: Head, refs: list[Tensor], k: int, gout: Tensor) -> Tensor:
    """Σ_ij |G_ij ∂out_ij/∂θ| for the scalar input k (forward-mode derivative of the reference)."""
    args = [t.detach() for t in refs]

    def f(theta):
        return head.reference(*args[:k], theta, *args[k + 1 :])

    with warnings.catch_warnings():  # torch.func's first use warns about torch.jit.script
        warnings.simplefilter("ignore", DeprecationWarning)
        _, tangent = torch.func.jvp(f, (args[k],), (torch.ones_like(args[k]),))
    return (gout * tangent).abs().sum()


def baseline(head: Head, pts: list[Tensor], sigma: float, dtype) -> dict:
    """What fp32 arithmetic resolves on these inputs: the larger error of two fp32 evaluations
    on the values `pts` take in `dtype` — the brute-force reference (direct differences) and
    the chunked path CPU tensors take (GEMM expansion, tested in test_pairwise.py). One
    evaluation alone can be lucky; the larger of two independent ones is not, usually."""
    leaves = [t.to(dtype).float().requires_grad_() for t in pts]
    leaves += [torch.tensor(v).requires_grad_() for v in (sigma, *head.alphas)]
    brute = _errors(head, head.reference, leaves)
    for t in leaves:
        t.grad = None
    chunked = _errors(head, _chunked(head), leaves)
    return {k: max(brute[k], chunked[k]) for k in brute}


def _chunked(head: Head):
    """The chunked path's function of `head` (fp32 leaves), whatever `_backend` answers."""
    if not head.alphas:
        return kme_chunked
    kernel = head.kwargs["kernel"]

    def fn(px, wx, py, wy, sigma, al, ak):
        return wpse_chunked(px, wx, py, wy, sigma, al, ak, kernel)

    return fn


def assert_within(errs: dict, dtype, base: dict | None = None) -> None:
    """Forward within FWD_TOL; every gradient within GRAD_TOL or within BASELINE_X times the fp32
    reference's own error `base` (raises AssertionError)."""
    over = {}
    for k, v in errs.items():
        tol = FWD_TOL[dtype] if k == "forward" else GRAD_TOL[dtype]
        if base is not None and k != "forward":
            tol = max(tol, BASELINE_X * base[k])
        if not v <= tol:
            over[k] = (v, tol)
    assert not over, f"above tolerance ({dtype}): {over} (error, tol); all: {errs}"


def check(head: Head, pts, sigma: float, dtype, device, fn=None) -> dict:
    """`errors` within the tolerances, the fp32 baseline consulted only where they are exceeded."""
    errs = errors(head, pts, sigma, dtype, device, fn)
    try:
        assert_within(errs, dtype)
    except AssertionError:
        assert_within(errs, dtype, baseline(head, pts, sigma, dtype))
    return errs

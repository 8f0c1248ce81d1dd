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
  The brute-force reference evaluated in fp32 on the same values (`baseline`) then misses the
  float64 gradient by more than the tolerance: e.g. 2.4e-4 for d = 1 duplicated points at
  σ = 0.01, or ~6% for bf16-rounded duplicates (exactly coincident points) at σ = 1e-3. A
  gradient passes if it is within its tolerance or within BASELINE_X times that fp32 error.
  On well-conditioned inputs the fp32 error is ~1e-7 and the tolerances above are what binds.

"Relative" means: KME forward |Δℓ| ≤ tol·max(1, |ℓ|) elementwise (ℓ is a log); WPSE forward
|Δ| ≤ tol·Σ|wx wy|(|α₁|‖u‖‖v‖ + |α₂|k)/(MN) elementwise (the scale of its signed terms, as in
tests/similarity/test_pairwise.py); a gradient: max|Δg| ≤ tol·max|g_ref| over the tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from pmilab.similarity import _pairwise as P
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
    gout = torch.randn(ref.shape, generator=torch.Generator().manual_seed(7))
    (out * gout.to(out.device)).sum().backward()
    (ref * gout.double()).sum().backward()
    with torch.no_grad():
        scale = head.scale(*refs)
        errs = {"forward": ((out.cpu().double() - ref).abs() / scale).max().item()}
        for name, got, want in zip(NAMES, leaves, refs, strict=False):
            assert got.grad is not None and torch.isfinite(got.grad).all(), name
            err = (got.grad.cpu().double() - want.grad).abs().max()
            errs[name] = (err / want.grad.abs().max().clamp_min(1e-30)).item()
    return errs


def baseline(head: Head, pts: list[Tensor], sigma: float, dtype) -> dict:
    """The same errors for the brute-force reference itself, evaluated in fp32 on the values
    `pts` take in `dtype`: what fp32 arithmetic can resolve on these inputs."""
    leaves = [t.to(dtype).float().requires_grad_() for t in pts]
    leaves += [torch.tensor(v).requires_grad_() for v in (sigma, *head.alphas)]
    return _errors(head, head.reference, leaves)


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
    errs = errors(head, pts, sigma, dtype, device, fn)
    assert_within(errs, dtype, baseline(head, pts, sigma, dtype))
    return errs

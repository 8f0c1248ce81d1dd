"""`_pairwise._backend` sends CUDA tensors to the Triton kernels, everything else to the chunked
torch code; the public functions wire either one correctly (issue 15).

On a CPU machine the CUDA decision is checked on the rule itself (a stand-in with a CUDA device),
and the wiring by forcing `_backend` to "triton" for CPU tensors, which the interpreter runs. That
CPU tensors keep the chunked path bit for bit is tested in tests/similarity/test_pairwise.py
(it needs no Triton).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tests.similarity.triton.conftest import SKIP_REASON

pytest.importorskip("triton", reason=SKIP_REASON)

from pmilab.similarity import _pairwise as P  # noqa: E402
from tests.similarity.triton import harness as H  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in exp2:RuntimeWarning")


def _like(device: str, dtype: torch.dtype):
    """What `_backend` reads of a tensor: its device and dtype."""
    return SimpleNamespace(device=torch.device(device), dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_backend_rule(dtype, monkeypatch):
    assert P._backend(_like("cpu", dtype)) == "chunked"
    want = "chunked" if dtype == torch.float64 else "triton"  # float64: no fp64 kernel
    assert P._backend(_like("cuda", dtype)) == want
    monkeypatch.setattr(P, "_triton_installed", lambda: False)
    assert P._backend(_like("cuda", dtype)) == "chunked"  # without Triton: the chunked path


@pytest.fixture
def forced_triton(monkeypatch, device):
    """`_backend` answers "triton" for these tensors too; returns the list of calls made."""
    calls = []
    monkeypatch.setattr(P, "_backend", lambda px: "triton")
    for table in (P._KME, P._WPSE):
        fn = table["triton"]
        monkeypatch.setitem(table, "triton", lambda *a, _f=fn: calls.append(_f) or _f(*a))
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_public_functions_run_the_kernels_through_the_dispatch(forced_triton, dtype, device):
    """kme_logits / wpse_logits (σ and α's as tensors with gradients) through the "triton" entry
    equal the references, forward and backward, with bf16 points kept bf16 up to the kernel."""
    kme = H.Head("kme", P.kme_logits, P.kme_logits_naive)
    H.check(kme, H.inputs(kme, "sphere", 19, 23, 3, 2, 20), 0.5, dtype, device)
    for kernel in ("gaussian", "imq"):
        wpse = H.wpse_head(kernel)
        wpse = H.Head(wpse.name, _public_wpse(kernel), wpse.reference, wpse.alphas, wpse.kwargs)
        H.check(wpse, H.inputs(wpse, "random", 19, 23, 3, 2, 20), 0.5, dtype, device)
    assert len(forced_triton) == 3


def _public_wpse(kernel):
    def fn(px, wx, py, wy, sigma, al, ak):
        return P.wpse_logits(px, wx, py, wy, sigma, al, ak, kernel)

    return fn


def test_autocast_and_python_floats_through_the_dispatch(forced_triton, device):
    """Under bf16 autocast, with σ and α's as python floats: fp32 logits equal to the reference."""
    px, wx, py, wy = (
        t.float().to(device) for t in H.inputs(H.kme_head(), "sphere", 9, 17, 2, 3, 8)
    )
    ref = P.kme_logits_naive(*(t.double().cpu() for t in (px, wx, py, wy)), 0.4)
    refw = P.wpse_logits_naive(*(t.double().cpu() for t in (px, wx, py, wy)), 0.4, 0.3, 1.0)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = P.kme_logits(px, wx, py, wy, 0.4)
        outw = P.wpse_logits(px, wx, py, wy, 0.4, 0.3, 1.0)
    assert out.dtype == outw.dtype == torch.float32
    assert ((out.cpu().double() - ref).abs() / ref.abs().clamp_min(1)).max() <= 1e-4
    assert (outw.cpu().double() - refw).abs().max() <= 1e-4 * refw.abs().max()
    assert len(forced_triton) == 2


def test_nothing_of_size_bcmn_is_saved(device):
    """Forward + backward keep only O(B·C + (B+C)·M·d) tensors for autograd: the scores are
    recomputed in backward (B·C·M·N = 16500 here; the largest saved tensor must be far smaller)."""
    b, c, m, n, d = 33, 20, 5, 5, 4
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    for head in (H.kme_head(), H.wpse_head("gaussian")):
        leaves = [
            t.float().to(device).requires_grad_() for t in H.inputs(head, "sphere", b, c, m, n, d)
        ]
        extra = [torch.tensor(v, device=device, requires_grad=True) for v in (0.5, *head.alphas)]
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = head.triton(*leaves, *extra)
        out.sum().backward()
    assert sizes and max(sizes) <= max(b * c, (b + c) * max(m, n) * d)
    assert max(sizes) * 10 < b * c * m * n

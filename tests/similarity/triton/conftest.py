"""Run the fused Triton kernels of the point-set heads in Triton's CPU interpreter (issue 15).

Triton decides at import time whether its kernels are compiled or interpreted: `TRITON_INTERPRET=1`
must be set when `triton` (and the modules that decorate kernels) are first imported. This
conftest does that import on machines without CUDA, then restores the environment, so the rest of
the suite sees no change (nothing else in pmilab uses Triton; CPU tensors never reach it through
`_pairwise._backend`). On a CUDA machine nothing is interpreted: the same tests run the compiled
kernels on the GPU and carry the `cuda` mark (`pytest -m cuda`, benchmarks/gpu_check.sh).

Without Triton installed, the tests here skip with that reason (the CPU path does not need it).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import pytest
import torch

ON_GPU = torch.cuda.is_available()
KERNEL_MODULES = tuple(
    f"pmilab.similarity._triton_{name}"
    for name in ("common", "kme", "wpse", "flat_kme", "flat_wpse")
)  # common first: it holds jit helpers the others import; the flat modules import kme, wpse
INSTALLED = importlib.util.find_spec("triton") is not None
SKIP_REASON = 'Triton is not installed (pip install -e ".[triton]"; `make test` installs it)'


def _import_interpreted() -> str | None:
    """Import triton and the kernel modules with TRITON_INTERPRET=1; None, or why it failed."""
    if "triton" in sys.modules and not ON_GPU:
        import triton.language as tl

        if type(tl.zeros).__name__ == "JITFunction":  # imported earlier, compiled mode
            return "triton was imported before the interpreter could be enabled"
    prev = os.environ.get("TRITON_INTERPRET")
    if not ON_GPU:
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        for name in KERNEL_MODULES:  # (re)decorate the kernels in this mode
            if name in sys.modules:
                importlib.reload(sys.modules[name])
            else:
                importlib.import_module(name)
    finally:
        if prev is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = prev
    return None


def _problem() -> str | None:
    """Why the tests here cannot run, or None."""
    if not INSTALLED:
        return SKIP_REASON
    if not ON_GPU:  # the interpreter: not every Triton's can run the kernels
        from pmilab.similarity._triton_support import interpreter_problem

        if (why := interpreter_problem()) is not None:
            return why
    return _import_interpreted()


PROBLEM = _problem()


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    for item in items:
        if not str(item.fspath).startswith(here):
            continue
        if PROBLEM:
            item.add_marker(pytest.mark.skip(reason=PROBLEM))
        elif ON_GPU:
            item.add_marker(pytest.mark.cuda)


@pytest.fixture
def device() -> torch.device:
    """Where the kernels run: the GPU when there is one, else the CPU through the interpreter."""
    return torch.device("cuda" if ON_GPU else "cpu")


@pytest.fixture(autouse=True)
def _interpreter_env(monkeypatch):
    """Keep TRITON_INTERPRET=1 visible while these tests run (CPU only), as at import."""
    if not ON_GPU:
        monkeypatch.setenv("TRITON_INTERPRET", "1")

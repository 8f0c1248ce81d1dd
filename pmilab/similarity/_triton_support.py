"""Which Triton runs the fused kernels in its CPU interpreter (`TRITON_INTERPRET=1`).

The kernels' backward passes loop over column blocks from `tl.program_id`: `range(k·BLOCK, C,
nk·BLOCK)`. Triton 3.9's interpreter runs that; 3.6.0's does not (its program id is a 1-element
array, and the loop bound fails with "only 0-dimensional arrays can be converted to Python
scalars"), measured with the tests of `tests/similarity/triton`. Versions 3.7 and 3.8 were not
tried. Compiled GPU kernels are unaffected: Triton 3.6.0, as CUDA torch 2.11 ships it, passed
the same tests compiled on an H200 (benchmarks/results/gpu/).

This module does not import triton: the interpreter must be chosen before triton's first import.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

INTERPRETER_MIN = (3, 9)


def interpreter_problem() -> str | None:
    """None if the installed Triton's interpreter runs the kernels, else why not (one line)."""
    try:
        found = version("triton")
    except PackageNotFoundError:
        return "Triton is not installed"
    parts = tuple(int(v) for v in re.findall(r"\d+", found)[:2])
    if parts < INTERPRETER_MIN:
        need = ".".join(map(str, INTERPRETER_MIN))
        return (
            f"Triton {found}'s CPU interpreter cannot run the fused kernels (loop bounds from "
            f"tl.program_id); it needs Triton >= {need}. Compiled GPU kernels are unaffected"
        )
    return None

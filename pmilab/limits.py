"""The one owner of "is this size affordable?": sizes are checked against an estimate of the
memory they need before anything is allocated.

Without it a typo such as `latent:nx=200000,ny=200000`, `d.sample(10**12)` or
`--batch-size 100000000` reaches the allocator, which kills the process (or the machine's other
work) minutes later with no message. Here it is one line naming the estimate and the limit.

The limit is a fraction (`DEFAULT_FRACTION`) of the machine's physical memory, or
`PMILAB_MAX_MEMORY_GB` GiB (2**30 bytes) when that variable is set: it raises the limit for a
big machine, or lowers it (the tests make sizes "too big" this way without allocating them).
The estimates are rough upper bounds (a few temporaries per tensor): they exist to stop sizes
that are wrong by orders of magnitude, not to pack memory tightly.

`fit_bytes` estimates a `fit` from its config alone; it reads the config's fields and the
distribution's sizes by name (duck typing), so this foundation module imports nothing of
pmilab but its errors.
"""

from __future__ import annotations

import math
import os

from pmilab.errors import InputError

MEMORY_LIMIT_ENV = "PMILAB_MAX_MEMORY_GB"
# Of the machine's RAM, what one pmilab process may plan to use by default: room is left for
# the OS, the interpreter and torch's own allocations, which the estimates do not count.
DEFAULT_FRACTION = 0.75
GIB = 2**30
MEMINFO = "/proc/meminfo"


def _physical_memory_bytes() -> float:
    """Total RAM from /proc/meminfo (Linux), else sysconf; inf when neither says (no limit)."""
    try:
        with open(MEMINFO) as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return float(line.split()[1]) * 1024  # the value is in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return math.inf


def memory_limit_bytes() -> float:
    """Bytes one request may need: PMILAB_MAX_MEMORY_GB GiB if set, else DEFAULT_FRACTION of
    the RAM. Read at each call, so a changed variable takes effect at once."""
    text = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if not text:
        return DEFAULT_FRACTION * _physical_memory_bytes()
    try:
        gib = float(text)
    except ValueError:
        gib = math.nan
    if not (math.isfinite(gib) and gib > 0):
        raise InputError(f"{MEMORY_LIMIT_ENV} must be a positive number of GiB, got {text!r}")
    return gib * GIB


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.3g}"


def check_bytes(n_bytes: float, what: str, hint: str = "") -> None:
    """Raise InputError when `what` needs more than the limit (`n_bytes` is its estimate).

    Called with sizes computed from the request (Python ints, which do not overflow), before
    anything of that size exists.
    """
    limit = memory_limit_bytes()
    n = float(n_bytes)
    if n <= limit:
        return
    needs = f"about {_gib(n)} GiB" if math.isfinite(n) else "more memory than any machine has"
    tail = f"; {hint}" if hint else ""
    raise InputError(
        f"{what} needs {needs}, above the limit of {_gib(limit)} GiB "
        f"(set {MEMORY_LIMIT_ENV} to raise it){tail}"
    )

"""Test-wide settings: the suite is deterministic, with or without `CI` set.

Hypothesis runs under one profile everywhere ("deterministic"): `derandomize=True` draws the
same examples on every run (seeded from each test's own code), and `database=None` means a
failing example saved in `.hypothesis/` by an earlier run (or by another hypothesis version) is
never replayed, so a run's result depends only on the code. To explore with fresh random
examples on purpose, run `HYPOTHESIS_PROFILE=explore make test`; that profile is never the
default.

Hypothesis would also mix in constants it reads from the project's modules loaded so far; that
is switched off below (`_no_local_constants`), so a test draws the same examples alone, inside
`make test`, and on any pytest-xdist worker. A failure prints `@reproduce_failure(...)`
(print_blob), which replays it exactly in any selection.
"""

import os

import torch
from hypothesis import settings

DETERMINISTIC = "deterministic"
settings.register_profile(
    DETERMINISTIC, derandomize=True, database=None, deadline=None, print_blob=True
)
settings.register_profile("explore", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", DETERMINISTIC))

# Two cores: keep intra-op threads fixed so timings and results do not depend on the machine.
# Under pytest-xdist (`make test` runs TEST_JOBS workers, one per core) each worker gets one.
torch.set_num_threads(
    1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads())
)


def _no_local_constants() -> None:
    """Hypothesis draws ~5 % of its examples from constants it parses out of the project's modules
    loaded so far, and caches that pool at its first draw. Under pytest-xdist which modules a
    worker has loaded by then depends on how the tests were scheduled, so the same code could
    draw other examples on a rerun. With no local constants the examples depend only on each
    test's own code (hypothesis' global constants, NaN, the float limits and so on, stay).
    A private hook of hypothesis: if it moves, this says so instead of silently doing nothing."""
    from hypothesis.internal.conjecture import providers

    if not hasattr(providers, "_get_local_constants"):
        raise RuntimeError(
            "tests/conftest.py: hypothesis.internal.conjecture.providers._get_local_constants is "
            "gone (hypothesis upgraded?); update _no_local_constants"
        )
    empty = providers._local_constants  # the empty pool hypothesis starts from
    providers._get_local_constants = lambda: empty


_no_local_constants()

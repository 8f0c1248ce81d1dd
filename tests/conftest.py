"""Test-wide settings: the suite is deterministic, with or without `CI` set.

Hypothesis runs under one profile everywhere ("deterministic"): `derandomize=True` draws the
same examples on every run (seeded from each test's own code), and `database=None` means a
failing example saved in `.hypothesis/` by an earlier run (or by another hypothesis version) is
never replayed, so a run's result depends only on the code. To explore with fresh random
examples on purpose, run `HYPOTHESIS_PROFILE=explore make test`; that profile is never the
default.

Hypothesis also mixes in constants it reads from the project's modules loaded so far, so a test
file run alone may draw other examples than the same file inside `make test` (both are fixed
for the code they run). A failure prints `@reproduce_failure(...)` (print_blob), which replays
it exactly in any selection.
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
torch.set_num_threads(min(2, torch.get_num_threads()))

"""Test-wide settings: hypothesis is derandomised under CI so a run is reproducible."""

import os

import torch
from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Two cores: keep intra-op threads fixed so timings and results do not depend on the machine.
torch.set_num_threads(min(2, torch.get_num_threads()))

"""Pretraining tests run their torch ops on one thread: on a loaded 2-core machine a second
intra-op thread mostly spins (measured: 11.6 s against 0.06 s for one accumulation test)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

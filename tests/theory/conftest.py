import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """These matrices are tiny; on a shared 2-core box spinning intra-op threads cost ~10×."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

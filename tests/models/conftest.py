"""Model tests run tiny networks: one intra-op thread avoids oversubscribing the shared cores (10x faster here)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

"""Suite-wide test settings.

`make test` runs two pytest workers on two cores; each test uses one intra-op thread so the workers do not
oversubscribe the cores (tiny networks ran 10-30x slower with two threads per worker on a loaded machine).
Subprocesses started by tests inherit OMP_NUM_THREADS=1 for the same reason.

One thread is set when this file is imported, so module- and session-scoped fixtures (the tiny shapes datasets,
the overfitted tiny detector) run with it too, and :func:`single_thread` puts it back around every test; test
files and helpers rely on this fixture and do not set the thread count themselves.
"""

import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

"""Fixtures shared by the detectors test modules (no tests here)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def single_torch_thread():
    """One torch thread: on the shared 2-core CI machine, 2 spinning OpenMP threads are many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

"""Shared fixtures."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def single_thread():
    """Run a test with one intra-op thread, then restore the previous setting.

    The engine's statistical tests push many small tensors (10^4 x 16 doubles) through
    thousands of tiny ops; on a 2-core machine shared with other jobs, OpenMP threads
    oversubscribe the cores and make such loops ~4x slower than one thread.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)

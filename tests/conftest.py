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


# The data steps of README.md ("Set up and run the tests"): a test that needs their files fails with the
# command to run, never skips (CI runs them before the tests, so a skip would hide a broken data step).
DATA_STEPS = {"brain": "python data_scripts/prepare_brain.py", "digits": "python data_scripts/prepare_digits.py"}


def prepared(make, data: str):
    """make() (a data set constructor), or a test failure naming the README data step that provides `data`."""
    try:
        return make()
    except FileNotFoundError as err:
        pytest.fail(f"the {data} data are not prepared: run `{DATA_STEPS[data]}` (README.md, the test set-up "
                    f"command) first ({err})", pytrace=False)

"""Shared test helpers: small seeded problems and comparison with explicit tolerances."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One torch thread for a test file's tiny problems (``pytestmark =
    pytest.mark.usefixtures("one_thread")``): on a loaded machine idle OpenMP threads only
    wait for a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_close(actual, expected, *, rtol, atol, what=""):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")

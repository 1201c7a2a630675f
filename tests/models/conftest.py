"""Model tests run torch on one thread: on a shared 2-core machine, two OpenMP threads per process spin against
other processes and made the tiny-batch tests about 10x slower (measured: 128 s against 11 s for three big nets)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

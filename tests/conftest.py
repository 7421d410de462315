"""Shared test set-up: keep Ray local and quiet (its token auth stays on), and torch small on 2 cores."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny GEMMs: one thread is faster, and immune to OpenMP stalls on a busy 2-core machine."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):  # numpy/scipy BLAS too
        yield
    torch.set_num_threads(before)

"""Shared test set-up: keep Ray local and quiet (its token auth stays on), and torch small on 2 cores."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# OpenMP threads that wait at a barrier sleep instead of spinning. Every process the tests start inherits it
# (searches, their Ray, its workers). A search's seed network trains with 2 threads (the CPUs of both
# concurrent trials); with the default spin-wait, one of them descheduled by any other process on a 2-core
# machine made one smoke seed epoch take 35-90 s instead of 2-5 s (seed_cpu_seconds in the search's log).
# The results are the same; only how a waiting thread waits changes. Set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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


@pytest.fixture(scope="module")
def one_thread_module() -> Iterator[None]:
    """`one_thread` for a whole module, whose module-scoped fixtures build and run models too
    (`pytestmark = pytest.mark.usefixtures("one_thread_module")`)."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def zoo_smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `analysis/zoo.py --smoke --jobs 2` folder (units in worker processes), shared by the zoo's and the
    scores' tests; test_zoo resumes it in one process."""
    root = Path(__file__).resolve().parent.parent
    out = tmp_path_factory.mktemp("zoo-smoke") / "zoo"
    r = subprocess.run([sys.executable, str(root / "analysis" / "zoo.py"), "--smoke", "--jobs", "2", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`@pytest.mark.gpu` tests run where CUDA is present (analysis/gpu_check.sh) and are skipped elsewhere."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (none present)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

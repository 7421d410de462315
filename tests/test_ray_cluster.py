"""Connecting to Ray: unreachable addresses fail fast, authentication stays on.

Each test named after a defect fails on the code before its fix.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# Ray: reachability and authentication


def test_unreachable_address_fails_fast(tmp_path: Path) -> None:
    """Defect: `--address 127.0.0.1:1` (nothing listens) hung for minutes printing GCS warnings."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "hebbnas.cli", "search", "--budget", "1.5e9", "--smoke",
                        "--address", "127.0.0.1:1", "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=60, env=env)
    assert time.perf_counter() - t0 < 30
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "127.0.0.1:1" in r.stderr, r.stderr
    assert r.stderr.startswith("hebbnas search: error: cannot reach a Ray cluster at 127.0.0.1:1")
    assert not (tmp_path / "run").exists()


def test_auth_stays_on_and_turning_it_off_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Security: nothing sets RAY_AUTH_MODE=disabled any more; a user who does is warned in one line."""
    from hebbnas.search.ray_cluster import auth_warning, quiet_ray_env

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    quiet_ray_env()
    assert "RAY_AUTH_MODE" not in os.environ and auth_warning() is None
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    w = auth_warning()
    assert w is not None and "\n" not in w and "unauthenticated" in w
    for doc in ("README.md", "runs/README.md", ".ci/run", "tests/conftest.py"):
        assert "RAY_AUTH_MODE=disabled" not in (ROOT / doc).read_text().replace("`RAY_AUTH_MODE=disabled`", ""), doc



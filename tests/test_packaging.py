"""A non-editable install finds the shipped search spaces.

Each test named after a defect fails on the code before its fix.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# a non-editable install finds the shipped search spaces


@pytest.mark.slow
def test_wheel_install_finds_the_shipped_spaces(tmp_path: Path) -> None:
    """Defect: `pip install .` carried no space files, so an installed hebbnas found no search space."""
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = wheels.glob("hebbnas-*.whl")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    code = ("import hebbnas, hebbnas.space as s; from hebbnas.cli import build_parser; build_parser(); "
            "sp = s.load_space('googlenet'); print(hebbnas.__file__); print(sp.source)")
    env = {**os.environ, "PYTHONPATH": str(target)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=elsewhere, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    module, source = r.stdout.strip().splitlines()[-2:]
    assert module.startswith(str(target)) and source == str(target / "hebbnas" / "search_spaces" / "googlenet.yaml")




def test_every_subpackage_travels_in_the_wheel() -> None:
    """Defect: hebbnas/datasets/ and hebbnas/objectives/ were added without a line in pyproject.toml's package
    list, so a wheel (a non-editable install) would have shipped without them."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "hebbnas").rglob("__init__.py")}
    assert found - listed == set()

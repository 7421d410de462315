"""The `hebbnas show` contract and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hebbnas.cli import main
from hebbnas.topology import get_topology


@pytest.mark.parametrize(
    ("name", "params", "macs"),
    [("googlenet-tv", 6_624_904, 1_498_376_192), ("googlenet", 7_005_832, 1_582_671_872)],
)
def test_show_json(name: str, params: int, macs: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", name, "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["params"] == params and obj["macs"] == macs and obj["input"] == [3, 224, 224]
    assert isinstance(obj["params"], int) and isinstance(obj["macs"], int)


def test_show_table_and_other_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "googlenet", "--input", "3x32x32"]) == 0
    out = capsys.readouterr().out
    assert "inception4c" in out and f"{get_topology('googlenet').macs((3, 32, 32)):,}" in out


def test_show_topology_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "t.json"
    p.write_text(get_topology("googlenet").with_widths({"inception3a": (8, 8, 8, 8, 8, 8)}).to_json())
    assert main(["show", str(p), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["modules"]["inception3a"]["widths"] == [8] * 6


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["show", "resnet"], "unknown topology 'resnet'"),
        (["show", "googlenet", "--input", "3x8x8"], "input too small"),
        (["show", "googlenet", "--input", "banana"], "input shape must look like"),
        (["train", "googlenet", "--dataset", "mnist", "--data-dir", "/nonexistent/dir"], "/nonexistent/dir"),
    ],
)
def test_one_line_errors(argv: list[str], match: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err and "Traceback" not in err


def test_malformed_json_file(tmp_path: Path) -> None:
    p = tmp_path / "broken.json"
    p.write_text('{"name": "x", "modules": [')
    r = subprocess.run([sys.executable, "-m", "hebbnas.cli", "show", str(p)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "malformed topology JSON" in r.stderr and "Traceback" not in r.stderr

"""The command line: `hebbnas show`'s contract, help for every option, one spelling of --out, and one-line
errors for bad input."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hebbnas.cli import build_parser, main
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


# ---------------------------------------------------------------------------------------------
# the command line


def _actions(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    out = []
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                out += [(f"{name} {b.dest}", b) for b in sub._actions if not isinstance(b, argparse._HelpAction)]
    return out


def test_every_option_of_every_command_has_help() -> None:
    missing = [name for name, a in _actions(build_parser(full=True)) if not a.help]
    assert not missing, missing


def test_one_spelling_of_the_output_option() -> None:
    for cmd in ("train", "probe", "search", "export"):
        sub = next(a for a in build_parser(full=True)._actions if isinstance(a, argparse._SubParsersAction)).choices[cmd]
        opts = {s for a in sub._actions for s in a.option_strings if a.dest == "out"}
        assert {"--out", "-o", "--output"} <= opts, (cmd, opts)


def test_probe_and_search_expose_the_same_proxy_options() -> None:
    """One option per ProxySettings field, the same flag, destination and help in both commands."""
    from hebbnas.proxy import PROXY_DEFAULTS, flag

    subs = next(a for a in build_parser(full=True)._actions if isinstance(a, argparse._SubParsersAction)).choices
    proxy = {cmd: {a.dest: (tuple(a.option_strings), a.type, a.help) for a in subs[cmd]._actions
                   if a.dest in PROXY_DEFAULTS and a.help != argparse.SUPPRESS} for cmd in ("probe", "search")}
    assert set(proxy["probe"]) == set(proxy["search"]) == set(PROXY_DEFAULTS)
    assert proxy["probe"] == proxy["search"]
    assert all(opts == (flag(dest),) for dest, (opts, _, _) in proxy["search"].items())


@pytest.mark.parametrize(("argv", "match"), [
    (["probe", "--out", "x"], "the following arguments are required: --budget"),
    (["search", "--budget", "1e9", "--strategy", "nope"], "argument --strategy: invalid choice: 'nope'"),
    (["train", "googlenet", "--epochs", "many"], "argument --epochs: invalid int value: 'many'"),
    (["search", "--budget", "1e9", "--trial-epochs", "0"], "--trial-epochs must be an integer >= 1"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_mistakes_are_one_line_naming_the_flag(argv: list[str], match: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1 and err.startswith("hebbnas") and "usage:" not in err


def test_probe_out_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Defect: `hebbnas probe --budget 3e8 --out FILE` printed a NotADirectoryError traceback."""
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert main(["probe", "--budget", "3e8", "--out", str(f)]) == 2
    err = capsys.readouterr().err
    assert err == f"hebbnas probe: error: --out {f} is a file; give a folder to create\n"


def test_import_and_show_stay_light() -> None:
    code = ("import sys, hebbnas; from hebbnas.cli import main; main(['show', 'googlenet', '--json']); "
            "heavy = [m for m in ('torch', 'ray', 'pandas', 'optuna', 'matplotlib') if m in sys.modules]; "
            "print(heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"



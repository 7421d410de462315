"""The defects found when hebbnas was tried as a new user would (issue 24): each is now one line, early,
naming what the user typed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hebbnas.cli import main
from hebbnas.errors import HebbnasError
from hebbnas.pipeline import load_data
from hebbnas.proxy import resolve_proxy
from hebbnas.space import load_space
from tests.builders import make_folder


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_train_below_the_stem_minimum_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "googlenet", "--dataset", "digits", "--resolution", "8", "--epochs", "1"]) == 2
    assert "--resolution 8 is below the" in _one_line(capsys)


@pytest.mark.parametrize("cmd", [["train", "googlenet", "--dataset", "digits"],
                                 ["probe", "--budget", "1.5e9", "--out", "OUT"]])
def test_negative_threads_never_reach_torch(cmd: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(tmp_path / "o") if a == "OUT" else a for a in cmd] + ["--threads", "-1"]
    assert main(argv) == 2
    assert "--threads must be 0" in _one_line(capsys)


@pytest.mark.parametrize(("argv", "named"), [
    (["probe", "--budget", "1.5e9", "--out", "OUT", "--seed-epochs", "0"], "--seed-epochs must be an integer >= 1"),
    (["probe", "--budget", "1.5e9", "--out", "OUT", "--proxy-width", "2"], "--proxy-width must be a number in (0, 1]"),
    (["search", "--budget", "1.5e9", "--trial-epochs", "0"], "--trial-epochs must be an integer >= 1"),
    (["search", "--budget", "1.5e9", "--proxy-width", "2"], "--proxy-width must be a number in (0, 1]"),
    (["search", "--budget", "1.5e9", "--train-subset", "0"], "--train-subset must be an integer >= 1"),
])
def test_errors_name_the_flag_as_typed(argv: list[str], named: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "o") if a == "OUT" else a for a in argv]) == 2
    assert named in _one_line(capsys)


@pytest.mark.parametrize(("argv", "renamed", "named"), [
    (["probe", "--budget", "1.5e9", "--out", "OUT", "--epochs", "0"], "--epochs is now --seed-epochs",
     "--epochs must be an integer >= 1"),
    (["search", "--budget", "1.5e9", "--epochs", "0"], "--epochs is now --trial-epochs", "--epochs must be an integer >= 1"),
    (["search", "--budget", "1.5e9", "--width", "2"], "--width is now --proxy-width", "--width must be a number in (0, 1]"),
])
def test_old_flags_say_their_new_name_in_one_line(argv: list[str], renamed: str, named: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The hidden old spellings still work: one line names the new flag, and an error names what was typed."""
    from hebbnas.renames import _SAID

    _SAID.clear()  # said once per process: this test says it again
    assert main([str(tmp_path / "o") if a == "OUT" else a for a in argv]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0] == renamed and named in lines[1] and lines[1].startswith("hebbnas")


def test_values_from_a_space_are_named_by_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (Path(load_space("googlenet").source).read_text()
            .replace("probe_resolution: 64", "probe_resolution: 8").replace("grace_period: 2", "grace_period: 9"))
    space = tmp_path / "bad.yaml"
    space.write_text(text)
    assert main(["search", "--budget", "1.5e9", "--space", str(space)]) == 2
    err = _one_line(capsys)
    assert f"{space}: search.grace_period" in err or f"{space}: proxy.probe_resolution" in err
    assert "--probe-resolution" not in err and "--grace-period" not in err


@pytest.mark.parametrize("extra", [[], ["--latency"], ["--latency", "--json"]])
def test_show_an_input_too_small_is_one_line_naming_the_flag(extra: list[str], monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import hebbnas.latency

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network was built and run")

    monkeypatch.setattr(hebbnas.latency, "measure", never)  # refused before any measurement
    assert main(["show", "googlenet", *extra, "--input", "3x8x8"]) == 2
    assert "--input 3x8x8: input too small" in _one_line(capsys)


@pytest.mark.parametrize("cmd", [["train", "googlenet", "--dataset", "digits", "--epochs", "1"],
                                 ["probe", "--budget", "1.5e9", "--smoke"]])
def test_an_unwritable_out_is_refused_before_training(cmd: list[str], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main([*cmd, "--out", str(blocker / "sub")]) == 2
    out = capsys.readouterr()
    assert "cannot be written" in out.err and out.err.count("\n") == 1
    assert "training" not in out.out and "epoch" not in out.out  # refused before any work


def test_help_imports_no_command_dependencies() -> None:
    code = "import sys; from hebbnas.cli import main; main(['--help']); print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray', 'pandas', 'optuna'}))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "[]", r.stdout + r.stderr


def test_a_budget_below_the_floor_fails_before_the_data_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-data"  # loading it would fail first, with another message
    for cmd in (["search"], ["probe", "--out", str(tmp_path / "p")]):
        assert main([*cmd, "--budget", "1e5", "--dataset", "fashion-mnist", "--data-dir", str(missing)]) == 2
        assert "irreducible" in _one_line(capsys)


def test_smoke_uses_a_small_folder_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEBBNAS_CACHE", str(tmp_path / "cache"))
    root = make_folder(tmp_path / "imgs", per_class=40)  # 120 images, fewer than --smoke's 160
    space = load_space("googlenet")
    proxy = resolve_proxy(space, {"dataset": "folder", "data_dir": str(root)}, smoke=True)
    data, _ = load_data(proxy, space)
    assert 0 < len(data.train) <= 120 and len(data.val) > 0
    strict = resolve_proxy(space, {"dataset": "folder", "data_dir": str(root), "train_subset": 160})
    with pytest.raises(HebbnasError, match="exceeds"):  # an explicit subset stays exact
        load_data(strict, space)

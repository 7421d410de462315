"""The orchestration edge: run folder rules, CLI contract, Ray connection and security, installs.

Each test named after a defect fails on the code before its fix.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hebbnas.cli import build_parser, main
from hebbnas.errors import HebbnasError
from hebbnas.runfolder import RunFolder
from hebbnas.trials import TrialStatus, best_row, trial_row
from hebbnas.topology import get_topology

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# the run folder: one status vocabulary, one best-trial rule, storage that moves with the folder


def test_status_vocabulary_reads_tune_and_optuna_names() -> None:
    assert TrialStatus.parse("TERMINATED") is TrialStatus.COMPLETED
    assert TrialStatus.parse("COMPLETE") is TrialStatus.COMPLETED
    assert TrialStatus.parse("PRUNED") is TrialStatus.STOPPED and TrialStatus.parse("stopped").usable
    assert TrialStatus.parse("FAIL") is TrialStatus.ERROR and not TrialStatus.ERROR.usable
    assert TrialStatus.ERROR.finished and not TrialStatus.RUNNING.finished
    with pytest.raises(HebbnasError, match="unknown trial status"):
        TrialStatus.parse("exploded")


def test_best_row_ranks_by_last_epoch_accuracy() -> None:
    rows = [
        {"trial_id": "a", "status": "stopped", "val_acc": 0.6, "best_val_acc": 0.95, "epochs": 2, "macs": 1},
        {"trial_id": "b", "status": "completed", "val_acc": 0.8, "best_val_acc": 0.8, "epochs": 5, "macs": 1},
        {"trial_id": "c", "status": "error", "val_acc": 0.99, "best_val_acc": 0.99, "epochs": 5, "macs": 1},
        {"trial_id": "d", "status": "completed", "val_acc": 0.9, "best_val_acc": 0.9, "epochs": 5, "macs": 1},
    ]
    assert best_row(rows, has_checkpoint=lambda t: True)["trial_id"] == "d"
    assert best_row(rows, has_checkpoint=lambda t: t != "d")["trial_id"] == "b"
    assert best_row(rows[2:3], has_checkpoint=lambda t: True) is None


def test_trial_error_rows_are_final_errors() -> None:
    from hebbnas.trials import TRIAL_ERROR, finished_status

    result = {"val_acc": float("nan"), "epoch": 0, TRIAL_ERROR: "training diverged: loss is nan"}
    assert finished_status(result, error=False, max_epochs=3) is TrialStatus.ERROR
    row = trial_row("t1", {}, result, finished_status(result, False, 3), round_=1, strategy="paper")
    assert row["status"] == "error" and row["val_acc"] is None and "diverged" in row["error"]


def _folder(tmp_path: Path, name: str, storage: str, run_path: Path | None = None,
            state: bool = True) -> tuple[RunFolder, dict]:
    run = tmp_path / name
    (run / "tune").mkdir(parents=True, exist_ok=True)
    if state:
        (run / "tune" / "round-1").mkdir(exist_ok=True)
    cfg = {"settings": {}, "storage": storage}
    if run_path is not None:
        cfg["run_path"] = str(run_path)
    return RunFolder(run, settings=None), cfg


def test_moved_run_folder_is_refused_in_one_line_naming_where(tmp_path: Path) -> None:
    """Defect: a moved or copied run resumed against the old absolute storage path, silently started over
    and left stale rows. Ray Tune 2.60 sets restarted trials up under the old path, so a moved run with
    Tune state must go back where it ran; one without Tune state resumes where it is."""
    here = tmp_path / "new"
    folder, cfg = _folder(tmp_path, "new", "tune", run_path=here)
    assert folder.storage(cfg) == str(here / "tune")  # not moved
    old = tmp_path / "gone" / "new"
    folder, cfg = _folder(tmp_path, "new", "tune", run_path=old)
    with pytest.raises(HebbnasError, match=f"moved or copied from {old}.*move it back to {old}"):
        folder.storage(cfg)
    folder, cfg = _folder(tmp_path, "new", str(old / "tune"))  # an older config: absolute path into RUN/tune
    with pytest.raises(HebbnasError, match="move it back"):
        folder.storage(cfg)
    folder, cfg = _folder(tmp_path, "fresh", "tune", run_path=old, state=False)  # no Tune state yet
    assert folder.storage(cfg) == str(tmp_path / "fresh" / "tune")
    folder, cfg = _folder(tmp_path, "other", str(tmp_path / "shared" / "other-run"))
    with pytest.raises(HebbnasError, match="does not exist"):  # --storage that is gone
        folder.storage(cfg)
    assert folder.storage({"storage": "s3://bucket/x/other"}) == "s3://bucket/x/other"


def _outcome(t: Any, deploy: tuple[int, int, int]) -> tuple[Any, Any]:
    from hebbnas.model import build, inference_state_dict

    model = build(t, aux=False)
    topo = t.to_json(indent=None)
    best = {"trial_id": "t1", "round": 1, "val_acc": 0.5, "best_val_acc": 0.5, "epochs": 1,
            "macs": t.macs(deploy), "params": t.params(), "topology_hash": t.hash(), "topology": topo,
            "status": "completed"}
    ckpt = {"topology": t.to_dict(), "state_dict": inference_state_dict(model), "metrics": {}}
    rnd = SimpleNamespace(round=1, rows=(best,), best=best, best_checkpoint=ckpt, probe=None, probed=t,
                          experiment_path="/nonexistent", report_knobs={})
    outcome = SimpleNamespace(rounds=(rnd,), best=best, best_checkpoint=ckpt, test_acc=0.5, seconds=1.0)
    plan = SimpleNamespace(space=SimpleNamespace(deploy_input=deploy),
                           dataset=SimpleNamespace(name="digits", resolution=32, mean=[0.0] * 3, std=[1.0] * 3))
    return outcome, plan


def _settings() -> Any:
    return SimpleNamespace(strategy="paper", budget=3e8, max_epochs=1)


def test_report_failure_never_costs_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: an error while writing a round's report aborted the search before best/ was written."""
    from hebbnas import report
    from hebbnas.cli.search import finish

    t = get_topology("googlenet").with_widths({m.name: (8, 4, 8, 4, 8, 8) for m in get_topology("googlenet").modules})
    outcome, plan = _outcome(t.with_classes(10), (3, 224, 224))

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("matplotlib exploded\nsecond line")

    monkeypatch.setattr(report, "write_round_report", broken)
    lines: list[str] = []
    folder = RunFolder(tmp_path / "run", _settings(), warn=lines.append)
    (tmp_path / "run").mkdir()
    folder.round_finished(outcome.rounds[0])
    finish(folder, outcome, plan)
    assert folder.is_complete() and (tmp_path / "run" / "best" / "model.pt").is_file()
    warning = [ln for ln in lines if "report not written" in ln]
    assert warning == ["  warning: round-1 report not written: RuntimeError: matplotlib exploded"]


def test_round_report_counts_macs_at_the_space_deploy_shape(tmp_path: Path) -> None:
    """Defect: the report's MACs were computed at 3x224x224 whatever the space deployed at."""
    from hebbnas.report import write_round_report

    t = get_topology("googlenet").with_classes(10)
    outcome, _ = _outcome(t, (3, 160, 160))
    write_round_report(tmp_path / "r", outcome.rounds[0], _settings(), (3, 160, 160))
    text = (tmp_path / "r" / "report.md").read_text()
    assert "at 3x160x160" in text and f"{t.macs((3, 160, 160)):,}" in text
    assert f"{t.macs((3, 224, 224)):,}" not in text


def test_space_deploying_at_another_shape_fits_there(tmp_path: Path) -> None:
    import yaml

    from hebbnas.pipeline import seed_topology
    from hebbnas.search import resolve_settings
    from hebbnas.space import SPACES_DIR, load_space

    raw = yaml.safe_load((SPACES_DIR / "googlenet.yaml").read_text())
    raw["deploy_input"] = "3x160x160"
    p = tmp_path / "small.yaml"
    p.write_text(yaml.safe_dump(raw))
    space = load_space(p)
    s = resolve_settings(space, str(p), {"budget": 4e8})
    t = seed_topology(s.budget, space, 10)
    assert 0.99 * 4e8 < t.macs((3, 160, 160)) <= 4e8 and t.macs((3, 224, 224)) > 4e8


# ---------------------------------------------------------------------------------------------
# strategies: one interface, one registry


def test_strategies_register_in_one_place() -> None:
    from hebbnas.strategies import Strategy, get_strategy, names, register

    assert names()[:3] == ("hebbian", "random", "paper")
    assert get_strategy("hebbian").probes_seed and not get_strategy("paper").probes_seed

    @register
    class Widest(Strategy):
        name = "test-widest"

    try:
        assert "test-widest" in names() and get_strategy("test-widest").topology(get_topology("googlenet"), None, {})
    finally:
        from hebbnas import strategies

        strategies._REGISTRY.pop("test-widest")
    with pytest.raises(HebbnasError, match="unknown strategy 'x'"):
        get_strategy("x")


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


@pytest.mark.parametrize(("argv", "match"), [
    (["probe", "--out", "x"], "the following arguments are required: --budget"),
    (["search", "--budget", "1e9", "--strategy", "nope"], "argument --strategy: invalid choice: 'nope'"),
    (["train", "googlenet", "--epochs", "many"], "argument --epochs: invalid int value: 'many'"),
    (["search", "--budget", "1e9", "--epochs", "0"], "--epochs must be an integer >= 1"),
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


# ---------------------------------------------------------------------------------------------
# end to end: hebbnas probe (two rounds: tests/test_width_proxy.py)


@pytest.mark.slow
def test_probe_command_end_to_end_takes_the_space_proxy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Defect: `hebbnas probe` read `proxy.probe_scale` (a key spaces reject) and ignored the space's proxy."""
    import yaml

    from hebbnas.probe import load_probe
    from hebbnas.space import SPACES_DIR
    from hebbnas.topology import Topology

    raw = yaml.safe_load((SPACES_DIR / "googlenet.yaml").read_text())
    raw["proxy"].update(train_subset=200, resolution=36, probe_resolution=48, seed_epochs=1, probe_images=40)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(raw))
    out = tmp_path / "probe"
    assert main(["probe", "--budget", "3e8", "--space", str(space), "--out", str(out), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    info = json.loads((out / "probe.json").read_text())
    assert (info["resolution"], info["probe_resolution"], info["probe_images"], info["seed_epochs"]) == (36, 48, 40, 1)
    seed = Topology.from_json((out / "seed_topology.json").read_text())
    assert seed.num_classes == 10  # the data set's head, as the search's seed
    fitted = Topology.from_json((out / "topology.json").read_text())
    assert fitted.macs((3, 224, 224)) <= 3e8 and info["macs"] == fitted.macs((3, 224, 224))
    probe = load_probe(out / "probe.npz")
    assert set(probe.modules) == set(seed.module_names)
    assert (out / "report" / "report.md").is_file() and "cluster-to-branch" in printed

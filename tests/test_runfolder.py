"""The run folder: one status vocabulary, one best-trial rule, storage that moves with the folder, reports that never cost best/.

Each test named after a defect fails on the code before its fix.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

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
    return SimpleNamespace(strategy="paper", budget=3e8, trial_epochs=1, proxy=SimpleNamespace(proxy_width=1.0))


def test_report_failure_never_costs_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: an error while writing a round's report aborted the search before best/ was written."""
    from hebbnas import report
    from hebbnas.api import finish

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



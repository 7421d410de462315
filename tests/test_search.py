"""The search's pure parts and its command-line errors; no Ray cluster is started here.

The end-to-end Ray Tune runs (smoke search on a real head node, kill and resume, ASHA -> PRUNED in a
real run) are in test_search_cluster.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import optuna
import pytest

from hebbnas.cli import main
from hebbnas.errors import HebbnasError
from hebbnas.pipeline import seed_topology
from hebbnas.trials import finished_status, fmt_macs, format_budget, trial_row
from hebbnas.search import SMOKE, SearchSettings, resolve_settings
from hebbnas.search.searcher import Sampler, make_searcher, optuna_outcome
from hebbnas.search.trial import RoundSpec, trial_topology
from hebbnas.strategies import knobs
from hebbnas.space import load_space, parse_space
from hebbnas.topology import WIDTH_FIELDS, get_topology

BUDGET = 1.5e9
DEPLOY = (3, 224, 224)


@pytest.fixture(scope="module")
def space():  # noqa: ANN201 - fixture
    return load_space("googlenet")


# ---------------------------------------------------------------------------------------------
# settings


def test_settings_merge_defaults_space_smoke_and_options(space) -> None:  # noqa: ANN001
    s = resolve_settings(space, "googlenet", {"budget": "1.5e9"})
    assert s.budget == BUDGET and s.strategy == "reallocate"  # the default chosen by confirmed winners (finals.md)
    assert s.trials == space.search["trials"] and s.trial_epochs == space.search["trial_epochs"]
    assert s.proxy.resolution == space.proxy["resolution"] and not s.smoke
    smoke = resolve_settings(space, "googlenet", {"budget": 1e9, "trials": 4, "strategy": "random"}, smoke=True)
    assert smoke.trials == 4  # explicit beats smoke
    assert smoke.trial_epochs == SMOKE["trial_epochs"] and smoke.proxy.train_subset == SMOKE["train_subset"]
    assert SearchSettings.from_dict(smoke.to_dict()) == smoke  # config.yaml round trip (resume)


def test_trials_are_shared_by_rounds(space) -> None:  # noqa: ANN001
    s = resolve_settings(space, "googlenet", {"budget": BUDGET, "strategy": "hebbian", "trials": 7, "rounds": 3})
    assert [s.trials_in_round(k) for k in (1, 2, 3)] == [3, 2, 2]


@pytest.mark.parametrize("budget", ["abc", "0", "-1e9", "nan", "inf", None])
def test_budget_must_be_a_positive_number(space, budget) -> None:  # noqa: ANN001
    with pytest.raises(HebbnasError, match="budget must be a positive number"):
        resolve_settings(space, "googlenet", {"budget": budget})


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"strategy": "greedy"}, "unknown strategy 'greedy'"),
        ({"strategy": "random", "rounds": 2}, "needs --strategy hebbian"),
        ({"strategy": "tpe", "trials": 1, "rounds": 2}, "needs --strategy hebbian"),  # tpe has one round
        ({"strategy": "hebbian", "trials": 1, "rounds": 2}, "fewer than --rounds"),
        ({"trials": 0}, "--trials must be an integer >= 1"),
        ({"trial_epochs": 0}, "--trial-epochs must be an integer >= 1"),
        ({"cpus_per_trial": 0}, "cpus-per-trial must be a positive number"),
        ({"gpus_per_trial": -1}, "gpus-per-trial must be a non-negative number"),
    ],
)
def test_impossible_settings(space, options: dict, match: str) -> None:  # noqa: ANN001
    with pytest.raises(HebbnasError, match=match):
        resolve_settings(space, "googlenet", {"budget": BUDGET, **options})


def test_a_grace_period_longer_than_a_trial_names_where_it_came_from() -> None:
    with pytest.raises(HebbnasError, match=r"grace period 2 \(\S*fashion-mnist.yaml: search.grace_period\) exceeds "
                       r"--trial-epochs 1"):
        resolve_settings(load_space("fashion-mnist"), "fashion-mnist", {"budget": BUDGET, "trial_epochs": 1})


def test_space_sections_are_checked() -> None:
    raw = {"name": "x", "base": "googlenet", "search": {"trails": 3}}
    with pytest.raises(HebbnasError, match="unknown keys in search"):
        parse_space(raw)
    bad_train = parse_space({"name": "x", "base": "googlenet", "train": {"lrr": {"low": 0.1, "high": 0.2}}})
    with pytest.raises(HebbnasError, match="unknown or reserved training knobs"):
        resolve_settings(bad_train, "x", {"budget": BUDGET, "strategy": "paper"})
    no_scale = parse_space({"name": "x", "base": "googlenet"})
    with pytest.raises(HebbnasError, match="random.width_scale"):
        resolve_settings(no_scale, "x", {"budget": BUDGET, "strategy": "random"})


# ---------------------------------------------------------------------------------------------
# the define-by-run space and the trial's topology


@pytest.mark.parametrize("strategy", ["hebbian", "random", "paper"])
def test_sampler_only_samples_namespaced_knobs(space, strategy: str) -> None:  # noqa: ANN001
    sampler = Sampler.for_space(space, strategy)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    t0 = time.perf_counter()
    assert set(sampler(trial)) == {"drawn_by"}  # the only constant it hands Tune: how the trial was drawn
    assert time.perf_counter() - t0 < 0.5  # Ray warns at 1 s; sampling must stay cheap
    prefixes = {name.split(".")[0] for name in trial.params}
    expected = {"hebbian": {"derive"}, "random": {"width"}, "paper": set()}[strategy]  # no training knob: one recipe
    assert prefixes == expected
    if strategy == "random":
        n_widths = sum(1 for m in space.base.modules for f in WIDTH_FIELDS if getattr(m, f))
        assert len(knobs(trial.params, "width")) == n_widths
    assert set(knobs(trial.params, "train")) == set(space.train)


def _spec(space, strategy: str, budget: float = BUDGET) -> RoundSpec:  # noqa: ANN001
    settings = resolve_settings(space, "googlenet", {"budget": budget, "strategy": strategy})
    seed = seed_topology(settings.budget, space, 10)
    return RoundSpec(round=1, strategy=strategy, budget=budget, deploy_input=DEPLOY, width_multiple=8,
                     seed_topology=seed, train={}, trial_epochs=2, seed=0, threads=1, dataset="digits",
                     resolution=32, mean=(0.0,) * 3, std=(1.0,) * 3, num_classes=10)


def test_random_and_paper_trials_fit_the_budget(space) -> None:  # noqa: ANN001
    paper = trial_topology(_spec(space, "paper"), None, {"train.lr": 0.1}, name="p")
    assert paper.macs(DEPLOY) <= BUDGET and paper.num_classes == 10
    sampler = Sampler.for_space(space, "random")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    spec = _spec(space, "random")
    seen = set()
    for _ in range(4):
        trial = study.ask()
        sampler(trial)
        t = trial_topology(spec, None, trial.params, name="r")
        assert 0.97 * BUDGET <= t.macs(DEPLOY) <= BUDGET  # fitted: uses the budget, never exceeds it
        seen.add(t.hash())
    assert len(seen) == 4 and paper.hash() not in seen


def test_a_trial_restored_from_its_final_checkpoint_reports_its_last_epoch_again(space, tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch
                                                                                 ) -> None:  # noqa: ANN001
    """A kill can cut Tune's record of a trial short after its last checkpoint: restored from that checkpoint,
    the trial trains nothing and reports its last epoch again, so Tune sees it finished, not stopped early."""
    import shutil
    from dataclasses import replace

    from ray import tune

    from hebbnas.data import load_dataset
    from hebbnas.search.trial import run_trial

    spec = replace(_spec(space, "paper"), proxy_width=0.25)
    data = load_dataset("digits", resolution=32, train_subset=64)
    reports: list[dict] = []
    kept: list[Path] = []

    class Ctx:
        def get_trial_id(self) -> str:
            return "t1"

    def report(metrics: dict, checkpoint: tune.Checkpoint | None = None) -> None:
        reports.append(dict(metrics))
        if checkpoint is not None:  # what Tune persists
            kept.append(Path(shutil.copytree(checkpoint.path, tmp_path / f"checkpoint_{len(kept):06d}")))

    monkeypatch.setattr(tune, "get_context", lambda: Ctx())
    monkeypatch.setattr(tune, "report", report)
    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
    run_trial({"train.lr": 0.01}, spec=spec, dataset=data)
    assert [r["epoch"] for r in reports] == [1, 2] and len(kept) == 2
    last = reports[-1]
    reports.clear()
    monkeypatch.setattr(tune, "get_checkpoint", lambda: tune.Checkpoint.from_directory(str(kept[-1])))
    run_trial({"train.lr": 0.01}, spec=spec, dataset=data)
    assert reports == [last]  # nothing trained again, the last epoch reported whole
    reports.clear()
    monkeypatch.setattr(tune, "get_checkpoint", lambda: tune.Checkpoint.from_directory(str(kept[0])))
    run_trial({"train.lr": 0.01}, spec=spec, dataset=data)
    assert [r["epoch"] for r in reports] == [2] and reports[0]["resumed_from"] == 1  # the usual resume


def test_budget_below_the_floor_is_refused(space) -> None:  # noqa: ANN001
    settings = resolve_settings(space, "googlenet", {"budget": 1e5, "strategy": "paper"})
    with pytest.raises(HebbnasError, match="irreducible"):
        seed_topology(settings.budget, space, 10)


# ---------------------------------------------------------------------------------------------
# Optuna is told the truth about ASHA-stopped and errored trials


def _feed(searcher, tid: str, epochs: int, acc: float = 0.5) -> dict:  # noqa: ANN001
    searcher.suggest(tid)
    last = {}
    for e in range(1, epochs + 1):
        last = {"val_acc": acc * e, "epoch": e, "training_iteration": e}
        searcher.on_trial_result(tid, last)
    return last


def test_stopped_trials_reach_optuna_as_pruned(space, tmp_path: Path) -> None:  # noqa: ANN001
    from ray.tune.search.optuna import OptunaSearch

    searcher = make_searcher(Sampler.for_space(space, "paper"), max_epochs=3, seed=0, n_trials=4)
    searcher.on_trial_complete("stopped", _feed(searcher, "stopped", 1))  # ASHA stopped it after epoch 1
    searcher.on_trial_complete("full", _feed(searcher, "full", 3))
    searcher.on_trial_complete("broke", _feed(searcher, "broke", 2), error=True)
    searcher.suggest("silent")
    searcher.on_trial_complete("silent", None)  # stopped before reporting anything
    states = searcher.trial_states()
    assert states == {"stopped": "PRUNED", "full": "COMPLETE", "broke": "FAIL", "silent": "PRUNED"}
    pruned = next(t for t in searcher._ot_study.trials if t.state.name == "PRUNED" and t.intermediate_values)
    assert pruned.value == 0.5  # Optuna keeps the last intermediate value of a pruned trial
    # the saved searcher state (what Tuner.restore reloads) keeps them
    searcher.save(str(tmp_path / "s.pkl"))
    again = make_searcher(Sampler.for_space(space, "paper"), max_epochs=3, seed=0, n_trials=4)
    again.restore(str(tmp_path / "s.pkl"))
    assert again.trial_states() == states
    # what the override fixes: Ray's own OptunaSearch calls the stopped trial COMPLETE
    plain = OptunaSearch(space=Sampler.for_space(space, "paper"), metric="val_acc", mode="max", seed=0)
    plain.on_trial_complete("stopped", _feed(plain, "stopped", 1))
    assert plain._ot_study.trials[0].state.name == "COMPLETE"


def test_outcome_and_status_rules() -> None:
    assert optuna_outcome({"val_acc": 0.9, "epoch": 5}, False, 5) == "COMPLETE"
    assert optuna_outcome({"val_acc": 0.9, "epoch": 2}, False, 5) == "PRUNED"
    assert optuna_outcome({"val_acc": 0.9, "epoch": 5}, True, 5) == "FAIL"
    assert finished_status({"epoch": 5}, False, 5) == "completed"
    assert finished_status({"epoch": 2}, False, 5) == "stopped"
    assert finished_status({}, True, 5) == "error"


def test_trial_row_has_knobs_widths_and_costs() -> None:
    t = get_topology("googlenet").with_classes(10)
    result = {"val_acc": 0.9, "best_val_acc": 0.95, "epoch": 3, "macs": t.macs(), "params": t.params(),
              "topology": t.to_json(indent=None), "topology_hash": t.hash(), "timestamp": 1000, "time_total_s": 12.5}
    row = trial_row("abc", {"train.lr": 0.1, "derive.threshold": 0.5}, result, "completed", round_=2, strategy="hebbian")
    assert row["started"] == 987.5 and trial_row("x", {}, {}, "error", round_=1, strategy="paper")["started"] is None
    assert row["trial_id"] == "abc" and row["round"] == 2 and row["epochs"] == 3 and row["status"] == "completed"
    assert row["inception4c.b2"] == 256 and row["inception5b.b3_red"] == 48 and row["train.lr"] == 0.1
    assert row["macs"] == t.macs() and json.loads(row["topology"])["num_classes"] == 10


def test_formatting() -> None:
    assert format_budget(1.5e9) == "1.5e9" and format_budget(3e8) == "3e8"
    assert fmt_macs(1_499_997_728) == "1.500e9" and fmt_macs(None) == "-"


# ---------------------------------------------------------------------------------------------
# command-line errors: one line, exit 2, no traceback, no folder created or overwritten


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(["search", *argv])
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--budget", "lots"], "budget must be a positive number"),
        (["--budget", "-5"], "budget must be a positive number"),
        (["--budget", "1e5", "--strategy", "paper"], "irreducible cost"),
        (["--budget", "1.5e9", "--strategy", "greedy"], "argument --strategy: invalid choice: 'greedy'"),
        (["--budget", "1.5e9", "--space", "nope"], "unknown search space 'nope'"),
        (["--budget", "1.5e9", "--storage", "relative/dir"], "--storage must be an absolute path"),
        ([], "--budget is required"),
    ],
)
def test_bad_input_is_one_line(argv: list[str], match: str, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    rc, err = _run_cli([*argv, "--out", str(out)], capsys)
    assert rc == 2 and match in err and "\n" not in err and "Traceback" not in err
    assert err.startswith("hebbnas search: error: ")
    assert not out.exists()


def test_existing_run_folder_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc, err = _run_cli(["--budget", "1.5e9", "--out", str(out)], capsys)
    assert rc == 2 and "already exists" in err and "\n" not in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


def test_resume_needs_a_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _run_cli(["--resume", str(tmp_path)], capsys)
    assert rc == 2 and "is not a hebbnas run folder" in err and "\n" not in err
    rc, err = _run_cli(["--resume", str(tmp_path / "missing")], capsys)
    assert rc == 2 and "is not a hebbnas run folder" in err
    rc, err = _run_cli(["--resume", str(tmp_path), "--budget", "1e9"], capsys)
    assert rc == 2 and "drop --budget" in err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# resume: a state upload cut off by SIGKILL


def _saved_state(root: Path, trial_id: str, checkpoint: str) -> None:
    """An experiment state (Ray Tune's own format) whose one trial's latest checkpoint is `checkpoint`."""
    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult
    from ray.train._internal.storage import StorageContext
    from ray.tune.execution.placement_groups import PlacementGroupFactory
    from ray.tune.experiment import Trial

    sc = StorageContext(storage_path=str(root.parent), experiment_dir_name=root.name, trial_dir_name=trial_id)
    trial = Trial("run_trial", stub=True, storage=sc, trial_id=trial_id)
    trial.placement_group_factory = PlacementGroupFactory([{"CPU": 1}])  # what a scheduled trial has
    trial.on_checkpoint(_TrainingResult(checkpoint=Checkpoint(str(root / trial_id / checkpoint)), metrics={}))
    (root / "experiment_state-2026-01-01_10-00-00.json").write_text(json.dumps({"trial_data": [trial.get_json_state()]}))


def _write_checkpoint(d: Path, epoch: int, whole: bool = True) -> None:
    import torch

    from hebbnas.trials import CHECKPOINT_FILE, TRAIN_STATE_FILE

    d.mkdir(parents=True)
    torch.save({"epoch": epoch}, d / CHECKPOINT_FILE)
    torch.save({"train": {"epoch": epoch}}, d / TRAIN_STATE_FILE)
    if not whole:  # a copy cut off by the kill
        data = (d / TRAIN_STATE_FILE).read_bytes()
        (d / TRAIN_STATE_FILE).write_bytes(data[: len(data) // 2])


def test_a_checkpoint_deleted_before_the_state_named_its_successor_is_recovered(tmp_path: Path) -> None:
    """Tune deletes epoch 1's checkpoint when epoch 2's registers, before it saves the state naming epoch 2's;
    a kill in between leaves a state naming a deleted checkpoint. The newest whole one takes its name."""
    import torch

    from hebbnas.search.state import recover_deleted_checkpoints
    from hebbnas.trials import TRAIN_STATE_FILE

    root = tmp_path / "round-1"
    _saved_state(root, "t1", "checkpoint_000000")
    _write_checkpoint(root / "t1" / "checkpoint_000001", epoch=2)
    _write_checkpoint(root / "t1" / "checkpoint_000002", epoch=3, whole=False)  # cut off: never used
    assert recover_deleted_checkpoints(str(root)) == [str(root / "t1" / "checkpoint_000000")]
    assert sorted(p.name for p in (root / "t1").iterdir()) == ["checkpoint_000000", "checkpoint_000002"]
    saved = torch.load(root / "t1" / "checkpoint_000000" / TRAIN_STATE_FILE, weights_only=True)
    assert saved["train"]["epoch"] == 2  # the trial continues from the later epoch
    assert recover_deleted_checkpoints(str(root)) == []  # the named checkpoint exists: nothing to do


def test_a_deleted_checkpoint_without_a_whole_successor_is_left_alone(tmp_path: Path) -> None:
    from hebbnas.search.state import recover_deleted_checkpoints

    root = tmp_path / "round-1"
    _saved_state(root, "t1", "checkpoint_000003")
    _write_checkpoint(root / "t1" / "checkpoint_000002", epoch=3)  # older than the named one
    _write_checkpoint(root / "t1" / "checkpoint_000004", epoch=5, whole=False)
    assert recover_deleted_checkpoints(str(root)) == []
    assert sorted(p.name for p in (root / "t1").iterdir()) == ["checkpoint_000002", "checkpoint_000004"]


def test_cut_off_experiment_state_falls_back_or_refuses(tmp_path: Path) -> None:
    from hebbnas.search.state import drop_cut_off_state as _drop_cut_off_state

    def session(name: str, ok: bool) -> None:
        (tmp_path / f"experiment_state-{name}.json").write_text('{"trial_data": []}' if ok else "")
        (tmp_path / f"search_gen_state-{name}.json").write_bytes(b"\x80pickle" if ok else b"")
        (tmp_path / f"searcher-state-{name}.pkl").write_bytes(b"\x80pickle" if ok else b"")

    session("2026-01-01_10-00-00", ok=True)
    _drop_cut_off_state(str(tmp_path))  # a complete newest session is left alone
    assert len(list(tmp_path.glob("experiment_state-*"))) == 1
    session("2026-01-01_11-00-00", ok=False)  # killed while Ray copied its state
    _drop_cut_off_state(str(tmp_path))
    assert sorted(p.name for p in tmp_path.glob("experiment_state-*")) == ["experiment_state-2026-01-01_10-00-00.json"]
    assert (tmp_path / ".cut-off-experiment_state-2026-01-01_11-00-00.json").exists()
    for p in tmp_path.glob("*2026-01-01_10-00-00*"):
        p.write_bytes(b"")
    with pytest.raises(HebbnasError, match="cut off when the search was killed"):
        _drop_cut_off_state(str(tmp_path))

"""The search's Optuna study in a journal file inside the run folder: what optuna-dashboard reads live."""

from __future__ import annotations

import logging

import shutil
from pathlib import Path

import optuna
import pytest

from hebbnas.errors import HebbnasError
from hebbnas.layout import OPTUNA_JOURNAL
from hebbnas.search.searcher import ORPHAN_ATTR, Sampler, journal_at, journal_storage, make_searcher
from hebbnas.space import load_space


@pytest.fixture(scope="module")
def sampler() -> Sampler:
    return Sampler.for_space(load_space("googlenet"), "paper")


def _feed(searcher, tid: str, epochs: int, acc: float = 0.5) -> dict:  # noqa: ANN001
    searcher.suggest(tid)
    last: dict = {}
    for e in range(1, epochs + 1):
        last = {"val_acc": acc * e / epochs, "epoch": e, "training_iteration": e}
        searcher.on_trial_result(tid, last)
    return last


def _studies(path: Path) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """What a separate reader (optuna-dashboard) sees in the journal file."""
    storage = journal_storage(path)
    return {s.study_name: optuna.load_study(study_name=s.study_name, storage=storage).trials
            for s in optuna.get_all_study_summaries(storage)}


def test_trials_reach_the_journal_as_they_run(sampler: Sampler, tmp_path: Path) -> None:
    journal = tmp_path / OPTUNA_JOURNAL
    s = make_searcher(sampler, max_epochs=3, seed=0, n_trials=4, journal=str(journal), study_name="round-1")
    s.suggest("a")
    s.on_trial_result("a", {"val_acc": 0.3, "epoch": 1, "training_iteration": 1})
    seen = _studies(journal)  # while trial a still runs
    assert list(seen) == ["round-1"]
    assert seen["round-1"][0].state.name == "RUNNING" and seen["round-1"][0].intermediate_values == {1: 0.3}
    assert all(k.startswith("train.") for k in seen["round-1"][0].params)
    s.on_trial_complete("a", {"val_acc": 0.4, "epoch": 1, "training_iteration": 1})  # ASHA stopped it
    s.on_trial_complete("b", _feed(s, "b", 3))
    trials = _studies(journal)["round-1"]
    assert [t.state.name for t in trials] == ["PRUNED", "COMPLETE"]
    # the next round is a second study in the same file
    s2 = make_searcher(sampler, max_epochs=3, seed=1, n_trials=4, journal=str(journal), study_name="round-2")
    s2.on_trial_complete("c", _feed(s2, "c", 3))
    seen = _studies(journal)
    assert sorted(seen) == ["round-1", "round-2"] and len(seen["round-1"]) == 2 and len(seen["round-2"]) == 1


def test_restore_keeps_one_study_even_after_a_move(sampler: Sampler, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    journal = run / OPTUNA_JOURNAL
    s = make_searcher(sampler, max_epochs=3, seed=0, n_trials=6, journal=str(journal), study_name="round-1")
    s.on_trial_complete("done", _feed(s, "done", 3))
    s.suggest("running")
    s.on_trial_result("running", {"val_acc": 0.2, "epoch": 1, "training_iteration": 1})
    s.save(str(tmp_path / "searcher-state.pkl"))  # Tune's last saved state
    # after the save and before the kill: "running" finishes, "lost" is asked (Tune will ask again)
    s.on_trial_complete("running", {"val_acc": 0.6, "epoch": 3, "training_iteration": 3})
    s.suggest("lost")
    moved = tmp_path / "moved"
    shutil.move(str(run), str(moved))
    again = make_searcher(sampler, max_epochs=3, seed=0, n_trials=6)  # what Tuner.restore unpickles
    with journal_at(moved / OPTUNA_JOURNAL):
        again.restore(str(tmp_path / "searcher-state.pkl"))
    assert not journal.exists()  # nothing written where the run used to be
    # Tune resumes "running" from its checkpoint: its reports and completion must not break the search
    again.on_trial_result("running", {"val_acc": 0.5, "epoch": 2, "training_iteration": 2})
    with caplog.at_level(logging.WARNING):
        again.on_trial_complete("running", {"val_acc": 0.6, "epoch": 3, "training_iteration": 3})
    assert not caplog.records  # Optuna already holds its outcome: nothing told twice, nothing to warn about
    again.on_trial_complete("new", _feed(again, "new", 3, acc=0.7))
    seen = _studies(moved / OPTUNA_JOURNAL)
    assert list(seen) == ["round-1"]  # the same study, not a second one
    states = [t.state.name for t in seen["round-1"]]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]  # "lost" was orphaned: FAIL, not RUNNING forever
    assert [ORPHAN_ATTR in t.user_attrs for t in seen["round-1"]] == [False, False, True, False]  # and says so
    assert again.trial_states() == {"done": "COMPLETE", "running": "COMPLETE", "new": "COMPLETE"}


def test_in_memory_searcher_still_restores(sampler: Sampler, tmp_path: Path) -> None:
    s = make_searcher(sampler, max_epochs=2, seed=0, n_trials=2)
    s.on_trial_complete("x", _feed(s, "x", 2))
    s.save(str(tmp_path / "s.pkl"))
    again = make_searcher(sampler, max_epochs=2, seed=0, n_trials=2)
    with journal_at(tmp_path / "ignored.journal"):  # a run from before the journal existed
        again.restore(str(tmp_path / "s.pkl"))
    assert again.trial_states() == {"x": "COMPLETE"} and not (tmp_path / "ignored.journal").exists()


def test_a_journal_that_is_a_directory_is_refused(sampler: Sampler, tmp_path: Path) -> None:
    (tmp_path / OPTUNA_JOURNAL).mkdir()
    with pytest.raises(HebbnasError, match="cannot open the Optuna journal"):
        make_searcher(sampler, max_epochs=2, seed=0, n_trials=2, journal=str(tmp_path / OPTUNA_JOURNAL))


def test_restore_after_cloudpickle_sees_the_override(sampler: Sampler, tmp_path: Path) -> None:
    """Tune pickles the searcher class by value (tuner.pkl): the override must still reach it."""
    import ray.cloudpickle as cloudpickle

    run = tmp_path / "run"
    s = make_searcher(sampler, max_epochs=2, seed=0, n_trials=4, journal=str(run / OPTUNA_JOURNAL), study_name="round-1")
    s.on_trial_complete("a", _feed(s, "a", 2))
    s.save(str(tmp_path / "state.pkl"))
    blob = cloudpickle.dumps(s)
    shutil.move(str(run), str(tmp_path / "moved"))
    again = cloudpickle.loads(blob)
    with journal_at(tmp_path / "moved" / OPTUNA_JOURNAL):
        again.restore(str(tmp_path / "state.pkl"))
    assert not run.exists()
    assert again.trial_states() == {"a": "COMPLETE"}


def test_a_deleted_journal_never_breaks_the_resume(sampler: Sampler, tmp_path: Path) -> None:
    journal = tmp_path / OPTUNA_JOURNAL
    s = make_searcher(sampler, max_epochs=2, seed=0, n_trials=4, journal=str(journal), study_name="round-1")
    s.suggest("running")
    s.save(str(tmp_path / "state.pkl"))
    journal.unlink()
    again = make_searcher(sampler, max_epochs=2, seed=0, n_trials=4)
    with journal_at(journal):
        again.restore(str(tmp_path / "state.pkl"))  # no exception: Tune would restart the round on one
    again.on_trial_result("running", {"val_acc": 0.5, "epoch": 1, "training_iteration": 1})
    again.on_trial_complete("running", {"val_acc": 0.5, "epoch": 2, "training_iteration": 2})
    again.on_trial_complete("next", _feed(again, "next", 2))
    assert [t.state.name for t in _studies(journal)["round-1"]] == ["COMPLETE"]

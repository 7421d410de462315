"""The Optuna side of the search: a define-by-run space that only samples, and a searcher that tells
Optuna the truth (ASHA-stopped trials PRUNED, errored ones FAIL; Ray's OptunaSearch says COMPLETE).

Parameter names are namespaced (`hebbnas.trials.knob_prefixes`): the strategy's own knobs under the
`knob_prefix` it declares, ``derive.<knob>`` (hebbian), ``width.<module>.<field>`` (random, tpe),
``move.<knob>`` (reallocate) or ``slim.<knob>`` (slim), see `hebbnas.strategies`; and ``train.<knob>``
(every strategy's).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hebbnas.errors import HebbnasError
from hebbnas.trials import EPOCH_ATTR, METRIC, REJECTED, TRIAL_ERROR

DRAWN_BY_KEY = "drawn_by"
"""The config key (and trials.csv column) that says how a trial was drawn (`hebbnas.trials.DRAWN_BY`)."""

if TYPE_CHECKING:
    from hebbnas.space import Distribution, Space

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sampler:
    """The define-by-run space handed to `OptunaSearch`: `(optuna_trial) -> None`, sampling only.

    Ray warns when it takes over a second, so it holds plain values and never derives or fits.
    """

    strategy: str
    params: tuple[tuple[str, Distribution], ...] = ()
    startup: int | None = 0  # the sampler's start-up count (TPE); None: a random sampler

    @classmethod
    def for_space(cls, space: Space, strategy: str, startup: int | None = 0) -> Sampler:
        from hebbnas.strategies import get_strategy

        own = get_strategy(strategy).distributions(space)
        train = {f"train.{n}": d for n, d in space.train.items()}
        return cls(strategy=strategy, params=tuple({**own, **train}.items()), startup=startup)

    def __call__(self, trial: Any) -> dict[str, str]:
        drawn = self.drawn_by(trial)  # before sampling: what the sampler sees now decides how it draws
        for name, dist in self.params:
            dist.suggest(trial, name)
        return {DRAWN_BY_KEY: drawn}

    def drawn_by(self, trial: Any) -> str:
        """enqueued (the strategy's fixed point), start-up (TPE's random draws before its model has
        `startup` finished trials), model (TPE's model) or random (a random sampler); '' when unknown."""
        import optuna

        ot = getattr(trial, "ot_trial", trial)  # Ray wraps Optuna's trial to capture the suggestions
        try:
            if "fixed_params" in ot.study._storage.get_trial(ot._trial_id).system_attrs:
                return "enqueued"
            if self.startup is None:
                return "random"
            done = ot.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                               optuna.trial.TrialState.PRUNED))
            return "model" if len(done) >= self.startup else "start-up"
        except Exception:  # noqa: BLE001 - informative only
            return ""


def optuna_outcome(result: Mapping[str, Any] | None, error: bool, max_epochs: int) -> str:
    """COMPLETE, PRUNED or FAIL for a finished trial, from its last result.

    A trial that reported fewer than `max_epochs` epochs and did not error was stopped early by ASHA; one
    over the latency budget never trained (REJECTED: told COMPLETE with its constraint violated).
    """
    if (result or {}).get(REJECTED):
        return "REJECTED"
    if error or (result or {}).get(TRIAL_ERROR):
        return "FAIL"
    if not result or result.get(METRIC) is None:
        return "PRUNED"
    epochs = result.get(EPOCH_ATTR, result.get("training_iteration", 0))
    return "PRUNED" if int(epochs or 0) < max_epochs else "COMPLETE"


def _optuna_search_class() -> type:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # the strategy's enqueued networks are exact (tpe's derivations), so their multipliers may lie outside
    # the sampled range on purpose; Optuna uses them and says so once per value
    warnings.filterwarnings("ignore", message="Fixed parameter .* is out of range")

    class PrunedOptunaSearch(OptunaSearch):
        """OptunaSearch that tells Optuna the truth about early-stopped and errored trials.

        Ray's OptunaSearch tells every trial with a last value COMPLETE, so an ASHA-stopped trial's early
        (low) accuracy reads to TPE as a finished one, and an errored trial with results as a success.
        Here they become PRUNED (Optuna then uses the last intermediate value) and FAIL.
        """

        def __init__(self, *args: Any, max_epochs: int, journal: str | None = None,
                     budgets: Mapping[str, float] | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._max_epochs = int(max_epochs)
            self._budgets = dict(budgets or {})
            self._journal = journal
            self.outcomes: dict[str, str] = {}
            if journal is not None:
                _fail_orphans(self._ot_study, set())  # a fresh round over an existing study: an attempt
                # killed before Tune saved any state left RUNNING trials that nothing will finish

        def restore(self, checkpoint_path: str) -> None:
            """Tune's restore; with a journal, the study is the journal file's (where the run now is), and
            trials asked after Tune's last saved state, which Tune will ask again, are marked FAIL.

            Never raises: Tune would swallow the error and start the round over on a half-restored state.
            """
            super().restore(checkpoint_path)
            if getattr(self, "_journal", None) is None or self._ot_study is None:
                return
            import importlib

            import optuna

            # the live module's override: Tune pickles this class by value (it is defined in a function),
            # so a plain global here would be a stale copy
            override = importlib.import_module("hebbnas.search.searcher")._JOURNAL_OVERRIDE
            path = override[-1] if override else self._journal
            try:
                if not Path(path).is_file():
                    raise FileNotFoundError(f"no journal at {path}")
                storage = journal_storage(path)
                study = optuna.load_study(study_name=self._study_name, storage=storage, sampler=self._sampler,
                                          pruner=optuna.pruners.NopPruner())
                trials = {tid: optuna.trial.Trial(study, t._trial_id) for tid, t in self._ot_trials.items()}
                _fail_orphans(study, {t._trial_id for t in trials.values()})
            except Exception as e:  # noqa: BLE001 - a deleted or damaged journal: continue in a fresh study
                fresh = str(path) if override else None
                _log.warning("optuna journal %s not restored (%s); the round continues in a new study%s", path, e,
                             f" in {fresh}" if fresh else " in memory")
                storage = journal_storage(fresh) if fresh else None
                study = optuna.create_study(study_name=self._study_name, storage=storage, sampler=self._sampler,
                                            pruner=optuna.pruners.NopPruner(), direction="maximize",
                                            load_if_exists=True)
                self._completed_trials |= set(self._ot_trials)  # their results have nowhere to go
                trials, path = {}, fresh
            self._journal, self._storage, self._ot_study, self._ot_trials = path, storage, study, trials

        def _told(self, trial_id: str) -> bool:
            """Optuna already holds this trial's outcome: a killed driver told it after Tune's last saved
            state, and the restored round runs the trial's last epoch again."""
            t = self._ot_trials.get(trial_id)
            if t is None or trial_id in self._completed_trials:
                return False
            try:
                return self._ot_study._storage.get_trial(t._trial_id).state.is_finished()
            except Exception:  # noqa: BLE001 - unknown: let the normal path decide
                return False

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            if self._told(trial_id):
                return
            try:
                super().on_trial_result(trial_id, result)
            except Exception as e:  # noqa: BLE001 - e.g. a journal trial finished before a kill; never stop
                _log.warning("optuna report failed for %s: %s", trial_id, e)

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if self._told(trial_id):
                self._completed_trials.add(trial_id)
                return
            if trial_id in self._completed_trials or trial_id not in self._ot_trials:
                super().on_trial_complete(trial_id, result, error)
                return
            outcome = optuna_outcome(result, error, self._max_epochs)
            self.outcomes[trial_id] = outcome
            from hebbnas.objectives import get_objective

            for name, budget in getattr(self, "_budgets", {}).items():  # TPE learns where each boundary runs
                objective = get_objective(name)
                value = objective.constraint(result or {}, budget)  # feasible when <= 0
                if value is not None:
                    self._ot_trials[trial_id].set_constraint(objective.key, value)
            if outcome == "REJECTED":  # never trained: a finished trial whose constraint is violated
                values = [0.0 if m == METRIC else float(result.get(m) or 0.0) for m in
                          (self.metric if isinstance(self.metric, list) else [self.metric])]
                self._ot_study.tell(self._ot_trials[trial_id], values if len(values) > 1 else values[0])
                self._completed_trials.add(trial_id)
                return
            if outcome == "COMPLETE":
                super().on_trial_complete(trial_id, result, error)
                return
            import optuna

            state = optuna.trial.TrialState.PRUNED if outcome == "PRUNED" else optuna.trial.TrialState.FAIL
            try:
                self._ot_study.tell(self._ot_trials[trial_id], None, state=state)
            except Exception as e:  # noqa: BLE001 - Optuna refuses e.g. a second tell; never kill the search
                _log.warning("optuna tell failed for %s: %s", trial_id, e)
            self._completed_trials.add(trial_id)

        def trial_states(self) -> dict[str, str]:
            """Tune trial id -> Optuna state name (COMPLETE, PRUNED, FAIL, RUNNING, ...)."""
            by_number = {t.number: t.state.name for t in self._ot_study.get_trials(deepcopy=False)}
            return {tid: by_number.get(t.number, "?") for tid, t in self._ot_trials.items()}

    return PrunedOptunaSearch


def make_searcher(sampler: Sampler, *, max_epochs: int, seed: int, n_trials: int,
                  journal: str | None = None, study_name: str | None = None,
                  points: list[dict[str, Any]] | None = None, objectives: Sequence[tuple[str, str]] = (),
                  budgets: Mapping[str, float] | None = None, optuna_sampler: Any = None) -> Any:
    """A PrunedOptunaSearch over `sampler` with `optuna_sampler` (the strategy's; default TPE, seeded, random
    start for about half of the trials).

    With `journal` (a file path) the study lives in an Optuna JournalStorage file, named `study_name`
    (loaded if it exists), so `optuna-dashboard FILE` shows it live; else in memory. `points` are
    (partial) configurations Optuna runs first (`enqueue_trial`); the rest of each is sampled. More than
    one of `objectives` ((result key, "max"/"min"), accuracy first) makes a multi-objective study (TPE
    handles several objectives); `budgets` ({objective: budget}, e.g. latency) tell Optuna each trial's
    constraints.
    """
    import optuna

    tpe = optuna_sampler or optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, n_trials // 2)))
    cls = _optuna_search_class()
    extra: dict[str, Any] = {}
    if journal is not None:
        extra = {"storage": journal_storage(journal), "study_name": study_name or "hebbnas", "journal": str(journal)}
    if points:
        extra["points_to_evaluate"] = points
    metric: Any = METRIC
    mode: Any = "max"
    if len(objectives) > 1:
        metric, mode = [m for m, _ in objectives], [d for _, d in objectives]
    return cls(space=sampler, metric=metric, mode=mode, sampler=tpe, max_epochs=max_epochs,
               budgets=budgets, **extra)


def journal_storage(path: str | Path) -> Any:
    """An Optuna JournalStorage on one file (created if missing), what `optuna-dashboard FILE` reads."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = str(path)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    except OSError as e:
        raise HebbnasError(f"cannot open the Optuna journal {path}: {e.strerror or e}") from None


_JOURNAL_OVERRIDE: list[str] = []


@contextlib.contextmanager
def journal_at(path: str | Path | None) -> Iterator[None]:
    """While Tune restores a searcher, its journal is `path` (the run folder may have moved since)."""
    if path is None:
        yield
        return
    _JOURNAL_OVERRIDE.append(str(path))
    try:
        yield
    finally:
        _JOURNAL_OVERRIDE.pop()


ORPHAN_ATTR = "hebbnas_orphan"
"""User attribute of an Optuna trial that was asked but never trained: a kill came between Optuna's ask
and Tune's next saved state, so the resumed round asks again. Told FAIL, so TPE skips it."""


def _fail_orphans(study: Any, known: set[int]) -> None:
    """Mark RUNNING trials of `study` that no Tune trial owns (ids not in `known`) as FAIL, and say why."""
    import optuna

    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t._trial_id not in known:
            try:
                study._storage.set_trial_user_attr(t._trial_id, ORPHAN_ATTR,
                                                   "asked before the search was killed; never trained")
                study.tell(t.number, None, state=optuna.trial.TrialState.FAIL)
            except Exception as e:  # noqa: BLE001
                _log.warning("optuna: cannot close orphaned trial %s: %s", t.number, e)


def read_optuna_states(experiment_path: str) -> dict[str, str]:
    """Trial id -> Optuna state, from the searcher state Tune saved with the experiment (any storage)."""
    import pyarrow.fs

    try:
        fs, root = pyarrow.fs.FileSystem.from_uri(experiment_path) if "://" in experiment_path else (
            pyarrow.fs.LocalFileSystem(), experiment_path)
        infos = fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=False))
    except Exception:  # noqa: BLE001 - the column is informative; a missing state is '?'
        return {}
    states = sorted(i.path for i in infos if Path(i.path).name.startswith("searcher-state-"))
    if not states:
        return {}
    cls = _optuna_search_class()
    searcher = cls(space=Sampler("paper"), metric=METRIC, mode="max", max_epochs=1)
    with tempfile.TemporaryDirectory() as d:
        local = Path(d) / Path(states[-1]).name
        with fs.open_input_stream(states[-1]) as src, open(local, "wb") as dst:
            dst.write(src.read())
        try:
            searcher.restore(str(local))
        except Exception:  # noqa: BLE001
            return {}
    return searcher.trial_states()



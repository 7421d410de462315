"""How a search's products and progress leave the core: the `SearchSink` protocol and the Tune callback
that feeds it.

The callback is pickled into Tune's experiment state, so it holds no sink itself: it finds the sink of
the running search in `_SESSIONS` (set by `active_sink`), which also works for a callback that
`Tuner.restore` unpickled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from hebbnas.errors import error_line
from hebbnas.trials import TRIAL_ERROR, finished_status, trial_row

if TYPE_CHECKING:
    from hebbnas.probe import ProbeResult
    from hebbnas.search.outcome import FinalOutcome, FinalSpec, RoundOutcome
    from hebbnas.topology import Topology


class SearchSink(Protocol):
    """Receives everything a search produces; the CLI's `Console` prints it and its run folder writes it."""

    def message(self, text: str) -> None: ...
    def round_started(self, k: int, rounds: int, n_trials: int, seed: Topology, resumed: bool) -> None: ...
    def load_probe(self, k: int) -> ProbeResult | None: ...
    def probe_ready(self, k: int, probe: ProbeResult, seed: Topology, info: Mapping[str, Any]) -> None: ...
    def trial_result(self, k: int, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> None: ...
    def trial_finished(self, k: int, row: Mapping[str, Any]) -> None: ...
    def trial_checkpoint(self, trial_id: str, checkpoint: Any) -> None: ...
    def round_finished(self, outcome: RoundOutcome) -> None: ...
    def final_started(self, spec: FinalSpec, resumed: bool) -> None: ...
    def final_finished(self, outcome: FinalOutcome) -> None: ...


@dataclass
class _Session:
    """The sink of the running search and what this process saw Tune finish, per round.

    Tune marks every trial TERMINATED when Ctrl-C ends `fit()` early, so a trial's status afterwards does
    not say whether it finished. What does: `on_trial_complete`/`on_trial_error` (never called for an
    interrupted trial) plus the trials that were already finished when a restored round started.
    """

    sink: SearchSink
    finished: dict[int | None, set[str]] = field(default_factory=dict)  # None: the final stage
    nodes: dict[str, list[str]] = field(default_factory=dict)  # trial id -> nodes it reported from, in order
    done_at_start: dict[int | None, set[str]] = field(default_factory=dict)

    def finished_ids(self, k: int | None) -> set[str] | None:
        """Trials of round k known to have finished, or None when Tune ran no step (nothing changed)."""
        if k not in self.done_at_start:
            return None
        return self.done_at_start[k] | self.finished.get(k, set())


_SESSIONS: list[_Session] = []


@contextlib.contextmanager
def active_sink(sink: SearchSink) -> Iterator[_Session]:
    """Route Tune callbacks (also ones Tuner.restore unpickled) to `sink` while a search runs."""
    session = _Session(sink)
    _SESSIONS.append(session)
    try:
        yield session
    finally:
        _SESSIONS.remove(session)


def current_session() -> _Session | None:
    """The running search's session, if any."""
    return _SESSIONS[-1] if _SESSIONS else None


def tune_callback_class() -> type:
    from ray import tune

    class ProgressCallback(tune.Callback):
        """Forwards trial events to the active sink. Holds no sink itself, so it pickles into the
        experiment and still reports after `Tuner.restore`."""

        def __init__(self, round_: int | None, strategy: str, max_epochs: int) -> None:
            """`round_` None: the final stage's experiment."""
            self.round = round_
            self.strategy = strategy
            self.max_epochs = max_epochs

        @property
        def session(self) -> _Session | None:
            return current_session()

        def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
            s = self.session
            if s is not None and self.round not in s.done_at_start:
                s.done_at_start[self.round] = {t.trial_id for t in trials if str(t.status) in ("TERMINATED", "ERROR")}

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            if self.session:
                seen = self.session.nodes.setdefault(trial.trial_id, [])
                if result.get("node_id") and result["node_id"] not in seen:
                    seen.append(str(result["node_id"]))
                self.session.sink.trial_result(self.round, trial.trial_id, trial.config, result)

        def _finished(self, trial: Any, error: bool) -> None:
            s = self.session
            if s is None:
                return
            s.finished.setdefault(self.round, set()).add(trial.trial_id)
            last = trial.last_result or {}
            err = error_line(_read_error(trial)) if error else str(last.get(TRIAL_ERROR) or "")
            row = trial_row(trial.trial_id, trial.config, last, finished_status(last, error, self.max_epochs),
                            round_=self.round, strategy=self.strategy, error=err,
                            nodes=s.nodes.get(trial.trial_id, ()))
            s.sink.trial_finished(self.round, row)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._finished(trial, error=False)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._finished(trial, error=True)

        def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
            if self.session:
                self.session.sink.trial_checkpoint(trial.trial_id, checkpoint)

    return ProgressCallback


def _read_error(trial: Any) -> str:
    """The error Tune kept for a trial, as text."""
    try:
        exc = trial.get_pickled_error() or trial.get_error()
        return str(exc) if exc else "error"
    except Exception:  # noqa: BLE001 - informative only
        return "error"



"""The search: Ray Tune trials whose knobs Optuna samples, stopped early by ASHA, under a hard budget.

One file per concern, each readable top to bottom:

    settings.py     defaults < space < --smoke < command line, validated before anything starts; the
                    proxy part is hebbnas.proxy's ProxySettings (what `hebbnas probe` resolves too)
    searcher.py     the define-by-run space (sampling only) and the Optuna searcher that says PRUNED/FAIL
    trial.py        one trial: topology -> budget check -> train; failures final or retried
    sink.py         the SearchSink protocol and the Tune callback that feeds it
    outcome.py      what a round, the final stage and a search hand back (values)
    state.py        Tune's experiment state: restore a round, repair what a kill cut off
    ray_cluster.py  connect (or start Ray locally, auth on), resources, reachability
    rounds.py       rounds of Tune experiments, the seed probe, the best trial, the test evaluation
    final.py        the final stage: the top networks and the control retrained on paired seeds
    select.py       the final stage's rule: the control unless a finalist beats it by more than the noise
    console.py      what a search prints (the SearchSink of `hebbnas search` and `hebbnas.search(...)`)

The front door that starts or resumes a search into a run folder is `hebbnas.api` (`hebbnas.search(...)`;
the command `hebbnas search` calls it too).

Strategies live in `hebbnas.strategies`, the run folder in `hebbnas.runfolder` (its trial vocabulary in
`hebbnas.trials`), the seed -> train ->
probe path in `hebbnas.pipeline`.
"""

from __future__ import annotations

from hebbnas.search.outcome import RoundOutcome, SearchInterrupted, SearchOutcome
from hebbnas.search.rounds import (
    SearchPlan,
    evaluate_checkpoint,
    run_round,
    run_search,
)
from hebbnas.search.settings import DEFAULTS, SMOKE, SearchSettings, resolve_settings

__all__ = [
    "DEFAULTS",
    "SMOKE",
    "RoundOutcome",
    "SearchInterrupted",
    "SearchOutcome",
    "SearchPlan",
    "SearchSettings",
    "evaluate_checkpoint",
    "resolve_settings",
    "run_round",
    "run_search",
]

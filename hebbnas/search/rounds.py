"""Rounds: the whole search as a sequence of Ray Tune experiments, one per round.

Round 1's seed is the space's base fitted to the budget. A strategy that probes its seed
(`Strategy.probes_seed`: hebbian, slim, tpe) trains the seed briefly and probes it before the trials,
which derive their widths from that probe; the others probe their round's best network afterwards, so
every strategy leaves the same probe and report. With several rounds (`Strategy.multi_round`) the best
trained network of a round is re-probed and seeds the next (Arora's layer-by-layer construction); for a
strategy that keeps its incumbent (`Strategy.keeps_incumbent`: reallocate) the next round's seed is the
best network so far. After the last round the best trial, by the run folder's one rule, is
evaluated once on the test split.

Values in, values out: everything that reaches the run folder goes through the `SearchSink`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hebbnas.errors import HebbnasError, error_line
from hebbnas.layout import round_name
from hebbnas.objectives import budgets, goals, to_measure
from hebbnas.trials import (
    EPOCH_ATTR,
    METRIC,
    TrialStatus,
    best_key,
    best_row,
    fmt_macs,
)
from hebbnas.search.final import (
    EXPERIMENT,
    UNIT_KEY,
    chosen_unit,
    decide_rows,
    finalists,
    network_results,
    plan_units,
    run_final_unit,
)
from hebbnas.search.grid import load_checkpoint, rows_from_grid
from hebbnas.search.outcome import FinalOutcome, FinalSpec, RoundOutcome, SearchInterrupted, SearchOutcome
from hebbnas.search.sink import SearchSink, active_sink, current_session, tune_callback_class
from hebbnas.search.searcher import Sampler, journal_at, make_searcher, read_optuna_states
from hebbnas.pipeline import recipe, seed_topology
from hebbnas.search.settings import SearchSettings
from hebbnas.search.state import restore_tuner
from hebbnas.search.trial import RoundSpec, failure_config, run_trial, trial_dirname
from hebbnas.space import Space
from hebbnas.strategies import get_strategy, knobs
from hebbnas.topology import Topology, proxy_network

if TYPE_CHECKING:
    from hebbnas.data import Dataset
    from hebbnas.probe import ProbeResult


@dataclass
class SearchPlan:
    """A resolved search ready to run: settings, space, data, where Tune keeps its experiments."""

    settings: SearchSettings
    space: Space
    storage: str  # absolute path or URI; round K lives in <storage>/round-K
    dataset: Any = None
    probe_dataset: Any = None
    threads: int = 1
    seed_cpus: float = 0.0  # the seed network runs alone before the trials: it may take all their CPUs
    journal: str | None = None  # Optuna JournalStorage file (RUN/optuna.journal); one study per round; None: in memory
    progress: bool = False  # a bar for the driver's own long steps (the test evaluation); the CLI decides
    timings: dict[str, float] = field(default_factory=dict)  # wall seconds per phase, summed over rounds
    latency_cache: str | None = None  # where trials keep latency measurements (RUN/latency); None: not kept
    start: Topology | None = None  # round 1's seed: the space's base fitted to the budget (fitted once, here)
    final_dataset: Any = None  # the final stage's data (its fidelity's resolution and subset); loaded when needed

    def start_topology(self) -> Topology:
        """The space's base with the data's head fitted to the budget: the one `fit` of the budget on the driver."""
        if self.start is None:
            self.start = seed_topology(self.settings.budget, self.space, self.dataset.num_classes)
        return self.start

    def experiment_path(self, k: int | str) -> str:
        """Where Tune keeps round k's experiment (`round-K`), or the final stage's (`final`)."""
        return f"{self.storage.rstrip('/')}/{k if isinstance(k, str) else round_name(k)}"

    def final_data(self) -> Any:
        """The final stage's data set: the proxy's when the fidelity trains on the same images at the same
        resolution, else loaded once (same data set, same split seed)."""
        if self.final_dataset is None:
            from hebbnas.pipeline import load_final_data

            self.final_dataset = load_final_data(self.settings.proxy, self.settings.final_fidelity, self.space,
                                                 self.dataset)
        return self.final_dataset

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the wall time of the block to `timings[phase]` (where a search's minutes go)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - t0


def round_spec(plan: SearchPlan, k: int, seed: Topology) -> RoundSpec:
    s, space, data = plan.settings, plan.space, plan.dataset
    return RoundSpec(round=k, strategy=s.strategy, budget=s.budget, deploy_input=space.deploy_input,
                     width_multiple=space.width_multiple, seed_topology=seed, train=recipe(space, s.compile, s.smoke),
                     proxy_width=s.proxy.proxy_width, probed_topology=proxy_network(seed, s.proxy.proxy_width),
                     start_topology=plan.start_topology(),
                     prescreen=s.prescreen, prescreen_score=s.prescreen_score,
                     sampler=Sampler.for_space(space, s.strategy) if s.prescreen > 1 else None,
                     trial_epochs=s.trial_epochs, seed=s.seed, threads=plan.threads, dataset=data.name,
                     resolution=data.resolution, mean=tuple(data.mean), std=tuple(data.std),
                     num_classes=data.num_classes, measure=to_measure(s),
                     budgets=tuple(budgets(s).items()), latency_cache=plan.latency_cache)


def _trainable(plan: SearchPlan, spec: RoundSpec, probe: ProbeResult | None) -> Any:
    from ray import tune

    fn = tune.with_parameters(run_trial, spec=spec, dataset=plan.dataset, probe=probe)
    res = {"cpu": plan.settings.cpus_per_trial}
    if plan.settings.gpus_per_trial:
        res["gpu"] = plan.settings.gpus_per_trial
    return tune.with_resources(fn, res)


def _new_tuner(plan: SearchPlan, spec: RoundSpec, probe: ProbeResult | None, n_trials: int) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    s = plan.settings
    strategy = get_strategy(s.strategy)
    points = strategy.initial_points(plan.space, spec.round, n_trials, seed=spec.seed_topology, probe=probe,
                                     probed=spec.probed_topology)
    seed = s.seed + 1000 * (spec.round - 1)
    optuna_sampler, startup = strategy.sampler(seed, n_trials, len(points))
    searcher = make_searcher(Sampler.for_space(plan.space, s.strategy, startup), max_epochs=s.trial_epochs,
                             seed=seed, n_trials=n_trials, journal=plan.journal, study_name=round_name(spec.round),
                             objectives=list(goals(s.objectives).items()), budgets=budgets(s),
                             points=points, optuna_sampler=optuna_sampler)
    asha = ASHAScheduler(time_attr=EPOCH_ATTR, metric=METRIC, mode="max", max_t=s.trial_epochs,
                         grace_period=s.grace_period, reduction_factor=s.reduction_factor)
    callback = tune_callback_class()(spec.round, s.strategy, s.trial_epochs)
    return tune.Tuner(
        _trainable(plan, spec, probe),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=asha, num_samples=n_trials,
                                    max_concurrent_trials=s.concurrency, reuse_actors=True,
                                    trial_dirname_creator=trial_dirname, trial_name_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=round_name(spec.round), storage_path=plan.storage, verbose=0, callbacks=[callback],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=failure_config(),
        ),
    )


def run_round(plan: SearchPlan, k: int, seed: Topology, probe: ProbeResult | None, sink: SearchSink) -> RoundOutcome:
    """Run (or resume, or just read back) round `k`; raise SearchInterrupted if it did not finish.

    The caller completes the outcome (baselines' probe) and hands it to `sink.round_finished`.
    """
    s = plan.settings
    n_trials = s.trials_in_round(k)
    spec = round_spec(plan, k, seed)
    tuner = restore_tuner(plan.experiment_path(k), _trainable(plan, spec, probe))
    sink.round_started(k, s.rounds, n_trials, seed, resumed=tuner is not None)
    if tuner is None:
        tuner = _new_tuner(plan, spec, probe, n_trials)
    with journal_at(plan.journal):  # a restored searcher reopens the journal where the run folder is now
        grid = tuner.fit()
    session = current_session()
    rows, results = rows_from_grid(grid, k, s.strategy, s.trial_epochs, session.finished_ids(k) if session else None)
    done = sum(1 for r in rows if TrialStatus(r["status"]).finished)
    if len(rows) < n_trials or done < len(rows):
        for r in rows:
            if TrialStatus(r["status"]).finished:
                sink.trial_finished(k, r)
        raise SearchInterrupted(f"round {k}: {done} of {n_trials} trials finished")
    with journal_at(plan.journal):
        states = read_optuna_states(grid.experiment_path)
    rows = [{**r, "optuna_state": states.get(r["trial_id"], "")} for r in rows]
    best = best_row(rows, has_checkpoint=lambda tid: results[tid].checkpoint is not None)
    best_ckpt = None
    if best is not None:
        best_ckpt = load_checkpoint(results[best["trial_id"]].checkpoint)
        for tid, r in results.items():
            if r.checkpoint is not None:
                sink.trial_checkpoint(tid, r.checkpoint)
    strategy = get_strategy(s.strategy)
    derivations = tuple(strategy.report_derivations(plan.space, best)) if best is not None else ()
    report_knobs = (dict(derivations[0][1]) if derivations else {}) or (knobs(best, "derive") if best else {})
    return RoundOutcome(round=k, rows=tuple(rows), best=best, best_checkpoint=best_ckpt, probe=probe,
                        probed=proxy_network(seed, s.proxy.proxy_width), experiment_path=grid.experiment_path,
                        report_knobs=report_knobs, report_derivations=derivations, probes_seed=strategy.probes_seed)


# ---------------------------------------------------------------------------------------------
# the whole search


def run_search(plan: SearchPlan, sink: SearchSink) -> SearchOutcome:
    """All rounds, then the best trial is evaluated once on the test split.

    Resumable: a round whose experiment exists is restored (finished rounds are only read back), a
    round's probe is taken from the sink when it was saved before.

    Raises:
        SearchInterrupted: Ctrl-C (or SIGINT/SIGUSR1) stopped Tune; everything so far is saved.
    """
    s, t0 = plan.settings, time.perf_counter()
    strategy = get_strategy(s.strategy)
    data = plan.dataset
    seed = plan.start_topology()
    seed_state: dict[str, Any] | None = None
    incumbent: tuple[dict[str, Any], Topology, Any, ProbeResult] | None = None  # keeps_incumbent: best so far
    outcomes: list[RoundOutcome] = []
    with active_sink(sink):
        for k in range(1, s.rounds + 1):
            probe = incumbent[3] if incumbent is not None else None  # moves of the incumbent (reallocate)
            if strategy.probes_seed:
                probe = sink.load_probe(k)
                if probe is None:
                    with plan.timed("seed and probe"):
                        probe = _probe_round(plan, k, seed, seed_state, sink)
            with plan.timed("trials"):
                outcome = run_round(plan, k, seed, probe, sink)
            if outcome.best is None or outcome.best_checkpoint is None:
                sink.round_finished(outcome)
                raise HebbnasError(f"round {k}: no trial trained to the end (failed, or rejected by the latency "
                                   "budget); see trials.csv (status, error)")
            seed = Topology.from_json(outcome.best["topology"])  # full width; the weights are its proxy's
            seed_state = outcome.best_checkpoint["state_dict"]
            if not strategy.probes_seed:  # the same probe + report for the baselines: of their best network
                with plan.timed("seed and probe"):
                    probe = sink.load_probe(k) or _probe_round(plan, k, seed, seed_state, sink, best_of_round=True)
                outcome = dataclasses.replace(outcome, probe=probe, probed=proxy_network(seed, s.proxy.proxy_width))
            if strategy.keeps_incumbent:  # a round's best replaces the incumbent only if it is better
                if incumbent is None or best_key(outcome.best) > best_key(incumbent[0]):
                    incumbent = (outcome.best, seed, seed_state, probe)
                _, seed, seed_state, _ = incumbent
            sink.round_finished(outcome)
            outcomes.append(outcome)
        best = best_row([o.best for o in outcomes if o.best is not None], has_checkpoint=lambda tid: True)
        assert best is not None  # every round has a best (checked above)
        if s.final_fidelity is not None:  # the answer comes from the final stage, the search's best competes there
            with plan.timed("final stage"):
                final = run_final_stage(plan, [r for o in outcomes for r in o.rows], sink)
            return SearchOutcome(tuple(outcomes), final.chosen_row, final.chosen_checkpoint,
                                 float(final.chosen_row["test_acc"]), time.perf_counter() - t0, final=final)
    ckpt = next(o.best_checkpoint for o in outcomes if o.best is not None and o.best["trial_id"] == best["trial_id"])
    with plan.timed("test evaluation"):
        test_acc = evaluate_checkpoint(ckpt, data, progress=plan.progress)
    return SearchOutcome(tuple(outcomes), best, ckpt, test_acc, time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# the final stage as a Tune experiment (its units and rule: hebbnas.search.final)


def final_spec(plan: SearchPlan, rows: Sequence[Mapping[str, Any]]) -> FinalSpec:
    """The stage's units (from the finished rounds' rows: the same on every resume) and its one recipe."""
    s = plan.settings
    control = plan.start_topology()
    seeds = tuple(s.seed + i for i in range(s.final_seeds))
    units = plan_units(finalists([r for r in rows if r.get("stage", "search") == "search"], control.hash(),
                                 s.final_top), control, seeds)
    data = plan.final_data()
    return FinalSpec(units=units, train=recipe(plan.space, s.compile, s.smoke), fidelity=s.final_fidelity, budget=s.budget,
                     deploy_input=plan.space.deploy_input, threads=plan.threads, strategy=s.strategy,
                     dataset=data.name, mean=tuple(data.mean), std=tuple(data.std))


def _final_trainable(plan: SearchPlan, spec: FinalSpec) -> Any:
    from ray import tune

    fn = tune.with_parameters(run_final_unit, spec=spec, dataset=plan.final_data())
    res = {"cpu": plan.settings.cpus_per_trial}
    if plan.settings.gpus_per_trial:
        res["gpu"] = plan.settings.gpus_per_trial
    return tune.with_resources(fn, res)


def _final_tuner(plan: SearchPlan, spec: FinalSpec) -> Any:
    from ray import tune

    s = plan.settings
    callback = tune_callback_class()(None, s.strategy, spec.fidelity.epochs)
    return tune.Tuner(
        _final_trainable(plan, spec),
        param_space={UNIT_KEY: tune.grid_search(list(range(len(spec.units))))},
        tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=s.concurrency, reuse_actors=True,
                                    trial_dirname_creator=trial_dirname, trial_name_creator=trial_dirname),
        run_config=tune.RunConfig(name=EXPERIMENT, storage_path=plan.storage, verbose=0, callbacks=[callback],
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                  failure_config=failure_config()),
    )


def run_final_stage(plan: SearchPlan, rows: Sequence[Mapping[str, Any]], sink: SearchSink) -> FinalOutcome:
    """Train (or resume, or read back) the final stage and decide; raise SearchInterrupted if it did not finish."""
    s = plan.settings
    spec = final_spec(plan, rows)
    path = plan.experiment_path(EXPERIMENT)
    tuner = restore_tuner(path, _final_trainable(plan, spec))
    sink.final_started(spec, resumed=tuner is not None)
    if tuner is None:
        tuner = _final_tuner(plan, spec)
    grid = tuner.fit()
    session = current_session()
    got, results = rows_from_grid(grid, None, s.strategy, spec.fidelity.epochs,
                                  session.finished_ids(None) if session else None)
    done = [r for r in got if TrialStatus(r["status"]).finished]
    if len(got) < len(spec.units) or len(done) < len(got):
        for r in done:
            sink.trial_finished(None, r)
        raise SearchInterrupted(f"final stage: {len(done)} of {len(spec.units)} units finished")
    for tid, r in results.items():
        if r.checkpoint is not None:
            sink.trial_checkpoint(tid, r.checkpoint)
    decision = decide_rows(got, spec.units, spec.fidelity.margin)
    chosen = chosen_unit(got, decision.chosen)
    outcome = FinalOutcome(rows=tuple(got), networks=tuple(network_results(got, spec.units)), decision=decision,
                           chosen_row=chosen, chosen_checkpoint=load_checkpoint(results[chosen["trial_id"]].checkpoint),
                           fidelity=spec.fidelity, seeds=tuple(sorted({u.seed for u in spec.units})))
    sink.final_finished(outcome)
    return outcome


def _probe_round(plan: SearchPlan, k: int, seed: Topology, seed_state: Mapping[str, Any] | None,
                 sink: SearchSink, best_of_round: bool = False) -> ProbeResult:
    s, p = plan.settings, plan.settings.proxy
    probe_x = plan.probe_dataset.train.x[: p.probe_images].contiguous()
    if seed_state is None:
        train = {**recipe(plan.space, s.compile, s.smoke), "epochs": p.seed_epochs, "seed": s.seed}
        proxy = f" as its {p.proxy_width:g}-width copy" if p.proxy_width < 1 else ""
        sink.message(f"round {k}: training the seed {seed.name} ({fmt_macs(seed.macs(plan.space.deploy_input))} MACs)"
                     f"{proxy} for {p.seed_epochs} epoch(s), then probing {len(probe_x)} images at "
                     f"{p.probe_resolution}x{p.probe_resolution}")
    else:
        train = None
        sink.message(f"round {k}: probing round {k if best_of_round else k - 1}'s best network on {len(probe_x)} "
                     f"images at {p.probe_resolution}x{p.probe_resolution}")
    cpus = max(plan.seed_cpus, s.cpus_per_trial)
    probe, info = _remote_seed_and_probe(cpus, s.gpus_per_trial, proxy_network(seed, p.proxy_width),
                                         plan.dataset if seed_state is None else None, probe_x,
                                         train=train, state_dict=seed_state, threads=max(1, int(cpus)), seed=s.seed)
    sink.probe_ready(k, probe, seed, info)
    return probe


def _remote_seed_and_probe(cpus: float, gpus: float, *args: Any, **kwargs: Any) -> tuple[ProbeResult, dict[str, Any]]:
    """`hebbnas.pipeline.seed_and_probe` as a Ray task, so it runs where a trial would (GPU included)."""
    import ray

    from hebbnas.pipeline import seed_and_probe

    fn = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(seed_and_probe)
    try:
        return ray.get(fn.remote(*args, **kwargs))
    except HebbnasError as e:  # Ray re-raises the task's error as a subclass of its type
        raise HebbnasError(error_line(e)) from None
    except ray.exceptions.RayError as e:
        raise HebbnasError(f"seed network failed: {error_line(e)}") from None


def evaluate_checkpoint(ckpt: Mapping[str, Any], data: Dataset, progress: bool = False) -> float:
    """Test accuracy of an export dict's model on the held-out test split (once, after the search)."""
    from hebbnas.model import build
    from hebbnas.train import evaluate

    model = build(Topology.from_dict(ckpt["topology"]), aux=False)
    model.load_state_dict(ckpt["state_dict"])
    return evaluate(model, *data.test, progress=progress, desc="test")

"""The search: Ray Tune trials whose knobs Optuna samples, stopped early by ASHA, under a hard budget.

One round (strategy ``hebbian``): a seed topology (round 1: the space's base fitted to the budget)
trains briefly and is probed; every trial samples derivation knobs (and the space's training knobs)
through Ray's `OptunaSearch` with a define-by-run space that only samples, derives its topology from the
shared probe (handed over through Ray's object store by `tune.with_parameters`), fits it to the budget,
trains and reports validation accuracy with a checkpoint every epoch. ASHA stops weak trials; Optuna is
told they were PRUNED (Ray reports them as COMPLETE with their early value, which misleads TPE). With
several rounds the best trained network of a round is re-probed and seeds the next (Arora's
layer-by-layer construction). The baselines run in the same machinery: ``random`` samples width
multipliers per module and branch, ``paper`` trains the paper's GoogLeNet scaled to the budget and only
varies the training knobs.

This module holds values and the Ray wiring; it never writes files itself (Ray Tune writes its
experiment under the storage path it is given). Run-folder contents reach the caller as values through a
`SearchSink`, which `hebbnas.cli_search` implements.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hebbnas.errors import HebbnasError
from hebbnas.space import PROXY_KEYS, SEARCH_KEYS, Distribution, Space
from hebbnas.topology import WIDTH_FIELDS, Topology, min_input_size

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from hebbnas.data import Dataset
    from hebbnas.probe import ProbeResult

STRATEGIES: tuple[str, ...] = ("hebbian", "random", "paper")
METRIC = "val_acc"
EPOCH_ATTR = "epoch"
CHECKPOINT_FILE = "checkpoint.pt"
"""Export format: ``{"topology", "state_dict" (inference), "metrics"}`` (also ``trials/<id>/checkpoint.pt``)."""
TRAIN_STATE_FILE = "train_state.pt"
"""What a trial needs to resume: model (aux heads included), optimizer, scheduler, epoch, best val acc."""
WIDTH_SCALE = "width_scale"
"""The `random:` knob every width falls back to; ``<module>.<field>`` keys override it per width."""
FINISHED_STATUSES = ("completed", "stopped", "error")
_log = logging.getLogger(__name__)

# Settings every search has; the space's `proxy:`/`search:` sections override the code defaults,
# `--smoke` overrides those, and explicit command-line options override everything.
DEFAULTS: dict[str, Any] = {
    "strategy": "hebbian",
    "dataset": "digits",
    "data_dir": None,
    "resolution": 32,
    "probe_resolution": 64,
    "train_subset": None,
    "seed_epochs": 3,
    "probe_images": 600,
    "trials": 8,
    "max_epochs": 5,
    "rounds": 1,
    "grace_period": 2,
    "reduction_factor": 2,
    "seed": 0,
    "cpus_per_trial": 1.0,
    "gpus_per_trial": 0.0,
    "concurrency": 2,
}
SMOKE: dict[str, Any] = {
    "trials": 3,
    "max_epochs": 2,
    "grace_period": 1,
    "train_subset": 160,
    "resolution": 32,
    "probe_resolution": 32,
    "seed_epochs": 1,
    "probe_images": 64,
}
"""`--smoke`: a tiny train subset, few epochs, a small probe; for tests and a first look at a cluster."""


# ---------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class SearchSettings:
    """Everything that defines a search, resolved from defaults, the space, `--smoke` and the command line.

    Written to ``config.yaml`` and read back by ``--resume``, so a resumed search is the same search.
    """

    budget: float
    space: str
    strategy: str
    dataset: str
    data_dir: str | None
    resolution: int
    probe_resolution: int
    train_subset: int | None
    seed_epochs: int
    probe_images: int
    trials: int
    max_epochs: int
    rounds: int
    grace_period: int
    reduction_factor: int
    seed: int
    cpus_per_trial: float
    gpus_per_trial: float
    concurrency: int
    smoke: bool = False
    fixed: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - known
        if extra:
            raise HebbnasError(f"unknown search settings {sorted(extra)}")
        try:
            return cls(**dict(d))
        except TypeError as e:
            raise HebbnasError(f"incomplete search settings: {e}") from None

    def trials_in_round(self, k: int) -> int:
        """`trials` is the total; rounds share it evenly (earlier rounds get the remainder)."""
        base, extra = divmod(self.trials, self.rounds)
        return base + (1 if k <= extra else 0)


def resolve_settings(space: Space, space_name: str, options: Mapping[str, Any], smoke: bool = False) -> SearchSettings:
    """Merge defaults < space sections < smoke < explicit options (None means not given) and validate.

    Raises:
        HebbnasError: an unknown strategy, a non-positive budget or count, an impossible combination.
    """
    merged: dict[str, Any] = dict(DEFAULTS)
    for key in PROXY_KEYS:
        if key in space.proxy:
            merged[key] = space.proxy[key]
    for key in SEARCH_KEYS:
        if key in space.search:
            merged[key] = space.search[key]
    if smoke:
        merged.update(SMOKE)
    merged.update({k: v for k, v in options.items() if v is not None and k != "budget"})
    budget = options.get("budget")
    settings = SearchSettings(
        budget=_positive_budget(budget),
        space=space_name,
        strategy=str(merged["strategy"]),
        dataset=str(merged["dataset"]),
        data_dir=None if merged["data_dir"] is None else str(merged["data_dir"]),
        resolution=_int(merged, "resolution"),
        probe_resolution=_int(merged, "probe_resolution"),
        train_subset=None if merged["train_subset"] is None else _int(merged, "train_subset"),
        seed_epochs=_int(merged, "seed_epochs"),
        probe_images=_int(merged, "probe_images"),
        trials=_int(merged, "trials"),
        max_epochs=_int(merged, "max_epochs"),
        rounds=_int(merged, "rounds"),
        grace_period=_int(merged, "grace_period"),
        reduction_factor=_int(merged, "reduction_factor", minimum=2),
        seed=_int(merged, "seed", minimum=0),
        cpus_per_trial=_float(merged, "cpus_per_trial", positive=True),
        gpus_per_trial=_float(merged, "gpus_per_trial", positive=False),
        concurrency=_int(merged, "concurrency"),
        smoke=bool(smoke),
        fixed=dict(space.fixed),
    )
    validate_settings(settings, space)
    return settings


def _positive_budget(v: Any) -> float:
    try:
        b = float(v)
    except (TypeError, ValueError):
        raise HebbnasError(f"--budget must be a positive number of MACs (e.g. 1.5e9), got {v!r}") from None
    if not math.isfinite(b) or b <= 0:
        raise HebbnasError(f"--budget must be a positive number of MACs (e.g. 1.5e9), got {v!r}")
    return b


def _int(d: Mapping[str, Any], key: str, minimum: int = 1) -> int:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or int(v) < minimum:
        raise HebbnasError(f"{key.replace('_', '-')} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _float(d: Mapping[str, Any], key: str, positive: bool) -> float:
    v = d[key]
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 if positive else v >= 0)
    if not ok:
        raise HebbnasError(f"{key.replace('_', '-')} must be a {'positive' if positive else 'non-negative'} number, got {v!r}")
    return float(v)


def validate_settings(s: SearchSettings, space: Space) -> None:
    """Reject combinations that cannot run, before any folder is created or Ray is started."""
    from hebbnas.train import TrainConfig

    if s.strategy not in STRATEGIES:
        raise HebbnasError(f"unknown strategy {s.strategy!r} (known: {', '.join(STRATEGIES)})")
    if s.rounds > 1 and s.strategy != "hebbian":
        raise HebbnasError(f"--rounds {s.rounds} needs --strategy hebbian (rounds re-probe the best network)")
    if s.trials < s.rounds:
        raise HebbnasError(f"--trials {s.trials} is fewer than --rounds {s.rounds} (each round needs a trial)")
    if s.grace_period > s.max_epochs:
        raise HebbnasError(f"ASHA grace period {s.grace_period} exceeds --epochs {s.max_epochs}")
    floor = min_input_size(space.base)
    for key in ("resolution", "probe_resolution"):
        if getattr(s, key) < floor:
            raise HebbnasError(f"{key.replace('_', '-')} {getattr(s, key)} is below the {floor} px the stem needs")
    knobs = set(space.train) | set(s.fixed)
    fields_ = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(knobs - (fields_ - {"epochs", "seed", "device"}))
    if bad:
        raise HebbnasError(f"{space.source}: unknown or reserved training knobs {bad}")
    if s.strategy == "random":
        _random_distributions(space)  # raises on a missing width_scale or unknown keys
    if s.strategy == "hebbian":
        from hebbnas.derive import Policy

        if not space.derive:
            raise HebbnasError(f"{space.source}: strategy hebbian needs a derive: section")
        Policy.from_knobs({n: d.default() for n, d in space.derive.items()})  # unknown knob names fail here


# ---------------------------------------------------------------------------------------------
# the define-by-run space: it only samples (Ray warns when it takes over a second)


def _random_distributions(space: Space) -> dict[str, Distribution]:
    """Per-width distributions of the random baseline, keyed ``<module>.<field>``."""
    if WIDTH_SCALE not in space.random:
        raise HebbnasError(f"{space.source}: strategy random needs random.{WIDTH_SCALE}")
    keys = {f"{m.name}.{f}": m for m in space.base.modules for f in WIDTH_FIELDS if getattr(m, f)}
    extra = sorted(set(space.random) - set(keys) - {WIDTH_SCALE})
    if extra:
        raise HebbnasError(f"{space.source}: random: keys {extra} name no width of {space.base.name}")
    return {k: space.random.get(k, space.random[WIDTH_SCALE]) for k in keys}


@dataclass(frozen=True)
class Sampler:
    """The define-by-run space handed to `OptunaSearch`: `(optuna_trial) -> None`, sampling only.

    Parameter names are namespaced: ``derive.<knob>``, ``width.<module>.<field>``, ``train.<knob>``.
    """

    strategy: str
    derive: tuple[tuple[str, Distribution], ...] = ()
    widths: tuple[tuple[str, Distribution], ...] = ()
    train: tuple[tuple[str, Distribution], ...] = ()

    @classmethod
    def for_space(cls, space: Space, strategy: str) -> Sampler:
        return cls(
            strategy=strategy,
            derive=tuple(space.derive.items()) if strategy == "hebbian" else (),
            widths=tuple(_random_distributions(space).items()) if strategy == "random" else (),
            train=tuple(space.train.items()),
        )

    def __call__(self, trial: Any) -> None:
        for name, dist in self.derive:
            dist.suggest(trial, f"derive.{name}")
        for name, dist in self.widths:
            dist.suggest(trial, f"width.{name}")
        for name, dist in self.train:
            dist.suggest(trial, f"train.{name}")
        return None


def knobs(config: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The sampled values of one namespace, without the prefix."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in config.items() if k.startswith(p)}


# ---------------------------------------------------------------------------------------------
# what every trial of a round shares (travels to the trials through the object store)


@dataclass(frozen=True)
class RoundSpec:
    """The fixed part of one round: the seed topology, the budget, the training recipe."""

    round: int
    strategy: str
    budget: float
    deploy_input: tuple[int, int, int]
    width_multiple: int
    seed_topology: Topology
    train: dict[str, Any]  # TrainConfig fields except the sampled knobs
    max_epochs: int
    seed: int
    threads: int
    dataset: str
    resolution: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int


def trial_topology(spec: RoundSpec, probe: ProbeResult | None, config: Mapping[str, Any], name: str) -> Topology:
    """The trial's topology: derived (hebbian), sampled (random) or the paper's, then fitted to the budget."""
    from hebbnas.derive import fit

    seed = spec.seed_topology
    if spec.strategy == "hebbian":
        from hebbnas import derive

        if probe is None:
            raise HebbnasError("strategy hebbian needs the round's probe")
        t = derive.derive_topology(seed, probe, **knobs(config, "derive"))
    elif spec.strategy == "random":
        t = scaled_topology(seed, knobs(config, "width"))
    else:
        t = seed
    t = t.with_classes(spec.num_classes)
    return fit(t, spec.budget, spec.deploy_input, multiple=spec.width_multiple, name=name)


def scaled_topology(t: Topology, multipliers: Mapping[str, float]) -> Topology:
    """The random baseline's proportions: each non-zero width times its multiplier (at least 1)."""
    widths = {}
    for m in t.modules:
        widths[m.name] = tuple(
            max(1, int(round(w * float(multipliers.get(f"{m.name}.{f}", 1.0))))) if w else 0
            for f, w in zip(WIDTH_FIELDS, m.widths)
        )
    return t.with_widths(widths)


def train_config(spec: RoundSpec, config: Mapping[str, Any], epochs: int | None = None) -> Any:
    """The trial's TrainConfig: the shared recipe plus the sampled training knobs."""
    from hebbnas.train import TrainConfig

    return TrainConfig.from_dict({**spec.train, **knobs(config, "train"),
                                  "epochs": epochs or spec.max_epochs, "seed": spec.seed})


# ---------------------------------------------------------------------------------------------
# the trainable


def run_trial(config: dict[str, Any], *, spec: RoundSpec, dataset: Dataset, probe: ProbeResult | None = None) -> None:
    """One Tune trial: topology -> budget check -> train, reporting val accuracy + a checkpoint per epoch.

    Resumes from `tune.get_checkpoint()` when Tune restores the trial (after a kill or a pause).
    """
    import torch
    from ray import tune

    from hebbnas.model import build, inference_state_dict
    from hebbnas.train import train

    torch.set_num_threads(spec.threads)
    ctx = tune.get_context()
    trial_id = ctx.get_trial_id() or "local"
    topology = trial_topology(spec, probe, config, name=f"{spec.strategy}-r{spec.round}-{trial_id}")
    macs = topology.macs(spec.deploy_input)
    if macs > spec.budget:  # backstop: fit guarantees this, a bug must not train an over-budget net
        raise HebbnasError(f"trial {trial_id}: {macs:,} MACs exceed the budget {spec.budget:,.0f}")
    params = topology.params()
    cfg = train_config(spec, config)
    torch.manual_seed(spec.seed)
    model = build(topology)
    state, best, start = None, 0.0, 0
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            saved = torch.load(Path(d) / TRAIN_STATE_FILE, map_location="cpu", weights_only=True)
        state, best, start = saved["train"], float(saved["best_val_acc"]), int(saved["train"]["epoch"])
    node_id = _node_id()
    meta = {"input": list(spec.deploy_input), "dataset": spec.dataset, "resolution": spec.resolution,
            "mean": list(spec.mean), "std": list(spec.std), "trial_id": trial_id, "strategy": spec.strategy,
            "budget": spec.budget, "round": spec.round}

    cpu = time.process_time()

    def on_epoch(r: Any) -> bool:
        nonlocal best, cpu
        best = max(best, r.val_accuracy)
        cpu, cpu_seconds = time.process_time(), time.process_time() - cpu
        metrics = {
            METRIC: r.val_accuracy, "best_val_acc": best, EPOCH_ATTR: r.epoch + 1, "train_loss": r.train_loss,
            "train_acc": r.train_accuracy, "macs": macs, "params": params, "round": spec.round,
            "topology_hash": topology.hash(), "topology": topology.to_json(indent=None),
            "epoch_seconds": r.seconds, "cpu_seconds": cpu_seconds, "resumed_from": start, "node_id": node_id,
        }
        with tempfile.TemporaryDirectory(prefix="hebbnas-ckpt-") as d:
            export = {"topology": topology.to_dict(),
                      "state_dict": {k: v.detach().cpu() for k, v in inference_state_dict(model).items()},
                      "metrics": {**meta, METRIC: r.val_accuracy, "best_val_acc": best, "epoch": r.epoch + 1,
                                  "macs": macs, "params": params}}
            torch.save(export, Path(d) / CHECKPOINT_FILE)
            torch.save({"train": r.checkpoint(), "best_val_acc": best}, Path(d) / TRAIN_STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        return False

    train(model, dataset, cfg, on_epoch=on_epoch, state=state)


def _node_id() -> str:
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id())
    except Exception:  # noqa: BLE001 - only informative
        return ""


def trial_dirname(trial: Any) -> str:
    """Trial folders are named by trial id, so ``trials.csv`` ids find their Tune folder."""
    return str(trial.trial_id)


# ---------------------------------------------------------------------------------------------
# Optuna: ASHA-stopped trials are PRUNED, errored trials FAILED


def optuna_outcome(result: Mapping[str, Any] | None, error: bool, max_epochs: int) -> str:
    """COMPLETE, PRUNED or FAIL for a finished trial, from its last result.

    A trial that reported fewer than `max_epochs` epochs and did not error was stopped early by ASHA.
    """
    if error:
        return "FAIL"
    if not result or result.get(METRIC) is None:
        return "PRUNED"
    epochs = result.get(EPOCH_ATTR, result.get("training_iteration", 0))
    return "PRUNED" if int(epochs or 0) < max_epochs else "COMPLETE"


def _optuna_search_class() -> type:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    class PrunedOptunaSearch(OptunaSearch):
        """OptunaSearch that tells Optuna the truth about early-stopped and errored trials.

        Ray's OptunaSearch tells every trial with a last value COMPLETE, so an ASHA-stopped trial's early
        (low) accuracy reads to TPE as a finished one, and an errored trial with results as a success.
        Here they become PRUNED (Optuna then uses the last intermediate value) and FAIL.
        """

        def __init__(self, *args: Any, max_epochs: int, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._max_epochs = int(max_epochs)
            self.outcomes: dict[str, str] = {}

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if trial_id in self._completed_trials or trial_id not in self._ot_trials:
                super().on_trial_complete(trial_id, result, error)
                return
            outcome = optuna_outcome(result, error, self._max_epochs)
            self.outcomes[trial_id] = outcome
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


def make_searcher(sampler: Sampler, *, max_epochs: int, seed: int, n_trials: int) -> Any:
    """A PrunedOptunaSearch over `sampler` (TPE, seeded; random start for about half of the trials)."""
    import optuna

    tpe = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, n_trials // 2)))
    cls = _optuna_search_class()
    return cls(space=sampler, metric=METRIC, mode="max", sampler=tpe, max_epochs=max_epochs)


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


# ---------------------------------------------------------------------------------------------
# trial rows (trials.csv)


def trial_row(trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any] | None, status: str,
              *, round_: int, strategy: str, error: str = "") -> dict[str, Any]:
    """One row of trials.csv: id, round, strategy, status, knobs, the six widths of every module, costs."""
    result = result or {}
    row: dict[str, Any] = {
        "trial_id": trial_id, "round": round_, "strategy": strategy, "status": status,
        "epochs": int(result.get(EPOCH_ATTR, 0) or 0),
        "val_acc": result.get(METRIC), "best_val_acc": result.get("best_val_acc"),
        "macs": result.get("macs"), "params": result.get("params"), "topology_hash": result.get("topology_hash", ""),
        "started": _started(result),
    }
    row.update({k: v for k, v in sorted(config.items())})
    topo = result.get("topology")
    if topo:
        t = Topology.from_json(topo)
        for m in t.modules:
            for f, w in zip(WIDTH_FIELDS, m.widths):
                row[f"{m.name}.{f}"] = w
        row.update({"stem.conv1": t.stem.conv1, "stem.conv2": t.stem.conv2, "stem.conv3": t.stem.conv3})
    row["node_id"] = result.get("node_id", "")
    row["error"] = error
    row["topology"] = topo or ""
    return row


def read_trials(path: Path) -> pd.DataFrame:
    """trials.csv as written by `trial_row`; ids stay text, since an id like 12345678 or 1e345678 is not a number."""
    import pandas as pd

    return pd.read_csv(path, dtype={"trial_id": str})


def _started(result: Mapping[str, Any]) -> float | None:
    """When the trial started (unix seconds), from Tune's own result fields; orders trials for analysis."""
    ts, total = result.get("timestamp"), result.get("time_total_s")
    if ts is None or total is None:
        return None
    return round(float(ts) - float(total), 3)


def finished_status(result: Mapping[str, Any] | None, error: bool, max_epochs: int) -> str:
    """completed (all epochs), stopped (ASHA) or error."""
    if error:
        return "error"
    epochs = int((result or {}).get(EPOCH_ATTR, 0) or 0)
    return "completed" if epochs >= max_epochs else "stopped"


def _error_line(err: BaseException | str | None) -> str:
    if err is None:
        return ""
    text = str(err).strip()
    # a trial's HebbnasError arrives wrapped in Ray's traceback text; keep its own line
    for line in reversed(text.splitlines()):
        if "HebbnasError" in line:
            return line.split("HebbnasError:", 1)[-1].strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip()[:300] if lines else type(err).__name__


# ---------------------------------------------------------------------------------------------
# the sink: how run-folder contents and progress leave the core


class SearchSink(Protocol):
    """Receives everything a search produces; `hebbnas.cli_search.RunFolder` writes and prints it."""

    def message(self, text: str) -> None: ...
    def round_started(self, k: int, rounds: int, n_trials: int, seed: Topology, resumed: bool) -> None: ...
    def load_probe(self, k: int) -> ProbeResult | None: ...
    def probe_ready(self, k: int, probe: ProbeResult, seed: Topology, info: Mapping[str, Any]) -> None: ...
    def trial_result(self, k: int, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> None: ...
    def trial_finished(self, k: int, row: Mapping[str, Any]) -> None: ...
    def trial_checkpoint(self, trial_id: str, checkpoint: Any) -> None: ...
    def round_finished(self, outcome: RoundOutcome) -> None: ...


@dataclass
class _Session:
    """The sink of the running search and what this process saw Tune finish, per round.

    Tune marks every trial TERMINATED when Ctrl-C ends `fit()` early, so a trial's status afterwards does
    not say whether it finished. What does: `on_trial_complete`/`on_trial_error` (never called for an
    interrupted trial) plus the trials that were already finished when a restored round started.
    """

    sink: SearchSink
    finished: dict[int, set[str]] = field(default_factory=dict)
    done_at_start: dict[int, set[str]] = field(default_factory=dict)

    def finished_ids(self, k: int) -> set[str] | None:
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


def _tune_callback_class() -> type:
    from ray import tune

    class ProgressCallback(tune.Callback):
        """Forwards trial events to the active sink. Holds no sink itself, so it pickles into the
        experiment and still reports after `Tuner.restore`."""

        def __init__(self, round_: int, strategy: str, max_epochs: int) -> None:
            self.round = round_
            self.strategy = strategy
            self.max_epochs = max_epochs

        @property
        def session(self) -> _Session | None:
            return _SESSIONS[-1] if _SESSIONS else None

        def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
            s = self.session
            if s is not None and self.round not in s.done_at_start:
                s.done_at_start[self.round] = {t.trial_id for t in trials if str(t.status) in ("TERMINATED", "ERROR")}

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            if self.session:
                self.session.sink.trial_result(self.round, trial.trial_id, trial.config, result)

        def _finished(self, trial: Any, error: bool) -> None:
            s = self.session
            if s is None:
                return
            s.finished.setdefault(self.round, set()).add(trial.trial_id)
            last = trial.last_result or {}
            err = _error_line(_read_error(trial)) if error else ""
            row = trial_row(trial.trial_id, trial.config, last, finished_status(last, error, self.max_epochs),
                            round_=self.round, strategy=self.strategy, error=err)
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


# ---------------------------------------------------------------------------------------------
# Ray


def connect_ray(address: str | None, *, verbose: bool = False) -> str:
    """Connect to a running cluster (`address`, or RAY_ADDRESS) or start Ray on this machine.

    Returns the GCS address actually used, so the run records where it ran.
    """
    import ray

    if not verbose:
        for name in ("ray", "ray.tune", "ray.train", "ray.air"):
            logging.getLogger(name).setLevel(logging.ERROR)
    level = logging.INFO if verbose else logging.ERROR
    kw: dict[str, Any] = {"log_to_driver": verbose, "logging_level": level, "include_dashboard": False}
    if ray.is_initialized():
        return str(ray.get_runtime_context().gcs_address)
    target = address or os.environ.get("RAY_ADDRESS") or None
    try:
        if target:
            kw.pop("include_dashboard")
            ray.init(address=target, **kw)
        else:
            ray.init(**kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {target}" if target else "a local Ray instance"
        raise HebbnasError(f"cannot connect to {where}: {str(e).strip().splitlines()[0] if str(e) else e}") from None
    return str(ray.get_runtime_context().gcs_address)


def check_resources(cpus: float, gpus: float) -> dict[str, Any]:
    """Fail clearly (instead of pending forever) when no node can host one trial.

    Returns the alive nodes' ids and the largest CPU and GPU count of any of them.
    """
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    nodes = [n.get("Resources", {}) for n in alive]
    max_cpu = max((float(r.get("CPU", 0)) for r in nodes), default=0.0)
    max_gpu = max((float(r.get("GPU", 0)) for r in nodes), default=0.0)
    total = ray.cluster_resources()
    if gpus > 0 and float(total.get("GPU", 0)) == 0:
        raise HebbnasError(f"--gpus-per-trial {gpus:g} but the Ray cluster has no GPU "
                           f"({len(nodes)} node(s), {float(total.get('CPU', 0)):g} CPUs)")
    if gpus > max_gpu:
        raise HebbnasError(f"--gpus-per-trial {gpus:g} but the largest node has {max_gpu:g} GPU(s)")
    if cpus > max_cpu:
        raise HebbnasError(f"--cpus-per-trial {cpus:g} but the largest node has {max_cpu:g} CPU(s)")
    return {"nodes": len(nodes), "node_ids": [str(n.get("NodeID")) for n in alive],
            "max_node_cpus": max_cpu, "max_node_gpus": max_gpu}


# ---------------------------------------------------------------------------------------------
# the seed network: train briefly (or take trained weights) and probe, as a Ray task


def seed_and_probe(topology: Topology, dataset: Dataset | None, probe_x: torch.Tensor, *,
                   train: Mapping[str, Any] | None, state_dict: Mapping[str, Any] | None,
                   threads: int, seed: int) -> tuple[ProbeResult, dict[str, Any]]:
    """Train `topology` per `train` (or load `state_dict`) and probe every Inception input on `probe_x`."""
    import torch

    from hebbnas.model import build
    from hebbnas.probe import probe_model
    from hebbnas.train import TrainConfig, resolve_device
    from hebbnas.train import train as train_loop

    torch.set_num_threads(threads)
    info: dict[str, Any] = {}
    torch.manual_seed(seed)
    if state_dict is None:
        if dataset is None or train is None:
            raise HebbnasError("the seed network needs a dataset and a training recipe")
        model = build(topology)
        t0, c0 = time.perf_counter(), time.process_time()
        res = train_loop(model, dataset, TrainConfig.from_dict(dict(train)))
        info = {"seed_val_acc": res.val_accuracy, "seed_epochs": res.epochs_run,
                "seed_seconds": time.perf_counter() - t0, "seed_cpu_seconds": time.process_time() - c0}
    else:
        model = build(topology, aux=False)
        model.load_state_dict(dict(state_dict))
    device = resolve_device("auto")
    model.to(device)
    batches = [probe_x[i:i + 64] for i in range(0, len(probe_x), 64)]
    t0 = time.perf_counter()
    probe = probe_model(model, batches, topology.module_names, device=device, topology_hash=topology.hash())
    info["probe_seconds"] = time.perf_counter() - t0
    info["probe_images"] = int(len(probe_x))
    return probe, info


def _remote_seed_and_probe(cpus: float, gpus: float, *args: Any, **kwargs: Any) -> tuple[ProbeResult, dict[str, Any]]:
    import ray

    fn = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(seed_and_probe)
    try:
        return ray.get(fn.remote(*args, **kwargs))
    except HebbnasError as e:  # Ray re-raises the task's error as a subclass of its type
        raise HebbnasError(_error_line(e)) from None
    except ray.exceptions.RayError as e:
        raise HebbnasError(f"seed network failed: {_error_line(e)}") from None


# ---------------------------------------------------------------------------------------------
# one round


@dataclass(frozen=True)
class RoundOutcome:
    """A finished round: its rows (trials.csv), the best trial and what it seeds next.

    `probe` was taken on `probed`: the round's seed (hebbian: what the trials derived from) or, for the
    baselines, the round's best network (so every strategy leaves the same probe + cluster report).
    `report_knobs` are the derivation knobs its cluster-to-branch report uses.
    """

    round: int
    rows: tuple[dict[str, Any], ...]
    best: dict[str, Any] | None
    best_checkpoint: dict[str, Any] | None  # the export dict of the best trial (topology, state_dict, metrics)
    probe: ProbeResult | None
    probed: Topology
    experiment_path: str
    report_knobs: dict[str, Any] = field(default_factory=dict)


class SearchInterrupted(Exception):
    """The search stopped before its trials finished (Ctrl-C); the run folder can be resumed."""


@dataclass(frozen=True)
class SearchOutcome:
    """All rounds, the overall best trial and its held-out test accuracy."""

    rounds: tuple[RoundOutcome, ...]
    best: dict[str, Any]
    best_checkpoint: dict[str, Any]
    test_acc: float
    seconds: float

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [r for o in self.rounds for r in o.rows]


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

    def experiment_path(self, k: int) -> str:
        return f"{self.storage.rstrip('/')}/round-{k}"


def load_data(settings: SearchSettings, space: Space) -> tuple[Dataset, Dataset | None]:
    """The proxy at the training resolution and at the probe resolution (same images, same split)."""
    from hebbnas.data import load_dataset

    kw = dict(data_dir=settings.data_dir, channels=space.base.in_channels, seed=settings.seed,
              train_subset=settings.train_subset)
    data = load_dataset(settings.dataset, resolution=settings.resolution, **kw)
    probe_data = data if settings.probe_resolution == settings.resolution else load_dataset(
        settings.dataset, resolution=settings.probe_resolution, **kw)
    return data, probe_data


def seed_topology(settings: SearchSettings, space: Space, num_classes: int) -> Topology:
    """Round 1's seed (hebbian), the random baseline's reference and the paper baseline: base fitted."""
    from hebbnas.derive import fit

    return fit(space.base.with_classes(num_classes), settings.budget, space.deploy_input,
               multiple=space.width_multiple, name=f"{space.base.name}-fit")


def round_spec(plan: SearchPlan, k: int, seed: Topology) -> RoundSpec:
    s, space, data = plan.settings, plan.space, plan.dataset
    train = {**{n: d.default() for n, d in space.train.items()}, **s.fixed}
    return RoundSpec(round=k, strategy=s.strategy, budget=s.budget, deploy_input=space.deploy_input,
                     width_multiple=space.width_multiple, seed_topology=seed, train=train, max_epochs=s.max_epochs,
                     seed=s.seed, threads=plan.threads, dataset=data.name, resolution=data.resolution,
                     mean=tuple(data.mean), std=tuple(data.std), num_classes=data.num_classes)


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
    searcher = make_searcher(Sampler.for_space(plan.space, s.strategy), max_epochs=s.max_epochs,
                             seed=s.seed + 1000 * (spec.round - 1), n_trials=n_trials)
    asha = ASHAScheduler(time_attr=EPOCH_ATTR, metric=METRIC, mode="max", max_t=s.max_epochs,
                         grace_period=s.grace_period, reduction_factor=s.reduction_factor)
    storage, name = plan.storage, f"round-{spec.round}"
    callback = _tune_callback_class()(spec.round, s.strategy, s.max_epochs)
    return tune.Tuner(
        _trainable(plan, spec, probe),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=asha, num_samples=n_trials,
                                    max_concurrent_trials=s.concurrency, reuse_actors=True,
                                    trial_dirname_creator=trial_dirname, trial_name_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=0, callbacks=[callback],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )


def _restore_tuner(plan: SearchPlan, spec: RoundSpec, probe: ProbeResult | None) -> Any | None:
    from ray import tune

    path = plan.experiment_path(spec.round)
    if not tune.Tuner.can_restore(path):
        return None
    _drop_cut_off_state(path)
    # unfinished trials continue from their last checkpoint; errored ones (diverged) stay failed
    return tune.Tuner.restore(path, _trainable(plan, spec, probe), resume_unfinished=True,
                              resume_errored=False, restart_errored=False)


def _drop_cut_off_state(path: str) -> None:
    """Set aside the newest session's experiment state when a kill cut its upload off.

    Ray Tune copies its state files (experiment_state-<session>.json, search_gen_state-<session>.json,
    searcher-state-<session>.pkl) to storage without an atomic rename, so a SIGKILL during the copy can
    leave them empty, and Tuner.restore would then start the round over. An older session's complete
    state (a search killed, resumed and killed again) is the next best; with none, resuming is refused.
    """
    import pyarrow.fs

    if "://" in path:
        fs, root = pyarrow.fs.FileSystem.from_uri(path)
    else:
        fs, root = pyarrow.fs.LocalFileSystem(), path
    infos = fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=False))
    present = {Path(i.path).name for i in infos}
    sessions = sorted({n[len("experiment_state-"):-len(".json")] for n in present
                       if n.startswith("experiment_state-") and n.endswith(".json")}, reverse=True)
    for n, session in enumerate(sessions):
        names = [f"experiment_state-{session}.json", f"search_gen_state-{session}.json",
                 f"searcher-state-{session}.pkl"]
        if _state_files_complete(fs, root, [m for m in names if m in present or m.startswith("experiment")]):
            return
        if n + 1 == len(sessions):
            raise HebbnasError(f"the experiment state in {root} was cut off when the search was killed; this "
                               "round cannot be resumed (trained checkpoints are in trials/<id>/checkpoint.pt)")
        for name in names:
            if name in present:
                with contextlib.suppress(OSError):
                    fs.move(f"{root}/{name}", f"{root}/.cut-off-{name}")


def _state_files_complete(fs: Any, root: str, names: Sequence[str]) -> bool:
    for name in names:
        try:
            with fs.open_input_stream(f"{root}/{name}") as f:
                data = f.read()
            if not data:
                return False
            if name.startswith("experiment_state-"):  # JSON; the other two are pickles
                json.loads(data)
        except (OSError, ValueError):
            return False
    return True


def run_round(plan: SearchPlan, k: int, seed: Topology, probe: ProbeResult | None, sink: SearchSink) -> RoundOutcome:
    """Run (or resume, or just read back) round `k`; raise SearchInterrupted if it did not finish.

    The caller completes the outcome (baselines' probe) and hands it to `sink.round_finished`.
    """
    s = plan.settings
    n_trials = s.trials_in_round(k)
    spec = round_spec(plan, k, seed)
    tuner = _restore_tuner(plan, spec, probe)
    sink.round_started(k, s.rounds, n_trials, seed, resumed=tuner is not None)
    if tuner is None:
        tuner = _new_tuner(plan, spec, probe, n_trials)
    grid = tuner.fit()
    session = _SESSIONS[-1] if _SESSIONS else None
    rows, best, best_result = _rows_from_grid(grid, k, s, session.finished_ids(k) if session else None)
    done = sum(1 for r in rows if r["status"] in FINISHED_STATUSES)
    if len(rows) < n_trials or done < len(rows):
        for r in rows:
            sink.trial_finished(k, r) if r["status"] in FINISHED_STATUSES else None
        raise SearchInterrupted(f"round {k}: {done} of {n_trials} trials finished")
    states = read_optuna_states(grid.experiment_path)
    rows = [{**r, "optuna_state": states.get(r["trial_id"], "")} for r in rows]
    best_ckpt = None
    if best_result is not None and best_result.checkpoint is not None:
        best_ckpt = load_checkpoint(best_result.checkpoint)
        for r in grid:
            if r.checkpoint is not None:
                sink.trial_checkpoint(_trial_id_of(r), r.checkpoint)
    return RoundOutcome(round=k, rows=tuple(rows), best=best, best_checkpoint=best_ckpt, probe=probe, probed=seed,
                        experiment_path=grid.experiment_path,
                        report_knobs=knobs(best, "derive") if best is not None else {})


def _trial_id_of(result: Any) -> str:
    return str(result.metrics.get("trial_id") or Path(str(result.path)).name)


def _trial_status(grid: Any) -> dict[str, str]:
    """Tune's status per trial id (private attribute; empty when Ray changes it)."""
    try:
        return {t.trial_id: str(t.status) for t in grid._experiment_analysis.trials}
    except AttributeError:
        return {}


def _rows_from_grid(grid: Any, k: int, s: SearchSettings, finished_ids: set[str] | None
                    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, Any]:
    """Rows of a round's trials; `finished_ids` (when Tune ran steps) says which trials really finished."""
    statuses = _trial_status(grid)
    rows, best, best_result, best_key = [], None, None, None
    for r in grid:
        tid = _trial_id_of(r)
        err = r.error is not None or statuses.get(tid) == "ERROR"
        tune_status = statuses.get(tid, "TERMINATED" if not err else "ERROR")
        if finished_ids is not None and tid not in finished_ids and not err:
            tune_status = "INTERRUPTED"
        if tune_status in ("TERMINATED", "ERROR"):
            status = finished_status(r.metrics, err, s.max_epochs)
        else:
            status = tune_status.lower()  # pending, paused, running: an interrupted round
        row = trial_row(tid, r.config or {}, r.metrics, status, round_=k, strategy=s.strategy,
                        error=_error_line(r.error) if err else "")
        rows.append(row)
        if status in ("completed", "stopped") and r.checkpoint is not None and row["val_acc"] is not None:
            key = (float(row["val_acc"]), float(row["best_val_acc"] or 0), row["epochs"], -float(row["macs"] or 0))
            if best_key is None or key > best_key:
                best, best_result, best_key = row, r, key
    return rows, best, best_result


def load_checkpoint(checkpoint: Any) -> dict[str, Any]:
    """The export dict of a Tune checkpoint (any storage)."""
    import torch

    with checkpoint.as_directory() as d:
        return torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------------------------------------
# the whole search


def run_search(plan: SearchPlan, sink: SearchSink) -> SearchOutcome:
    """All rounds, then the best trial (by validation accuracy) is evaluated once on the test split.

    Resumable: a round whose experiment exists is restored (finished rounds are only read back), a
    round's probe is taken from the sink when it was saved before.

    Raises:
        SearchInterrupted: Ctrl-C (or SIGINT/SIGUSR1) stopped Tune; everything so far is saved.
    """
    s, t0 = plan.settings, time.perf_counter()
    data = plan.dataset
    seed = seed_topology(s, plan.space, data.num_classes)
    seed_state: dict[str, Any] | None = None
    outcomes: list[RoundOutcome] = []
    with active_sink(sink):
        for k in range(1, s.rounds + 1):
            probe = None
            if s.strategy == "hebbian":
                probe = sink.load_probe(k)
                if probe is None:
                    probe = _probe_round(plan, k, seed, seed_state, sink)
            outcome = run_round(plan, k, seed, probe, sink)
            if outcome.best is None or outcome.best_checkpoint is None:
                sink.round_finished(outcome)
                raise HebbnasError(f"round {k}: every trial failed; see trials.csv (status, error)")
            seed = Topology.from_dict(outcome.best_checkpoint["topology"])
            seed_state = outcome.best_checkpoint["state_dict"]
            if s.strategy != "hebbian":  # the same probe + report for the baselines: of their best network
                probe = sink.load_probe(k) or _probe_round(plan, k, seed, seed_state, sink, best_of_round=True)
                outcome = dataclasses.replace(
                    outcome, probe=probe, probed=seed,
                    report_knobs={n: d.default() for n, d in plan.space.derive.items()})
            sink.round_finished(outcome)
            outcomes.append(outcome)
    best_round = max(outcomes, key=lambda o: (float(o.best["val_acc"]), float(o.best["best_val_acc"] or 0)))
    best, ckpt = best_round.best, best_round.best_checkpoint
    test_acc = evaluate_checkpoint(ckpt, data)
    return SearchOutcome(tuple(outcomes), best, ckpt, test_acc, time.perf_counter() - t0)


def _probe_round(plan: SearchPlan, k: int, seed: Topology, seed_state: Mapping[str, Any] | None,
                 sink: SearchSink, best_of_round: bool = False) -> ProbeResult:
    s = plan.settings
    pdata = plan.probe_dataset
    probe_x = pdata.train.x[: s.probe_images].contiguous()
    if seed_state is None:
        train = {**round_spec(plan, k, seed).train, "epochs": s.seed_epochs, "seed": s.seed}
        sink.message(f"round {k}: training the seed {seed.name} ({fmt_macs(seed.macs(plan.space.deploy_input))} MACs) "
                     f"for {s.seed_epochs} epoch(s), then probing {len(probe_x)} images at "
                     f"{s.probe_resolution}x{s.probe_resolution}")
    else:
        train = None
        sink.message(f"round {k}: probing round {k if best_of_round else k - 1}'s best network on {len(probe_x)} "
                     f"images at {s.probe_resolution}x{s.probe_resolution}")
    cpus = max(plan.seed_cpus, s.cpus_per_trial)
    probe, info = _remote_seed_and_probe(cpus, s.gpus_per_trial, seed,
                                         plan.dataset if seed_state is None else None, probe_x,
                                         train=train, state_dict=seed_state, threads=max(1, int(cpus)), seed=s.seed)
    sink.probe_ready(k, probe, seed, info)
    return probe


def evaluate_checkpoint(ckpt: Mapping[str, Any], data: Dataset) -> float:
    """Test accuracy of an export dict's model on the held-out test split (once, after the search)."""
    from hebbnas.model import build
    from hebbnas.train import evaluate

    model = build(Topology.from_dict(ckpt["topology"]), aux=False)
    model.load_state_dict(ckpt["state_dict"])
    return evaluate(model, *data.test)


def summary_table(rows: Sequence[Mapping[str, Any]], best_id: str | None = None, limit: int = 12) -> str:
    """The final table: trials sorted by validation accuracy (errors last)."""
    def key(r: Mapping[str, Any]) -> tuple[float, float]:
        v = r.get("val_acc")
        return (-1.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v), -float(r.get("macs") or 0))

    ordered = sorted(rows, key=key, reverse=True)
    head = f"{'':2}{'trial':<10} {'round':>5} {'MACs':>10} {'params':>10} {'epochs':>6} {'val acc':>8} {'status':<10} {'optuna':<8}"
    out = [head, "-" * len(head)]
    for r in ordered[:limit]:
        mark = "* " if best_id and r.get("trial_id") == best_id else "  "
        macs = fmt_macs(r.get("macs"))
        params = f"{float(r['params']) / 1e6:.2f}M" if r.get("params") not in (None, "") else "-"
        acc = f"{float(r['val_acc']):.4f}" if r.get("val_acc") not in (None, "") else "-"
        out.append(f"{mark}{str(r.get('trial_id')):<10} {r.get('round', ''):>5} {macs:>10} {params:>10} "
                   f"{r.get('epochs', 0):>6} {acc:>8} {str(r.get('status')):<10} {str(r.get('optuna_state') or ''):<8}")
    if len(ordered) > limit:
        out.append(f"  ... {len(ordered) - limit} more in trials.csv")
    return "\n".join(out)


def fmt_macs(v: Any) -> str:
    """1499997728 -> '1.500e9' (four significant digits); '-' when unknown."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "-"
    if not math.isfinite(x) or x <= 0:
        return "-"
    e = int(math.floor(math.log10(x)))
    return f"{x / 10**e:.3f}e{e}"


def format_budget(b: float) -> str:
    """1.5e9 -> '1.5e9' (for run names)."""
    mant, exp = f"{b:.3g}e0".split("e")[:2] if "e" not in f"{b:.3g}" else f"{b:.3g}".split("e")
    return f"{mant}e{int(exp)}"


def versions() -> dict[str, str]:
    """Package versions recorded in config.yaml."""
    import platform

    out = {"python": platform.python_version()}
    for mod in ("torch", "ray", "optuna", "hebbnas"):
        try:
            out[mod] = str(__import__(mod).__version__)
        except Exception:  # noqa: BLE001
            out[mod] = "?"
    return out

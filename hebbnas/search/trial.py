"""One Tune trial: topology -> budget check -> train, reporting validation accuracy and a checkpoint
every epoch. Runs in a Ray worker; what it needs arrives through `tune.with_parameters` (object store).

Failures come in two kinds. A trial whose model raises or whose loss diverges is *final*: the trial
catches it and reports it as its last result (``trial_error``), so Tune never retries it and the
searcher tells Optuna FAIL. A trial lost to the infrastructure (worker killed, out of memory, node lost)
never reaches that handler; Tune sees an actor error and retries it from its last checkpoint, at most
`INFRA_RETRIES` times (`failure_config`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hebbnas import atomic
from hebbnas.errors import HebbnasError, error_line
from hebbnas.trials import (
    CHECKPOINT_FILE,
    EPOCH_ATTR,
    METRIC,
    PRESCREEN_CONFIG,
    REJECTED,
    TRAIN_STATE_FILE,
    TRIAL_ERROR,
)
from hebbnas.strategies import get_strategy, knobs
from hebbnas.topology import Topology, proxy_network

if TYPE_CHECKING:
    from hebbnas.data import Dataset
    from hebbnas.probe import ProbeResult

PRESCREEN_IMAGES = 64
"""Training images a prescreen scores each candidate on."""
INFRA_RETRIES = 2
"""How often Tune restarts a trial whose worker died (from its last checkpoint) before giving up."""


@dataclass(frozen=True)
class RoundSpec:
    """The fixed part of one round, shared by its trials: the seed topology, the budget, the recipe."""

    round: int
    strategy: str
    budget: float
    deploy_input: tuple[int, int, int]
    width_multiple: int
    seed_topology: Topology
    train: dict[str, Any]  # TrainConfig fields except the sampled knobs
    trial_epochs: int  # epochs per trial (ASHA may stop it earlier)
    seed: int
    threads: int
    dataset: str
    resolution: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    proxy_width: float = 1.0  # < 1: trials train topology.narrowed(proxy_width)
    probed_topology: Topology | None = None  # the network the round's probe was taken on (hebbian)
    start_topology: Topology | None = None  # round 1's seed: the space's base fitted to the budget
    prescreen: int = 0  # > 1: score this many candidates without training, train the best
    prescreen_score: str = "naswot_k"
    sampler: Any = None  # the round's define-by-run space (hebbnas.search.searcher.Sampler), for prescreening
    measure_latency: bool = False  # measure each candidate's latency before it trains
    latency_budget: float | None = None  # ms per image at the deploy shape; a slower candidate never trains
    latency_cache: str | None = None  # folder of measurements per topology hash and machine (the run's latency/)


def trial_topology(spec: RoundSpec, probe: ProbeResult | None, config: Mapping[str, Any], name: str) -> Topology:
    """The trial's topology: the strategy's choice from the seed, then fitted to the budget."""
    from hebbnas.derive import fit

    t = get_strategy(spec.strategy).topology(spec.seed_topology, probe, config, probed=spec.probed_topology,
                                             start=spec.start_topology)
    t = t.with_classes(spec.num_classes)
    return fit(t, spec.budget, spec.deploy_input, multiple=spec.width_multiple, name=name)


def train_config(spec: RoundSpec, config: Mapping[str, Any], epochs: int | None = None) -> Any:
    """The trial's TrainConfig: the shared recipe plus the sampled training knobs."""
    from hebbnas.train import TrainConfig

    return TrainConfig.from_dict({**spec.train, **knobs(config, "train"),
                                  "epochs": epochs or spec.trial_epochs, "seed": spec.seed})


def failure_config() -> Any:
    """Tune's failure policy: infrastructure failures are retried (bounded), nothing else reaches it."""
    from ray import tune

    return tune.FailureConfig(max_failures=INFRA_RETRIES)


def run_trial(config: dict[str, Any], *, spec: RoundSpec, dataset: Dataset, probe: ProbeResult | None = None) -> None:
    """The Tune trainable. Resumes from `tune.get_checkpoint()` when Tune restores or retries the trial."""
    run_guarded(lambda: _train_trial(config, spec, dataset, probe), round_=spec.round)


def run_guarded(body: Callable[[], None], round_: int) -> None:
    """Run a trial's body; its own failure becomes its final result, the machine's is left to Tune."""
    from ray import tune

    try:
        body()
    except (MemoryError, KeyboardInterrupt, SystemExit):
        raise  # out of memory is the machine's failure, not the candidate's: Tune may retry it
    except Exception as e:  # noqa: BLE001 - the candidate's own failure (model error, NaN loss): final
        if _is_cuda_oom(e) or _raised_by_ray(e):
            raise
        ctx = tune.get_context()
        tune.report({METRIC: math.nan, EPOCH_ATTR: 0, TRIAL_ERROR: error_line(e), "round": round_,
                     "trial_id": ctx.get_trial_id() or "local"})


def _raised_by_ray(e: BaseException) -> bool:
    """The error came from inside Ray (storage, reporting), not from the candidate's model or loss."""
    tb = e.__traceback__
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and f"{os.sep}ray{os.sep}" in last.tb_frame.f_code.co_filename


def _is_cuda_oom(e: BaseException) -> bool:
    try:
        import torch

        return isinstance(e, torch.cuda.OutOfMemoryError)
    except (ImportError, AttributeError):
        return False


def _train_trial(config: dict[str, Any], spec: RoundSpec, dataset: Dataset, probe: ProbeResult | None) -> None:
    import torch
    from ray import tune

    torch.set_num_threads(spec.threads)
    ctx = tune.get_context()
    trial_id = ctx.get_trial_id() or "local"
    pre: dict[str, Any] = {}
    if spec.prescreen > 1 and tune.get_checkpoint() is None:
        config, pre = prescreen(spec, probe, dataset, config, trial_id)
    elif spec.prescreen > 1:  # a resumed trial continues the candidate it picked, and keeps reporting it
        pre = _resume_metrics(tune.get_checkpoint())
        config = {**config, **json.loads(str(pre.get(PRESCREEN_CONFIG) or "{}"))}
    topology = trial_topology(spec, probe, config, name=f"{spec.strategy}-r{spec.round}-{trial_id}")
    macs, params = topology.macs(spec.deploy_input), topology.params()
    latency = candidate_latency(topology, spec) if spec.measure_latency else {}
    if spec.latency_budget is not None and latency["latency_ms"] > spec.latency_budget:
        tune.report({METRIC: math.nan, EPOCH_ATTR: 0, "round": spec.round, "trial_id": trial_id, "macs": macs,
                     "params": params, "stage": "search", "seed": spec.seed, "topology_hash": topology.hash(),
                     "topology": topology.to_json(indent=None),
                     "node_id": _node_id(), **latency, **pre,
                     REJECTED: f"latency {latency['latency_ms']:.2f} ms > budget {spec.latency_budget:g} ms"})
        return
    cfg = train_config(spec, config)
    meta = {"input": list(spec.deploy_input), "dataset": spec.dataset, "resolution": spec.resolution,
            "mean": list(spec.mean), "std": list(spec.std), "trial_id": trial_id, "strategy": spec.strategy,
            "budget": spec.budget, "round": spec.round, "proxy_width": spec.proxy_width,
            "candidate_topology": topology.to_dict()}
    extra = {"round": spec.round, "stage": "search", "seed": spec.seed, **pre, **latency}
    train_and_report(topology, proxy_network(topology, spec.proxy_width), cfg, dataset, meta, extra,
                     budget=spec.budget, deploy_input=spec.deploy_input)


def train_and_report(topology: Topology, net: Topology, cfg: Any, dataset: Dataset, meta: Mapping[str, Any],
                     extra: Mapping[str, Any], *, budget: float, deploy_input: tuple[int, int, int],
                     test: bool = False) -> None:
    """Train `net` (what trains; `topology` is what the budget counts) inside a Tune trial: one report and
    one checkpoint per epoch, resumed from Tune's checkpoint. Search trials and final-stage units share it.

    With `test`, the last epoch's report also carries the test accuracy (the final stage reports it beside
    validation; nothing chooses by it).
    """
    import torch
    from ray import tune

    from hebbnas.model import build, inference_state_dict
    from hebbnas.train import evaluate, train

    macs = topology.macs(deploy_input)
    if macs > budget:  # backstop: fit guarantees this, a bug must not train an over-budget net
        raise HebbnasError(f"{meta.get('trial_id')}: {macs:,} MACs exceed the budget {budget:,.0f}")
    params = topology.params()
    torch.manual_seed(cfg.seed)
    model = build(net)
    state, best, start = None, 0.0, 0
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            saved = torch.load(Path(d) / TRAIN_STATE_FILE, map_location="cpu", weights_only=True)
        state, best, start = saved["train"], float(saved["best_val_acc"]), int(saved["train"]["epoch"])
        if start >= cfg.epochs and saved.get("metrics"):
            # trained to the end before a kill cut Tune's record short: its last epoch again, so the
            # restored trial finishes whole instead of looking stopped at the epoch Tune last saved
            tune.report(dict(saved["metrics"]))
            return
    node_id = _node_id()
    cpu = time.process_time()

    def on_epoch(r: Any) -> bool:
        nonlocal best, cpu
        best = max(best, r.val_accuracy)
        cpu, cpu_seconds = time.process_time(), time.process_time() - cpu
        metrics = {
            METRIC: r.val_accuracy, "best_val_acc": best, EPOCH_ATTR: r.epoch + 1, "train_loss": r.train_loss,
            "train_acc": r.train_accuracy, "macs": macs, "params": params,
            "topology_hash": topology.hash(), "topology": topology.to_json(indent=None),
            "epoch_seconds": r.seconds, "cpu_seconds": cpu_seconds, "resumed_from": start, "node_id": node_id,
            **extra,
        }
        if test and r.epoch + 1 >= cfg.epochs:
            metrics["test_acc"] = evaluate(model, dataset.test.x, dataset.test.y, cfg.eval_batch_size)
        with tempfile.TemporaryDirectory(prefix="hebbnas-ckpt-") as d:
            export = {"topology": net.to_dict(),
                      "state_dict": {k: v.detach().cpu().contiguous() for k, v in inference_state_dict(model).items()},
                      "metrics": {**meta, METRIC: r.val_accuracy, "best_val_acc": best, "epoch": r.epoch + 1,
                                  "macs": macs, "params": params}}
            torch.save(export, Path(d) / CHECKPOINT_FILE)
            pre = {k: v for k, v in extra.items() if k.startswith("prescreen")}
            torch.save({"train": r.checkpoint(), "best_val_acc": best, "prescreen": pre, "metrics": metrics},
                       Path(d) / TRAIN_STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        return False

    train(model, dataset, cfg, on_epoch=on_epoch, state=state)


def candidate_latency(topology: Topology, spec: RoundSpec) -> dict[str, Any]:
    """The candidate's latency (full width, batch 1, deploy shape) measured where the trial runs, cached per
    topology hash and machine in `spec.latency_cache` when that folder is reachable from here."""
    from hebbnas.latency import device_name, measure

    key = f"{topology.hash()}-{zlib.crc32(f'{device_name(_device())}-{spec.threads}'.encode()):08x}.json"
    cache = Path(spec.latency_cache) / key if spec.latency_cache else None
    if cache is not None and cache.is_file():
        return json.loads(cache.read_text())
    lat = measure(topology, spec.deploy_input, device=str(_device()))
    out = {"latency_ms": round(lat.median_ms, 4), "latency_iqr_ms": round(lat.iqr_ms, 4),
           "latency_runtime": lat.runtime, "latency_threads": lat.threads, "latency_device": lat.device}
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_text(cache, json.dumps(out))
        except OSError:  # another node's folder: measure again next time
            pass
    return out


def _device() -> Any:
    from hebbnas.train import resolve_device

    return resolve_device("auto")


def prescreen(spec: RoundSpec, probe: ProbeResult | None, dataset: Dataset, config: Mapping[str, Any],
              trial_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score `spec.prescreen` candidates without training and return the best one's config.

    Candidate 0 is Optuna's suggestion; the others are drawn at random from the same space (seeded by
    the trial id, so a rerun draws the same). Training knobs stay Optuna's: the score compares
    architectures. Returns the chosen config and the trials.csv fields that record the choice.
    """
    import optuna

    from hebbnas.score import score_candidate

    t0 = time.perf_counter()
    rng_seed = (zlib.crc32(trial_id.encode()) ^ spec.seed) & 0x7FFFFFFF
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=rng_seed))
    train_knobs = {k: v for k, v in config.items() if k.startswith("train.")}
    configs = [dict(config)]
    for _ in range(spec.prescreen - 1):
        t = study.ask()
        spec.sampler(t)
        configs.append({**t.params, **train_knobs})
    x = dataset.train.x[:PRESCREEN_IMAGES]
    scores = []
    for i, cfg in enumerate(configs):
        top = trial_topology(spec, probe, cfg, name=f"prescreen-{i}")
        s = score_candidate(top, x, width=spec.proxy_width, seed=spec.seed, which=[spec.prescreen_score],
                            input_shape=spec.deploy_input)
        scores.append(s.values[spec.prescreen_score])
    pick = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return configs[pick], {"prescreen_pick": pick, "prescreen_score": scores[pick],
                           "prescreen_scores": json.dumps([round(v, 6) for v in scores]),
                           PRESCREEN_CONFIG: json.dumps(configs[pick], sort_keys=True),
                           "prescreen_seconds": round(time.perf_counter() - t0, 3)}


def _resume_metrics(ckpt: Any) -> dict[str, Any]:
    import torch

    with ckpt.as_directory() as d:
        saved = torch.load(Path(d) / TRAIN_STATE_FILE, map_location="cpu", weights_only=True)
    return dict(saved.get("prescreen") or {})


def _node_id() -> str:
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id())
    except Exception:  # noqa: BLE001 - only informative
        return ""


def trial_dirname(trial: Any) -> str:
    """Trial folders are named by trial id, so ``trials.csv`` ids find their Tune folder."""
    return str(trial.trial_id)

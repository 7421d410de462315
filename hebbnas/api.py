"""The Python front door: `hebbnas.search(...)` and `hebbnas.probe(...)`, for a notebook or a script.

They run exactly what `hebbnas search` and `hebbnas probe` run (the commands call them: one path), print
the same progress, write the same folders, and hand back values: a `SearchResult` (the best network with
a loader for its model, the trials and the final stage as pandas DataFrames, the run folder) or a
`ProbeRun` (the derived topology, the probe, the report folder). Bad input raises `HebbnasError`, whose
message is one line; nothing here exits the interpreter.

    import hebbnas
    result = hebbnas.search(budget=1.5e9, smoke=True, out="runs/first")
    result.best.topology, result.best.metrics["test_acc"], result.trials.head()
    model = result.best.load()            # an nn.Module, as hebbnas.load gives it

Keyword options are the settings of a search, named as in config.yaml and the space YAML (the flags
without dashes): the proxy's (`dataset`, `data_dir`, `resolution`, `probe_resolution`, `train_subset`,
`seed_epochs`, `probe_images`, `proxy_width`, `seed`) and the search's (`trials`, `trial_epochs`,
`rounds`, `final_top`, `final_seeds`, `concurrency`, `cpus_per_trial`, ...); None means the space's.
"""

from __future__ import annotations

import dataclasses

import contextlib
import datetime
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from hebbnas import atomic, layout
from hebbnas.errors import HebbnasError, one_line

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from hebbnas.probe import ProbeResult
    from hebbnas.proxy import ProxySettings
    from hebbnas.runfolder import RunFolder
    from hebbnas.search.settings import SearchSettings
    from hebbnas.space import Space
    from hebbnas.topology import Topology

PathLike = Union[str, "os.PathLike[str]"]
OLD_OPTIONS = {"width": "proxy_width", "max_epochs": "trial_epochs"}
"""Keyword options under their old names: still taken, with one line naming the new one."""


# ---------------------------------------------------------------------------------------------
# what comes back


@dataclass(frozen=True)
class BestNetwork:
    """The answer of a search: its full-width topology, its metrics (best/metrics.json: validation and test
    accuracy, MACs at the deploy shape, params, which trial or final-stage unit), and its weights' file."""

    topology: Topology
    metrics: dict[str, Any]
    path: Path  # best/model.pt

    def load(self) -> nn.Module:
        """The trained model, in eval mode (`hebbnas.load` of best/model.pt). With a width proxy these are the
        weights of the narrowed copy that trained in the topology's place (metrics["proxy_width"] < 1)."""
        from hebbnas.export import load

        return load(self.path)


@dataclass(frozen=True)
class SearchResult:
    """A finished search: the best network, the trials (trials.csv), the final stage (final.csv, one row
    per network; None without a final stage) and the run folder (`hebbnas report/export RUN` read it)."""

    run: Path
    best: BestNetwork
    trials: pd.DataFrame
    final: pd.DataFrame | None
    settings: SearchSettings

    @classmethod
    def from_run(cls, run: PathLike) -> SearchResult:
        """The result of a finished run folder (raises HebbnasError for an unfinished or foreign one)."""
        import json

        import pandas as pd

        from hebbnas.layout import BEST_METRICS, BEST_MODEL, BEST_TOPOLOGY, FINAL_CSV, TRIALS_CSV
        from hebbnas.runfolder import RunFolder
        from hebbnas.search.settings import SearchSettings
        from hebbnas.topology import Topology
        from hebbnas.trials import read_trials

        path = Path(run).absolute()
        cfg = RunFolder.read_config(path)
        if not (path / BEST_METRICS).is_file():
            raise HebbnasError(f"{path} has no {BEST_METRICS}: the search did not finish (resume it: "
                               f"hebbnas search --resume {path})")
        best = BestNetwork(Topology.from_json((path / BEST_TOPOLOGY).read_text()),
                           json.loads((path / BEST_METRICS).read_text()), path / BEST_MODEL)
        final = pd.read_csv(path / FINAL_CSV) if (path / FINAL_CSV).is_file() else None
        return cls(run=path, best=best, trials=read_trials(path / TRIALS_CSV), final=final,
                   settings=SearchSettings.from_dict(cfg["settings"], source=f"{path}/config.yaml"))


@dataclass(frozen=True)
class ProbeRun:
    """What `hebbnas.probe` derived: the widths fitted to the budget, the seed network that was probed (its
    proxy-width copy), the probe statistics, the cluster-to-branch report folder and the whole output folder
    (topology.json, seed_topology.json, probe.npz, probe.json, report/)."""

    topology: Topology
    seed_topology: Topology
    probe: ProbeResult
    report: Path
    out: Path
    summary: dict[str, Any] = field(default_factory=dict)  # probe.json: seconds, accuracy, proxy, MACs


# ---------------------------------------------------------------------------------------------
# hebbnas.search


def search(budget: float | str = 1.5e9, space: str | PathLike | Space = "googlenet", strategy: str | None = None,
           out: PathLike | None = None, smoke: bool = False, *, address: str | None = None,
           storage: str | None = None, verbose: bool = False, **options: Any) -> SearchResult:
    """Search Inception widths under `budget` MACs at the space's deploy shape; the run of `hebbnas search`.

    Args:
        budget: MACs per image at the deploy shape (1.5e9 or "1.5e9").
        space: a space name in search_spaces/, a YAML path, or a loaded `hebbnas.space.Space`.
        strategy: how widths are chosen (None: the space's, else tpe).
        out: the run folder to create (None: runs/<strategy>-<budget>-<time> under the working folder).
        smoke: tiny and quick (small train subset, few trials and epochs), as `--smoke`.
        address: join a running Ray cluster ("auto" or host:port); None starts Ray here (and stops it after).
        storage: where Tune keeps its experiments (an absolute path or URI; default RUN/tune).
        verbose: let Ray's own log lines through.
        **options: settings by name (see the module's docstring), e.g. trials=8, proxy_width=0.25.

    Raises:
        HebbnasError: bad input (one line), before any folder exists or Ray starts where it can be.
        SearchInterrupted: the search stopped early (Ctrl-C); `hebbnas search --resume RUN` continues it.
    """
    from hebbnas.space import Space

    opts = {"budget": budget, "strategy": strategy, **_new_names(options)}
    named = None if isinstance(space, Space) else space  # a loaded space is recorded in config.yaml only
    words = ["hebbnas", "search", *_words({"budget": budget, "space": named, **opts, "out": out, "smoke": smoke,
                                           "address": address, "storage": storage})]
    folder = start_search(opts, space=space, out=out, smoke=smoke, address=address, storage=storage,
                          verbose=verbose, argv=words)
    return SearchResult.from_run(folder.path)


def start_search(options: Mapping[str, Any], *, space: str | PathLike | Space | None, out: PathLike | None,
                 smoke: bool, address: str | None, storage: str | None, verbose: bool, argv: Sequence[str],
                 flags: Mapping[str, str] | None = None, started: float | None = None) -> RunFolder:
    """A new search into a new run folder (what `hebbnas search` and `hebbnas.search` both run).

    `options` are settings by name (None: not given) with `budget`; `flags` the spelling a user typed for a
    setting (messages name it); `argv` the command recorded in config.yaml.
    """
    from hebbnas.pipeline import check_budget, load_data, seed_topology
    from hebbnas.progress_bar import wanted
    from hebbnas.runfolder import RunFolder
    from hebbnas.search import resolve_settings
    from hebbnas.space import Space, load_space
    from hebbnas.trials import format_budget

    started = time.perf_counter() if started is None else started
    prepare_ray(address)
    if options.get("budget") is None:
        raise HebbnasError("--budget is required (MACs at the deploy shape, e.g. --budget 1.5e9), or --resume RUN")
    if isinstance(space, Space):
        space_obj, space_name = space, space.name
    else:
        space_name = str(space or "googlenet")
        space_obj = load_space(space_name)
    settings = resolve_settings(space_obj, space_name, options, smoke=smoke, flags=flags)
    check_budget(settings.budget, space_obj, settings.proxy.dataset)  # before the data loads
    if out is not None:
        run = Path(out)
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run = Path("runs") / f"{settings.strategy}-{format_budget(settings.budget)}-{stamp}"
    run = run.absolute()
    if run.exists():
        raise HebbnasError(f"run folder {run} already exists; choose another --out, or --resume {run}")
    where = _storage(storage, run)
    data, probe_data = load_data(settings.proxy, space_obj, progress=wanted())
    start = seed_topology(settings.budget, space_obj, data.num_classes)  # with the data's head: before any folder
    with _ray(address, verbose) as (gcs, local):
        info = _resources(settings)
        folder = RunFolder.create(run, settings=settings, space=space_obj, storage=where, argv=argv,
                                  ray_info={"address": gcs, "local": local, **info})
        plan = _plan(settings, space_obj, where, data, probe_data, info)
        plan.start = start
        _run(plan, folder, started)
    return folder


def resume_search(run: PathLike, *, address: str | None = None, verbose: bool = False,
                  started: float | None = None) -> RunFolder:
    """Continue the killed or interrupted search in `run` with the settings of its config.yaml (older
    layouts read too); a complete run is only summarised again."""
    from hebbnas.pipeline import load_data
    from hebbnas.progress_bar import wanted
    from hebbnas.runfolder import RunFolder
    from hebbnas.search import SearchSettings
    from hebbnas.search.console import Console
    from hebbnas.space import parse_space
    from hebbnas.trials import format_budget

    started = time.perf_counter() if started is None else started
    prepare_ray(address)
    path = Path(run).absolute()
    cfg = RunFolder.read_config(path)
    try:
        settings = SearchSettings.from_dict(cfg["settings"], source=f"{path}/config.yaml")
        space = parse_space(cfg["space"], source=str(cfg.get("space_source", "config.yaml")))
    except (KeyError, TypeError) as e:
        raise HebbnasError(f"{path}/config.yaml is incomplete ({e}); cannot resume") from None
    folder = RunFolder(path, settings)
    if folder.is_complete():
        print(f"{path} is complete (best/metrics.json exists); nothing to resume")
        Console(folder).print_final()
        return folder
    where = folder.storage(cfg)
    data, probe_data = load_data(settings.proxy, space, progress=wanted())
    with _ray(address, verbose) as (gcs, _):
        info = _resources(settings)
        folder.note_resume(gcs)
        print(f"resuming {path} (strategy {settings.strategy}, budget {format_budget(settings.budget)} MACs)", flush=True)
        _run(_plan(settings, space, where, data, probe_data, info), folder, started)
    return folder


def prepare_ray(address: str | None) -> None:
    """The environment Ray reads when it is imported: quiet, and token mode to join a cluster."""
    from hebbnas.search.ray_cluster import client_token_mode, quiet_ray_env

    quiet_ray_env()
    if address or os.environ.get("RAY_ADDRESS"):
        client_token_mode()  # before Ray is imported: it reads the mode then


@contextlib.contextmanager
def _ray(address: str | None, verbose: bool) -> Iterator[tuple[str, bool]]:
    """Start Ray here or join `address` (or RAY_ADDRESS) for the block, after a one-line warning when its
    authentication was turned off; gives the address used and whether it is local. A Ray this started is
    shut down after the block; one the caller had already started is left running."""
    from hebbnas.search.ray_cluster import auth_warning, connect_ray, shutdown_ray

    ray = sys.modules.get("ray")
    ours = not (ray is not None and ray.is_initialized())
    warning = auth_warning()
    if warning:
        print(warning, file=sys.stderr, flush=True)
    try:
        yield connect_ray(address, verbose=verbose), not (address or os.environ.get("RAY_ADDRESS"))
    finally:
        if ours:
            shutdown_ray()


def _resources(settings: SearchSettings) -> dict[str, Any]:
    from hebbnas.search.ray_cluster import check_resources

    return check_resources(settings.cpus_per_trial, settings.gpus_per_trial)


def _plan(settings: SearchSettings, space: Space, storage: str, data: Any, probe_data: Any,
          info: Mapping[str, Any]) -> Any:
    """Torch threads per trial = its CPUs; the seed network may use the CPUs of all concurrent trials."""
    from hebbnas.search import SearchPlan

    seed_cpus = min(float(info.get("max_node_cpus") or 0), settings.cpus_per_trial * settings.concurrency)
    return SearchPlan(settings=settings, space=space, storage=storage, dataset=data, probe_dataset=probe_data,
                      threads=max(1, int(settings.cpus_per_trial)), seed_cpus=seed_cpus)


def _run(plan: Any, folder: RunFolder, started: float) -> None:
    """Run the search into `folder`, printing through the console; best/, the reports and the summary at the
    end. An interruption (Ctrl-C) raises SearchInterrupted naming the folder to resume."""
    from hebbnas.progress_bar import wanted
    from hebbnas.layout import LATENCY_DIR, OPTUNA_JOURNAL
    from hebbnas.search import SearchInterrupted, run_search
    from hebbnas.search.console import Console

    plan.journal = str(folder.path / OPTUNA_JOURNAL)  # optuna-dashboard RUN/optuna.journal shows it live
    plan.latency_cache = str(folder.path / LATENCY_DIR)
    plan.progress = wanted()  # the test evaluation's bar; the seed and trials run as Ray tasks, in Ray's log
    plan.timings["start (imports, data, Ray)"] = time.perf_counter() - started
    console = Console(folder)
    try:
        outcome = run_search(plan, console)
    except (SearchInterrupted, KeyboardInterrupt) as e:
        why = f" ({e})" if str(e) else ""
        raise SearchInterrupted(f"interrupted{why}; resume with: hebbnas search --resume {folder.path}") from None
    with plan.timed("best and reports"):
        finish(folder, outcome, plan)
    folder.write_timings(plan.timings, time.perf_counter() - started)
    console.print_final()


def finish(folder: RunFolder, outcome: Any, plan: Any) -> None:
    """best/ first (it marks the run complete), then each round's report; a report that fails is one
    line, and the run stays complete."""
    from hebbnas.report import write_round_report

    folder.write_best(outcome, plan)
    for where, round_outcome in folder.pending_reports():
        try:
            write_round_report(where, round_outcome, folder.settings, plan.space.deploy_input)
        except Exception as e:  # noqa: BLE001 - best/ is written; the report is an extra
            folder.warn(f"  warning: {where.name} report not written: {one_line(e)}")


def _storage(arg: str | None, run: Path) -> str:
    """Where Tune keeps this run's experiments: RUN/tune, or <--storage>/<run name> (absolute or a URI)."""
    if arg is None:
        return str(run / layout.TUNE_DIR)
    if "://" in arg:
        return f"{arg.rstrip('/')}/{run.name}"
    p = Path(arg).expanduser()
    if not p.is_absolute():
        raise HebbnasError(f"--storage must be an absolute path or a URI (s3://, gs://, ...), got {arg!r}")
    return str(p / run.name)


# ---------------------------------------------------------------------------------------------
# hebbnas.probe


def probe(budget: float | str = 1.5e9, out: PathLike | None = None, space: str | PathLike | Space = "googlenet",
          smoke: bool = False, *, method: str | None = None, threshold: float | None = None, partial: bool = False,
          scale_cut: float | None = None, policy: str | None = None, energy: float | None = None,
          steps: int | None = None, step_share: float | None = None, threads: int = 0, **options: Any) -> ProbeRun:
    """Seed -> train -> probe -> cluster -> derive -> fit, written as a report; the run of `hebbnas probe`.

    The proxy (`options`: dataset, data_dir, resolution, probe_resolution, probe_images, train_subset,
    seed_epochs, proxy_width, seed; None: the space's) is resolved as a search resolves it, and the seed ->
    train -> probe step is the search's own, so this shows what a search's first round would probe.
    `method`, `threshold`, `partial` and `scale_cut` are the clustering policy, `policy` the derivation
    (`hebbnas.derive.ALLOCATIONS`: clusters, split, pca, redundancy) with pca's `energy` and redundancy's
    `steps` and `step_share` (None: `hebbnas.derive.Policy`'s defaults); `threads` the torch CPU threads (0:
    torch's choice). `out` (None:
    runs/probe-<budget>-<time>) must not exist or be empty.

    Raises:
        HebbnasError: bad input (one line), before any data loads where it can be.
    """
    return run_probe(budget, out, space, smoke, method=method, threshold=threshold, partial=partial,
                     scale_cut=scale_cut, policy=policy, energy=energy, steps=steps, step_share=step_share,
                     threads=threads, options=_new_names(options))


def run_probe(budget: float | str, out: PathLike | None, space: str | PathLike | Space, smoke: bool, *,
              method: str | None, threshold: float | None, partial: bool, scale_cut: float | None, threads: int,
              options: Mapping[str, Any], flags: Mapping[str, str] | None = None, policy: str | None = None,
              energy: float | None = None, steps: int | None = None, step_share: float | None = None) -> ProbeRun:
    """`probe` (what `hebbnas probe` and `hebbnas.probe` both run); `flags` the spelling a user typed for an
    option (messages name it)."""
    import json

    from hebbnas.derive import Policy, derive, fit
    from hebbnas.pipeline import check_budget, check_threads, load_data, recipe, seed_and_probe, seed_topology
    from hebbnas.probe import save_probe
    from hebbnas.progress_bar import wanted
    from hebbnas.proxy import parse_budget, resolve_proxy
    from hebbnas.report import write_report
    from hebbnas.runfolder import check_out_folder
    from hebbnas.space import Space, load_space
    from hebbnas.topology import proxy_network
    from hebbnas.trials import format_budget

    b = parse_budget(budget)
    check_threads(threads)
    if out is None:
        out = Path("runs") / f"probe-{format_budget(b)}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    folder = Path(out)
    check_out_folder(folder)
    space_obj = space if isinstance(space, Space) else load_space(space)
    d = Policy()
    pol = Policy(method=method or d.method, threshold=d.threshold if threshold is None else threshold,
                 partial=partial, scale_cut=d.scale_cut if scale_cut is None else scale_cut,
                 allocation=policy or d.allocation, energy=d.energy if energy is None else energy,
                 steps=d.steps if steps is None else steps, step_share=d.step_share if step_share is None else step_share)
    s = resolve_proxy(space_obj, options, smoke=smoke, flags=flags)
    check_budget(b, space_obj, s.dataset)  # a budget below the irreducible cost fails before the data loads
    progress = wanted()  # bars on a terminal; plain lines in a log, a pipe or CI
    data, probe_data = load_data(s, space_obj, progress=progress)
    seed = seed_topology(b, space_obj, data.num_classes)
    deploy = space_obj.deploy_input
    print(_seed_line(seed, s, data.name, deploy), flush=True)
    t0 = time.perf_counter()
    probe_x = probe_data.train.x[: s.probe_images].contiguous()
    train = {**recipe(space_obj, smoke=s.smoke), "epochs": s.seed_epochs, "seed": s.seed}
    probed = proxy_network(seed, s.proxy_width)  # with a width proxy, its narrowed copy trains and is probed
    stats, info = seed_and_probe(probed, data, probe_x, train=train, state_dict=None, threads=threads,
                                 seed=s.seed, progress=progress)
    t1 = time.perf_counter()
    suffix = "hebbian" if pol.allocation in ("clusters", "split") else pol.allocation
    derivation = derive(probed, stats, pol, name=f"{space_obj.base.name}-{suffix}")
    fitted = fit(derivation.topology, b, deploy, multiple=space_obj.width_multiple, name=derivation.topology.name)
    t2 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    save_probe(stats, folder / layout.PROBE_STATS)
    atomic.write_text(folder / layout.PROBE_TOPOLOGY, fitted.to_json())
    atomic.write_text(folder / layout.PROBE_SEED_TOPOLOGY, probed.to_json())
    correlations = {m.name: stats.modules[m.name].correlation(remove_common=pol.partial) for m in probed.modules}
    write_report(folder / layout.PROBE_REPORT, derivation, fitted, correlations, deploy, b,
                 title=f"cluster-to-branch report: {data.name}, budget {b:.4g} MACs")
    summary = {"train_seconds": round(info.get("seed_seconds", 0.0), 2),
               "probe_seconds": round(info["probe_seconds"], 2), "derive_fit_seconds": round(t2 - t1, 3),
               "total_seconds": round(time.perf_counter() - t0, 2), "seed_val_accuracy": info.get("seed_val_acc"),
               "resolution": s.resolution, "probe_resolution": s.probe_resolution,
               "probe_images": info["probe_images"], "seed_epochs": s.seed_epochs, "proxy_width": s.proxy_width,
               "budget": b, "input": list(deploy), "macs": fitted.macs(deploy), "params": fitted.params(),
               "policy": dataclasses.asdict(pol), "settings": s.to_dict()}
    atomic.write_text(folder / layout.PROBE_SUMMARY, json.dumps(summary, indent=2))
    return ProbeRun(topology=fitted, seed_topology=probed, probe=stats, report=folder / layout.PROBE_REPORT, out=folder,
                    summary=summary)


def _seed_line(seed: Topology, s: ProxySettings, data_name: str, deploy: tuple[int, int, int]) -> str:
    proxy = f" as its {s.proxy_width:g}-width copy" if s.proxy_width < 1 else ""
    return (f"seed {seed.name}: MACs {seed.macs(deploy):.4g} at {'x'.join(map(str, deploy))}, training{proxy} "
            f"{s.seed_epochs} epoch(s) on {data_name} at {s.resolution}px, probing {s.probe_images} images at "
            f"{s.probe_resolution}px")


# ---------------------------------------------------------------------------------------------
# keyword options


def _new_names(options: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword options with old names (`width`, `max_epochs`) under the new ones, each one line."""
    from hebbnas.renames import say_renamed

    out = dict(options)
    for old, new in OLD_OPTIONS.items():
        if old in out:
            say_renamed("", f"{old}=", f"{new}=")
            value = out.pop(old)
            out.setdefault(new, value)
    return out


def _words(options: Mapping[str, Any]) -> list[str]:
    """The `hebbnas search` command line of keyword options (config.yaml records it: rerunnable)."""
    from hebbnas.proxy import flag

    words: list[str] = []
    for k, v in options.items():
        if v is None or v is False:
            continue
        if v is True:
            words.append(flag(k))
        elif isinstance(v, (list, tuple)):
            words += [flag(k), ",".join(map(str, v))]
        else:
            words += [flag(k), _number(v) if isinstance(v, float) else str(v)]
    return words


def _number(v: float) -> str:
    """The shortest spelling that reads back as `v`: 3e8, 1.5e9, 0.25, 123456789."""
    import re

    text = next(t for t in (f"{v:.{p}g}" for p in range(1, 18)) if float(t) == v)
    return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", text)

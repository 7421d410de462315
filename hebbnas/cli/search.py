"""`hebbnas search`: parse, resolve the settings, start Ray, run the search into a run folder, print."""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hebbnas.cli.common import STARTED, add_alias, add_data_options, add_out_option, typed_flags
from hebbnas.errors import HebbnasError

SEARCH_OPTIONS = ("budget", "space", "dataset", "data_dir", "trials", "max_epochs", "seed_epochs", "rounds", "strategy",
                  "seed", "out", "smoke", "cpus_per_trial", "gpus_per_trial", "concurrency", "storage", "width",
                  "prescreen", "compile", "latency_budget", "objectives", "final_top", "final_seeds")
"""Options that define a search; `--resume` takes them from the run's config.yaml instead."""


HELP = "search Inception widths under a MAC budget with Ray Tune + Optuna; writes a run folder"


def register(sub: argparse._SubParsersAction) -> None:
    from hebbnas.strategies import get_strategy, names

    s = sub.add_parser(
        "search", help=HELP,
        description="Search GoogLeNet Inception widths under a hard MAC budget: Ray Tune trials, Optuna "
        "sampling, ASHA early stopping. Writes runs/<name>/ (config.yaml, probe/, report/, trials.csv, best/).",
    )
    s.add_argument("--budget", default=None, help="MACs at the deploy shape (e.g. 1.5e9); required unless --resume")
    s.add_argument("--space", default=None, help="search space name in search_spaces/ or a YAML path (default googlenet)")
    s.add_argument("--strategy", default=None, choices=names(),
                   help=f"how widths are chosen: {', '.join(names())} (default tpe, chosen by the equal-compute "
                   "comparison; a space's search.strategy overrides it)")
    add_data_options(s)
    s.add_argument("--trials", type=int, default=None, help="total number of trials (shared by the rounds)")
    s.add_argument("--trial-epochs", dest="max_epochs", type=int, default=None,
                   help="maximum epochs per trial (ASHA may stop earlier; default: the space's search.max_epochs)")
    add_alias(s, "--epochs", "max_epochs", int)
    s.add_argument("--seed-epochs", type=int, default=None,
                   help="epochs the seed network trains before it is probed (default: the space's proxy.seed_epochs)")
    multi = ", ".join(n for n in names() if get_strategy(n).multi_round)
    s.add_argument("--rounds", type=int, default=None, help=f"rounds ({multi}): the best net of a round is re-probed")
    s.add_argument("--seed", type=int, default=None, help="seeds data split, initialisation and Optuna (default 0)")
    s.add_argument("--proxy-width", dest="width", type=float, default=None,
                   help="width proxy: trials and the seed train each candidate's narrowed copy, e.g. 0.25; the "
                   "budget still counts the full-width topology (default: the space's proxy.width, 1)")
    add_alias(s, "--width", "width", float)
    add_out_option(s, "run folder to create (default runs/<strategy>-<budget>-<time>)")
    s.add_argument("--prescreen", type=int, default=None, metavar="N",
                   help="each trial scores N candidates without training (the space's search.prescreen_score, "
                   "default naswot_k, the best on the zoo) and trains the best-scoring one (default 0: off)")
    s.add_argument("--resume", default=None, metavar="RUN", help="continue the killed or interrupted search in RUN")
    s.add_argument("--smoke", action="store_true", help="tiny and quick: small train subset, few trials and epochs")
    s.add_argument("--compile", action="store_true", default=None, help="torch.compile every training forward "
                   "(the seed's and each trial's): minutes of compiling per network, so it pays only for long trials")
    s.add_argument("--latency-budget", type=float, default=None, metavar="MS",
                   help="milliseconds per image (batch 1) at the deploy shape, measured where each trial runs before "
                   "it trains: a slower candidate never trains, and Optuna learns the boundary (its constraints)")
    s.add_argument("--objectives", default=None, metavar="LIST",
                   help="accuracy (default), or accuracy plus any of latency, macs, params (e.g. accuracy,latency): "
                   "Optuna's multi-objective search; best/pareto.csv lists every non-dominated trial")
    s.add_argument("--final-top", type=int, default=None, metavar="K",
                   help="the final stage: the top K distinct networks of the search and the control (the paper's "
                   "widths at the same budget) retrain on paired seeds at the space's final fidelity, and the answer "
                   "is chosen there (default 2; 0 skips it: the search's best trial is the answer)")
    s.add_argument("--final-seeds", type=int, default=None, metavar="S",
                   help="paired seeds of the final stage (default 2); a finalist replaces the control only when its "
                   "paired difference on validation has a t interval above zero (or above the space's final.margin)")
    s.add_argument("--address", default=None, help="connect to a running Ray cluster (auto, or host:port); "
                   "RAY_ADDRESS works too. Default: start Ray on this machine")
    s.add_argument("--cpus-per-trial", type=float, default=None, help="CPUs per trial = its torch threads (default from the space: 1)")
    s.add_argument("--gpus-per-trial", type=float, default=None, help="GPUs per trial (default 0)")
    s.add_argument("--concurrency", type=int, default=None, help="trials running at once (default from the space: 2)")
    s.add_argument("--storage", default=None, help="where Ray Tune keeps experiments and checkpoints: an absolute "
                   "path or URI every node can reach (default RUN/tune)")
    s.add_argument("--verbose", action="store_true", help="let Ray's own log lines through")
    s.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    """Run (or resume) a search and print the summary; errors are HebbnasError (one line, exit 2)."""
    from hebbnas.search.ray_cluster import client_token_mode, quiet_ray_env

    quiet_ray_env()
    if args.address or os.environ.get("RAY_ADDRESS"):
        client_token_mode()  # before Ray is imported: it reads the mode then
    if args.resume:
        return _resume(args)
    return _fresh(args)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "budget": args.budget, "strategy": args.strategy, "dataset": args.dataset, "data_dir": args.data_dir,
        "trials": args.trials, "max_epochs": args.max_epochs, "seed_epochs": args.seed_epochs, "rounds": args.rounds,
        "seed": args.seed,
        "width": args.width, "prescreen": args.prescreen, "cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial, "concurrency": args.concurrency,
        "compile": args.compile, "latency_budget": args.latency_budget, "objectives": args.objectives,
        "final_top": args.final_top, "final_seeds": args.final_seeds,
    }


def _typed(argv: list[str]) -> dict[str, str]:
    """The spellings the user typed for the options that have an old one (errors name what was typed)."""
    return typed_flags(argv, {"max_epochs": ("--trial-epochs", "--epochs"), "width": ("--proxy-width", "--width")})


def _fresh(args: argparse.Namespace) -> int:
    from hebbnas.pipeline import check_budget, load_data, seed_topology
    from hebbnas.progress_bar import wanted
    from hebbnas.runfolder import RunFolder
    from hebbnas.search import resolve_settings
    from hebbnas.trials import format_budget
    from hebbnas.search.ray_cluster import check_resources, shutdown_ray
    from hebbnas.space import load_space

    if args.budget is None:
        raise HebbnasError("--budget is required (MACs at the deploy shape, e.g. --budget 1.5e9), or --resume RUN")
    space_name = args.space or "googlenet"
    space = load_space(space_name)
    settings = resolve_settings(space, space_name, _options(args), smoke=args.smoke, flags=_typed(getattr(args, "argv", sys.argv[1:])))
    check_budget(settings.budget, space, settings.dataset)  # before the data loads
    if args.out:
        run = Path(args.out)
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run = Path("runs") / f"{settings.strategy}-{format_budget(settings.budget)}-{stamp}"
    run = run.absolute()
    if run.exists():
        raise HebbnasError(f"run folder {run} already exists; choose another --out, or --resume {run}")
    storage = _storage(args.storage, run)
    data, probe_data = load_data(settings.proxy, space, progress=wanted())
    start = seed_topology(settings.budget, space, data.num_classes)  # with the data's head: before any folder
    address = _connect(args)
    try:
        info = check_resources(settings.cpus_per_trial, settings.gpus_per_trial)
        local = not (args.address or os.environ.get("RAY_ADDRESS"))
        folder = RunFolder.create(run, settings=settings, space=space, storage=storage, argv=sys.argv,
                                  ray_info={"address": address, "local": local, **info})
        plan = _plan(settings, space, storage, data, probe_data, info)
        plan.start = start
        return _run(plan, folder)
    finally:
        shutdown_ray()


def _connect(args: argparse.Namespace) -> str:
    """Start or join Ray, after a one-line warning when its authentication was turned off."""
    from hebbnas.search.ray_cluster import auth_warning, connect_ray

    warning = auth_warning()
    if warning:
        print(warning, file=sys.stderr, flush=True)
    return connect_ray(args.address, verbose=args.verbose)


def _plan(settings: Any, space: Any, storage: str, data: Any, probe_data: Any, info: Mapping[str, Any]) -> Any:
    """Torch threads per trial = its CPUs; the seed network may use the CPUs of all concurrent trials."""
    from hebbnas.search import SearchPlan

    seed_cpus = min(float(info.get("max_node_cpus") or 0), settings.cpus_per_trial * settings.concurrency)
    return SearchPlan(settings=settings, space=space, storage=storage, dataset=data, probe_dataset=probe_data,
                      threads=max(1, int(settings.cpus_per_trial)), seed_cpus=seed_cpus)


def _resume(args: argparse.Namespace) -> int:
    from hebbnas.cli.console import Console
    from hebbnas.pipeline import load_data
    from hebbnas.progress_bar import wanted
    from hebbnas.runfolder import RunFolder
    from hebbnas.search import SearchSettings
    from hebbnas.search.ray_cluster import check_resources, shutdown_ray
    from hebbnas.search.settings import flag
    from hebbnas.space import parse_space
    from hebbnas.trials import format_budget

    given = [flag(k) for k in SEARCH_OPTIONS if getattr(args, k, None) not in (None, False)]
    if given:
        raise HebbnasError(f"--resume continues a run with the settings in its config.yaml; drop {', '.join(given)}")
    run = Path(args.resume).absolute()
    cfg = RunFolder.read_config(run)
    try:
        settings = SearchSettings.from_dict(cfg["settings"])
        space = parse_space(cfg["space"], source=str(cfg.get("space_source", "config.yaml")))
    except (KeyError, TypeError) as e:
        raise HebbnasError(f"{run}/config.yaml is incomplete ({e}); cannot resume") from None
    folder = RunFolder(run, settings)
    if folder.is_complete():
        print(f"{run} is complete (best/metrics.json exists); nothing to resume")
        Console(folder).print_final()
        return 0
    storage = folder.storage(cfg)
    data, probe_data = load_data(settings.proxy, space, progress=wanted())
    address = _connect(args)
    try:
        info = check_resources(settings.cpus_per_trial, settings.gpus_per_trial)
        folder.note_resume(address)
        print(f"resuming {run} (strategy {settings.strategy}, budget {format_budget(settings.budget)} MACs)", flush=True)
        return _run(_plan(settings, space, storage, data, probe_data, info), folder)
    finally:
        shutdown_ray()


def _run(plan: Any, folder: Any) -> int:
    """Run the search into `folder`, printing through the console; the summary at the end."""
    from hebbnas.cli.console import Console
    from hebbnas.progress_bar import wanted
    from hebbnas.runfolder import LATENCY_DIR, OPTUNA_JOURNAL
    from hebbnas.search import SearchInterrupted, run_search

    plan.journal = str(folder.path / OPTUNA_JOURNAL)  # optuna-dashboard RUN/optuna.journal shows it live
    plan.latency_cache = str(folder.path / LATENCY_DIR)
    plan.progress = wanted()  # the test evaluation's bar; the seed and trials run as Ray tasks, in Ray's log
    plan.timings["start (imports, data, Ray)"] = time.perf_counter() - STARTED
    console = Console(folder)
    try:
        outcome = run_search(plan, console)
    except (SearchInterrupted, KeyboardInterrupt) as e:
        why = f" ({e})" if str(e) else ""
        print(f"hebbnas search: interrupted{why}; resume with: hebbnas search --resume {folder.path}",
              file=sys.stderr, flush=True)
        return 130
    with plan.timed("best and reports"):
        finish(folder, outcome, plan)
    folder.write_timings(plan.timings, time.perf_counter() - STARTED)
    console.print_final()
    return 0


def finish(folder: Any, outcome: Any, plan: Any) -> None:
    """best/ first (it marks the run complete), then each round's report; a report that fails is one
    line, and the run stays complete."""
    from hebbnas.report import write_round_report

    folder.write_best(outcome, plan)
    for where, round_outcome in folder.pending_reports():
        try:
            write_round_report(where, round_outcome, folder.settings, plan.space.deploy_input)
        except Exception as e:  # noqa: BLE001 - best/ is written; the report is an extra
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            folder.warn(f"  warning: {where.name} report not written: {type(e).__name__}: {first}")


def _storage(arg: str | None, run: Path) -> str:
    """Where Tune keeps this run's experiments: RUN/tune, or <--storage>/<run name> (absolute or a URI)."""
    if arg is None:
        return str(run / "tune")
    if "://" in arg:
        return f"{arg.rstrip('/')}/{run.name}"
    p = Path(arg).expanduser()
    if not p.is_absolute():
        raise HebbnasError(f"--storage must be an absolute path or a URI (s3://, gs://, ...), got {arg!r}")
    return str(p / run.name)

"""`hebbnas search`: parse, then run (or resume) the search through the Python front door
(`hebbnas.api.start_search` / `resume_search`, what `hebbnas.search(...)` runs): one path for both."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hebbnas.cli.common import STARTED, add_out_option, add_proxy_options, proxy_options, typed_flags
from hebbnas.errors import HebbnasError

HELP = "search Inception widths under a MAC budget with Ray Tune + Optuna; writes a run folder"


def register(sub: argparse._SubParsersAction) -> None:
    from hebbnas.objectives import names as objective_names
    from hebbnas.strategies import get_strategy, names

    s = sub.add_parser(
        "search", help=HELP,
        description="Search GoogLeNet Inception widths under a hard MAC budget: Ray Tune trials, Optuna "
        "sampling, ASHA early stopping. Writes runs/<name>/ (config.yaml, probe/, report/, trials.csv, best/).",
    )
    s.add_argument("--budget", default=None, help="MACs at the deploy shape (e.g. 1.5e9); required unless --resume")
    s.add_argument("--space", default=None, help="search space name in search_spaces/ or a YAML path (default googlenet)")
    s.add_argument("--strategy", default=None, choices=names(),
                   help=f"how widths are chosen: {', '.join(names())} (default reallocate, chosen by "
                   "confirmed winners, analysis/results/finals.md; a space's search.strategy overrides it)")
    s.add_argument("--trials", type=int, default=None, help="total number of trials (shared by the rounds)")
    s.add_argument("--trial-epochs", type=int, default=None,
                   help="maximum epochs per trial (ASHA may stop earlier; default: the space's search.trial_epochs)")
    multi = ", ".join(n for n in names() if get_strategy(n).multi_round)
    s.add_argument("--rounds", type=int, default=None, help=f"rounds ({multi}): the best net of a round is re-probed (default 1; "
                   "reallocate: its start, then rounds of up to 4 moves)")
    add_proxy_options(s, "search")
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
                   "it trains: a slower candidate never trains, and Optuna learns the boundary (its constraints). One "
                   "measurement per candidate: on the 2-core development machine one network's batch-1 latency moved "
                   "1.1-1.3x between passes (docs/latency.md); `hebbnas show NAME --latency` says how much here")
    s.add_argument("--objectives", default=None, metavar="LIST",
                   help=f"accuracy (default), or accuracy plus any of {', '.join(objective_names()[1:])} "
                   "(e.g. accuracy,latency): "
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
    from hebbnas.api import resume_search, start_search
    from hebbnas.search import SearchInterrupted

    try:
        if args.resume:
            given = [flag for key, flag in _search_flags(args).items() if getattr(args, key, None) not in (None, False)]
            if given:
                raise HebbnasError(f"--resume continues a run with the settings in its config.yaml; drop {', '.join(given)}")
            resume_search(args.resume, address=args.address, verbose=args.verbose, started=STARTED)
        else:
            start_search(_options(args), space=args.space, out=args.out, smoke=args.smoke, address=args.address,
                         storage=args.storage, verbose=args.verbose, argv=sys.argv, flags=typed_flags(args),
                         started=STARTED)
    except SearchInterrupted as e:
        print(f"hebbnas search: {e}", file=sys.stderr, flush=True)
        return 130
    return 0


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (None: not given), by name, with the budget."""
    from hebbnas.search.settings import SEARCH_FIELDS

    return {"budget": args.budget, **proxy_options(args), **{k: getattr(args, k, None) for k in SEARCH_FIELDS}}


def _search_flags(args: argparse.Namespace) -> dict[str, str]:
    """Options that define a search (`--resume` takes them from the run's config.yaml instead), by dest."""
    from hebbnas.proxy import flag

    keys = [*_options(args), "space", "out", "smoke", "storage"]
    return {k: typed_flags(args).get(k, flag(k)) for k in keys}

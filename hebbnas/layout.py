"""Where each file lives: the run folder of `hebbnas search`, the folder of `hebbnas train --out` and the
folder of `hebbnas probe --out`. Names only, so every reader and writer spells a path one way.

    RUN/config.yaml                 command, resolved settings, space, seed, versions, Ray address, storage
    RUN/probe/round-K.npz           probe statistics of round K (+ round-K.topology.json, the probed network)
    RUN/report/round-K/             cluster-to-branch report of round K (report.md, report.json, CSVs, plots/)
    RUN/trials.csv                  one row per trial, rewritten as trials finish
    RUN/trials/<id>/checkpoint.pt   each trial's last checkpoint (export format)
    RUN/tune/round-K/               Ray Tune's experiment (unless --storage puts it elsewhere)
    RUN/optuna.journal              the Optuna studies (one per round, `round-K`): `optuna-dashboard RUN/optuna.journal`
    RUN/tune/final/                 the final stage's Tune experiment (finalists and the control on paired seeds)
    RUN/final.csv                   the final stage per network: accuracies, paired difference to the control
    RUN/best/                       topology.json, model.pt, metrics.json (written last: marks the run complete)
    RUN/export/                     what `hebbnas export RUN` writes by default

    TRAIN/                          `hebbnas train --out`: model.pt, topology.json, metrics.json (as RUN/best/)

    PROBE/                          `hebbnas probe --out`: topology.json (derived and fitted), seed_topology.json
                                    (the network probed), probe.npz, probe.json (summary), report/

Which module writes what: `hebbnas.runfolder` the run folder, `hebbnas.cli.train` a train folder,
`hebbnas.api.run_probe` a probe folder, `hebbnas.report` a report folder.
"""

from __future__ import annotations

# -- a trained network: RUN/best/ and a train folder hold the same three files ------------------------
MODEL = "model.pt"
TOPOLOGY = "topology.json"
METRICS = "metrics.json"

# -- a report folder ---------------------------------------------------------------------------------
REPORT_MD = "report.md"
REPORT_JSON = "report.json"
HTML_REPORT = "report.html"
"""The report page of a run or a probe folder (`hebbnas report RUN --html`)."""

# -- the run folder ---------------------------------------------------------------------------------
CONFIG = "config.yaml"
TRIALS_CSV = "trials.csv"
TRIALS_DIR = "trials"
PROBE_DIR = "probe"
REPORT_DIR = "report"
TUNE_DIR = "tune"
OPTUNA_JOURNAL = "optuna.journal"
"""Optuna JournalStorage file of the search's studies (study `round-K` per round), read live by optuna-dashboard."""
BEST_DIR = "best"
EXPORT_DIR = "export"
BEST_MODEL = f"{BEST_DIR}/{MODEL}"
BEST_METRICS = f"{BEST_DIR}/{METRICS}"
BEST_TOPOLOGY = f"{BEST_DIR}/{TOPOLOGY}"
FINAL_CSV = "final.csv"  # the final stage per network: mean validation/test accuracy, paired difference to the control
TIMINGS = "timings.json"  # where the search's wall time went, per phase
LATENCY_DIR = "latency"  # latency measurements per topology hash and machine (--latency-budget, --objectives)
PARETO = f"{BEST_DIR}/pareto.csv"  # with several --objectives: every non-dominated trial


def round_name(k: int | str) -> str:
    """``round-K``: round K's Tune experiment, Optuna study, probe file stem and report folder."""
    return f"round-{k}"


def probe_file(k: int) -> str:
    """Round K's probe statistics, relative to the run."""
    return f"{PROBE_DIR}/{round_name(k)}.npz"


def probed_topology_file(k: int) -> str:
    """The network round K probed, beside its statistics, relative to the run."""
    return f"{PROBE_DIR}/{round_name(k)}.{TOPOLOGY}"


def round_report_dir(k: int) -> str:
    """Round K's cluster-to-branch report folder, relative to the run."""
    return f"{REPORT_DIR}/{round_name(k)}"


# -- the probe folder (`hebbnas probe --out`) ----------------------------------------------------------
PROBE_TOPOLOGY = TOPOLOGY  # the derived topology, fitted to the budget
PROBE_SEED_TOPOLOGY = "seed_topology.json"  # the network that was trained and probed
PROBE_STATS = "probe.npz"
PROBE_SUMMARY = "probe.json"  # timings, settings, policy, MACs and params of the derived topology
PROBE_REPORT = REPORT_DIR

"""`hebbnas search`: the command, the run folder it writes, and its progress output.

The search itself (`hebbnas.search`) hands everything it produces to a `RunFolder` (the `SearchSink`),
which is the only place that writes the run folder:

    runs/<name>/config.yaml          resolved command line, space, settings, versions, Ray address
    runs/<name>/probe/round-K.npz    probe statistics of round K (hebbian)
    runs/<name>/report/round-K/      cluster-to-branch report of round K
    runs/<name>/trials.csv           one row per trial, rewritten as trials finish
    runs/<name>/trials/<id>/checkpoint.pt   each trial's last checkpoint (export format)
    runs/<name>/tune/round-K/        Ray Tune's experiment (unless --storage puts it elsewhere)
    runs/<name>/best/                topology.json, model.pt, metrics.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hebbnas.errors import HebbnasError

SEARCH_OPTIONS = ("budget", "space", "dataset", "data_dir", "trials", "epochs", "rounds", "strategy", "seed",
                  "out", "smoke", "cpus_per_trial", "gpus_per_trial", "concurrency", "storage")
"""Options that define a search; `--resume` takes them from the run's config.yaml instead."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `search` command to the `hebbnas` parser (called by `hebbnas.cli._register_extra`)."""
    s = sub.add_parser(
        "search",
        help="search Inception widths under a MAC budget with Ray Tune + Optuna; writes a run folder",
        description="Search GoogLeNet Inception widths under a hard MAC budget: Ray Tune trials, Optuna "
        "sampling, ASHA early stopping. Writes runs/<name>/ (config.yaml, probe/, report/, trials.csv, best/).",
    )
    s.add_argument("--budget", default=None, help="MACs at the deploy shape (e.g. 1.5e9); required unless --resume")
    s.add_argument("--space", default=None, help="search space name in search_spaces/ or a YAML path (default googlenet)")
    s.add_argument("--strategy", default=None, help="hebbian (default), random or paper")
    s.add_argument("--dataset", default=None, help="proxy dataset (default from the space: digits)")
    s.add_argument("--data-dir", default=None, help="directory of the dataset's files (not needed for digits)")
    s.add_argument("--trials", type=int, default=None, help="total number of trials (shared by the rounds)")
    s.add_argument("--epochs", type=int, default=None, help="maximum epochs per trial (ASHA may stop earlier)")
    s.add_argument("--rounds", type=int, default=None, help="hebbian rounds: the best net of a round is re-probed")
    s.add_argument("--seed", type=int, default=None, help="seeds data split, initialisation and Optuna (default 0)")
    s.add_argument("--out", default=None, help="run folder to create (default runs/<strategy>-<budget>-<time>)")
    s.add_argument("--resume", default=None, metavar="RUN", help="continue the killed or interrupted search in RUN")
    s.add_argument("--smoke", action="store_true", help="tiny and quick: small train subset, few trials and epochs")
    s.add_argument("--address", default=None, help="connect to a running Ray cluster (auto, or host:port); "
                   "RAY_ADDRESS works too. Default: start Ray on this machine")
    s.add_argument("--cpus-per-trial", type=float, default=None, help="CPUs per trial = its torch threads (default from the space: 1)")
    s.add_argument("--gpus-per-trial", type=float, default=None, help="GPUs per trial (default 0)")
    s.add_argument("--concurrency", type=int, default=None, help="trials running at once (default from the space: 2)")
    s.add_argument("--storage", default=None, help="where Ray Tune keeps experiments and checkpoints: an absolute "
                   "path or URI every node can reach (default RUN/tune)")
    s.add_argument("--verbose", action="store_true", help="let Ray's own log lines through")
    s.set_defaults(func=cmd_search)


# ---------------------------------------------------------------------------------------------
# the command


def _quiet_ray_env(local: bool) -> None:
    """Environment Ray reads at import/start: no usage stats, no AIR banner, no snapshot warnings."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if local:
        # a Ray started here serves this process only; a real cluster sets RAY_AUTH_MODE=token itself
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def cmd_search(args: argparse.Namespace) -> int:
    """Run (or resume) a search and print the summary; errors are HebbnasError (one line, exit 2)."""
    local = not (args.address or os.environ.get("RAY_ADDRESS"))
    _quiet_ray_env(local)
    if args.resume:
        return _resume(args)
    return _fresh(args)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "budget": args.budget, "strategy": args.strategy, "dataset": args.dataset, "data_dir": args.data_dir,
        "trials": args.trials, "max_epochs": args.epochs, "rounds": args.rounds, "seed": args.seed,
        "cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial, "concurrency": args.concurrency,
    }


def _fresh(args: argparse.Namespace) -> int:
    from hebbnas import search
    from hebbnas.space import load_space

    if args.budget is None:
        raise HebbnasError("--budget is required (MACs at the deploy shape, e.g. --budget 1.5e9), or --resume RUN")
    space_name = args.space or "googlenet"
    space = load_space(space_name)
    settings = search.resolve_settings(space, space_name, _options(args), smoke=args.smoke)
    if args.out:
        run = Path(args.out)
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run = Path("runs") / f"{settings.strategy}-{search.format_budget(settings.budget)}-{stamp}"
    run = run.absolute()
    if run.exists():
        raise HebbnasError(f"run folder {run} already exists; choose another --out, or --resume {run}")
    storage = _storage(args.storage, run)
    data, probe_data = search.load_data(settings, space)
    search.seed_topology(settings, space, data.num_classes)  # the budget must fit the base: fail before any folder
    address = search.connect_ray(args.address, verbose=args.verbose)
    try:
        info = search.check_resources(settings.cpus_per_trial, settings.gpus_per_trial)
        folder = RunFolder.create(run, settings=settings, space=space, storage=storage, argv=sys.argv,
                                  ray_info={"address": address, "local": not (args.address or os.environ.get("RAY_ADDRESS")),
                                            **info})
        plan = _plan(settings, space, storage, data, probe_data, info)
        return _run(plan, folder)
    finally:
        _shutdown_ray()


def _plan(settings: Any, space: Any, storage: str, data: Any, probe_data: Any, info: Mapping[str, Any]) -> Any:
    """Torch threads per trial = its CPUs; the seed network may use the CPUs of all concurrent trials."""
    from hebbnas.search import SearchPlan

    seed_cpus = min(float(info.get("max_node_cpus") or 0), settings.cpus_per_trial * settings.concurrency)
    return SearchPlan(settings=settings, space=space, storage=storage, dataset=data, probe_dataset=probe_data,
                      threads=max(1, int(settings.cpus_per_trial)), seed_cpus=seed_cpus)


def _resume(args: argparse.Namespace) -> int:
    from hebbnas import search
    from hebbnas.space import parse_space

    given = [f"--{k.replace('_', '-')}" for k in SEARCH_OPTIONS
             if getattr(args, k, None) not in (None, False)]
    if given:
        raise HebbnasError(f"--resume continues a run with the settings in its config.yaml; drop {', '.join(given)}")
    run = Path(args.resume).absolute()
    cfg = RunFolder.read_config(run)
    try:
        settings = search.SearchSettings.from_dict(cfg["settings"])
        space = parse_space(cfg["space"], source=str(cfg.get("space_source", "config.yaml")))
        storage = str(cfg["storage"])
    except (KeyError, TypeError) as e:
        raise HebbnasError(f"{run}/config.yaml is incomplete ({e}); cannot resume") from None
    folder = RunFolder(run, settings)
    if (run / "best" / "metrics.json").is_file():
        print(f"{run} is complete (best/metrics.json exists); nothing to resume")
        folder.print_final()
        return 0
    data, probe_data = search.load_data(settings, space)
    address = search.connect_ray(args.address, verbose=args.verbose)
    try:
        info = search.check_resources(settings.cpus_per_trial, settings.gpus_per_trial)
        folder.note_resume(address)
        print(f"resuming {run} (strategy {settings.strategy}, budget {_fmt_budget(settings.budget)} MACs)", flush=True)
        plan = _plan(settings, space, storage, data, probe_data, info)
        return _run(plan, folder)
    finally:
        _shutdown_ray()


def _run(plan: Any, folder: RunFolder) -> int:
    from hebbnas import search

    try:
        outcome = search.run_search(plan, folder)
    except search.SearchInterrupted as e:
        print(f"hebbnas search: interrupted ({e}); resume with: hebbnas search --resume {folder.path}",
              file=sys.stderr, flush=True)
        return 130
    except KeyboardInterrupt:
        print(f"hebbnas search: interrupted; resume with: hebbnas search --resume {folder.path}",
              file=sys.stderr, flush=True)
        return 130
    folder.write_best(outcome, plan)
    folder.print_final()
    return 0


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


def _shutdown_ray() -> None:
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except Exception:  # noqa: BLE001 - best effort on the way out
        pass


# ---------------------------------------------------------------------------------------------
# the run folder (the SearchSink)


LEAD_COLUMNS = ("trial_id", "round", "strategy", "status", "optuna_state", "epochs", "val_acc", "best_val_acc",
                "macs", "params", "topology_hash")
TAIL_COLUMNS = ("node_id", "error", "topology")


class RunFolder:
    """Writes one run folder and prints the progress table; implements `hebbnas.search.SearchSink`."""

    def __init__(self, path: Path, settings: Any, out: Any = None) -> None:
        self.path = Path(path)
        self.settings = settings
        self.out = out or sys.stdout
        self.rows: dict[str, dict[str, Any]] = {}
        self._macs: dict[str, float] = {}
        csv = self.path / "trials.csv"
        if csv.is_file():
            from hebbnas.search import read_trials

            try:
                df = read_trials(csv)
                self.rows = {str(r["trial_id"]): {k: _nan_to_none(v) for k, v in r.items()}
                             for r in df.to_dict("records")}
            except Exception:  # noqa: BLE001 - a broken trials.csv is rebuilt from Tune's results
                self.rows = {}

    # -- creation and config ---------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, *, settings: Any, space: Any, storage: str, argv: Sequence[str],
               ray_info: Mapping[str, Any]) -> RunFolder:
        from hebbnas.search import versions

        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise HebbnasError(f"run folder {path} already exists; choose another --out, or --resume {path}") from None
        except OSError as e:
            raise HebbnasError(f"cannot create run folder {path}: {e}") from None
        cfg = {
            "command": " ".join(shlex.quote(a) for a in ["hebbnas", *list(argv)[1:]]),
            "created": datetime.datetime.now().isoformat(timespec="seconds"),
            "budget": settings.budget,
            "strategy": settings.strategy,
            "seed": settings.seed,
            "deploy_input": list(space.deploy_input),
            "dataset": settings.dataset,
            "resolution": settings.resolution,
            "settings": settings.to_dict(),
            "space_source": space.source,
            "space": space.raw,
            "storage": storage,
            "ray": dict(ray_info),
            "versions": versions(),
        }
        folder = cls(path, settings)
        folder._write_yaml("config.yaml", cfg)
        return folder

    @staticmethod
    def read_config(run: Path) -> dict[str, Any]:
        import yaml

        p = run / "config.yaml"
        if not run.is_dir() or not p.is_file():
            raise HebbnasError(f"{run} is not a hebbnas run folder (no config.yaml)")
        try:
            cfg = yaml.safe_load(p.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise HebbnasError(f"cannot read {p}: {str(e).splitlines()[0]}") from None
        if not isinstance(cfg, dict) or "settings" not in cfg:
            raise HebbnasError(f"{run} is not a hebbnas search run folder (config.yaml has no settings)")
        return cfg

    def note_resume(self, address: str) -> None:
        """Record each resume (when, where) in config.yaml without touching the search settings."""
        cfg = self.read_config(self.path)
        cfg.setdefault("resumed", []).append({"at": datetime.datetime.now().isoformat(timespec="seconds"),
                                              "ray_address": address})
        self._write_yaml("config.yaml", cfg)

    # -- SearchSink ------------------------------------------------------------------------------
    def message(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def round_started(self, k: int, rounds: int, n_trials: int, seed: Any, resumed: bool) -> None:
        s = self.settings
        what = "resuming" if resumed else "starting"
        self.message(f"round {k}/{rounds}: {what} {n_trials} trial(s), strategy {s.strategy}, up to {s.max_epochs} "
                     f"epoch(s) each, budget {_fmt_budget(s.budget)} MACs")
        self.message(f"  {'trial':<10} {'round':>5} {'MACs':>10} {'epoch':>7} {'val acc':>8}  status")

    def load_probe(self, k: int) -> Any:
        from hebbnas.probe import load_probe

        p = self.path / "probe" / f"round-{k}.npz"
        return load_probe(p) if p.is_file() else None

    def probe_ready(self, k: int, probe: Any, seed: Any, info: Mapping[str, Any]) -> None:
        from hebbnas.probe import save_probe

        (self.path / "probe").mkdir(exist_ok=True)
        save_probe(probe, self.path / "probe" / f"round-{k}.npz")
        self._write_text(f"probe/round-{k}.topology.json", seed.to_json())
        bits = [f"{k_}: {v:.4g}" if isinstance(v, float) else f"{k_}: {v}" for k_, v in info.items()]
        self.message(f"round {k}: probe saved to probe/round-{k}.npz ({', '.join(bits)})")

    def trial_result(self, k: int, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        if int(result.get("epoch") or 0) >= self.settings.max_epochs:
            return  # the trial's final line follows from trial_finished
        macs = result.get("macs")
        acc = result.get("val_acc")
        epochs = f"{result.get('epoch', '?')}/{self.settings.max_epochs}"
        acc_s = "-" if acc is None else f"{acc:.4f}"
        self.message(f"  {trial_id:<10} {k:>5} {_fmt_macs(macs):>10} {epochs:>7} {acc_s:>8}  running")

    def trial_finished(self, k: int, row: Mapping[str, Any]) -> None:
        tid = str(row["trial_id"])
        known = self.rows.get(tid)
        if known and known.get("status") == row.get("status") and known.get("epochs") == row.get("epochs"):
            self.rows[tid] = {**known, **{k_: v for k_, v in row.items() if v not in (None, "")}}
            self._write_trials()
            return
        self.rows[tid] = dict(row)
        self._write_trials()
        acc = row.get("val_acc")
        extra = f"  {row['error']}" if row.get("error") else ""
        epochs = f"{row.get('epochs', 0)}/{self.settings.max_epochs}"
        acc_s = "-" if acc in (None, "") else f"{float(acc):.4f}"
        self.message(f"  {tid:<10} {k:>5} {_fmt_macs(row.get('macs')):>10} {epochs:>7} {acc_s:>8}  {row['status']}{extra}")

    def trial_checkpoint(self, trial_id: str, checkpoint: Any) -> None:
        """Keep trials/<id>/checkpoint.pt pointing at the trial's latest checkpoint (hard link or copy)."""
        from hebbnas.search import CHECKPOINT_FILE

        dst_dir = self.path / "trials" / trial_id
        dst_dir.mkdir(parents=True, exist_ok=True)
        dst = dst_dir / CHECKPOINT_FILE
        tmp = dst_dir / f".{CHECKPOINT_FILE}.tmp"
        src = f"{checkpoint.path.rstrip('/')}/{CHECKPOINT_FILE}"
        try:
            import pyarrow.fs

            tmp.unlink(missing_ok=True)
            if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
                if dst.exists() and os.path.samefile(src, dst):
                    return
                try:
                    os.link(src, tmp)
                except OSError:
                    shutil.copyfile(src, tmp)
            else:
                with checkpoint.filesystem.open_input_stream(src) as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            os.replace(tmp, dst)
        except OSError as e:  # an informative copy: never stop the search for it
            self.message(f"  warning: cannot keep trials/{trial_id}/{CHECKPOINT_FILE}: {e}")
        finally:
            tmp.unlink(missing_ok=True)

    def round_finished(self, outcome: Any) -> None:
        for row in outcome.rows:
            self.rows[str(row["trial_id"])] = dict(row)
        self._write_trials()
        self._drop_resume_state(outcome)
        if not (self.path / "report" / f"round-{outcome.round}" / "report.md").is_file():
            self._write_round_report(outcome)
        b = outcome.best
        if b is not None:
            self.message(f"round {outcome.round}: best trial {b['trial_id']} val acc {float(b['val_acc']):.4f}, "
                         f"{_fmt_macs(b['macs'])} MACs")

    def _drop_resume_state(self, outcome: Any) -> None:
        """Finished trials never resume: drop their optimizer state (most of a checkpoint's size).

        Only for local storage; trials/<id>/checkpoint.pt (the export format) stays.
        """
        from hebbnas.search import FINISHED_STATUSES, TRAIN_STATE_FILE

        exp = Path(outcome.experiment_path)
        if "://" in outcome.experiment_path or not exp.is_dir():
            return
        for row in outcome.rows:
            if row["status"] in FINISHED_STATUSES:
                for p in exp.glob(f"{row['trial_id']}/checkpoint_*/{TRAIN_STATE_FILE}"):
                    p.unlink(missing_ok=True)

    # -- best/ and the summary ---------------------------------------------------------------------
    def write_best(self, outcome: Any, plan: Any) -> None:
        import torch

        s = self.settings
        ckpt = outcome.best_checkpoint
        m = dict(ckpt.get("metrics") or {})
        metrics = {
            "val_acc": float(outcome.best["val_acc"]),
            "best_val_acc": float(outcome.best["best_val_acc"]),
            "test_acc": float(outcome.test_acc),
            "macs": int(outcome.best["macs"]),
            "params": int(outcome.best["params"]),
            "input": list(plan.space.deploy_input),
            "dataset": plan.dataset.name,
            "resolution": plan.dataset.resolution,
            "mean": list(plan.dataset.mean),
            "std": list(plan.dataset.std),
            "trial_id": str(outcome.best["trial_id"]),
            "round": int(outcome.best["round"]),
            "epochs": int(outcome.best["epochs"]),
            "strategy": s.strategy,
            "budget": s.budget,
            "topology_hash": str(outcome.best["topology_hash"]),
            "search_seconds": round(outcome.seconds, 1),
        }
        m.update(metrics)
        best = self.path / "best"
        best.mkdir(exist_ok=True)
        from hebbnas.topology import Topology

        self._write_text("best/topology.json", Topology.from_dict(ckpt["topology"]).to_json())
        tmp = best / ".model.pt.tmp"
        torch.save({"topology": ckpt["topology"], "state_dict": ckpt["state_dict"], "metrics": m}, tmp)
        os.replace(tmp, best / "model.pt")
        self._write_text("best/metrics.json", json.dumps(metrics, indent=2))  # last: marks the run complete

    def print_final(self) -> None:
        from hebbnas.search import summary_table

        p = self.path / "best" / "metrics.json"
        metrics = json.loads(p.read_text()) if p.is_file() else {}
        rows = list(self.rows.values())
        self.message("")
        self.message(f"search finished: {len(rows)} trial(s), "
                     + ", ".join(f"{n} {s}" for s, n in _count(r.get('status') for r in rows).items()))
        self.message(summary_table(rows, metrics.get("trial_id")))
        if metrics:
            self.message(
                f"best: trial {metrics['trial_id']} (round {metrics['round']}), val acc {metrics['val_acc']:.4f}, "
                f"test acc {metrics['test_acc']:.4f}, MACs {metrics['macs']:,} at {'x'.join(map(str, metrics['input']))} "
                f"<= budget {_fmt_budget(metrics['budget'])}, params {metrics['params']:,}")
            self.message(f"run folder: {self.path}  (best/model.pt, best/metrics.json, trials.csv)")

    # -- files ---------------------------------------------------------------------------------------
    def _write_trials(self) -> None:
        import pandas as pd

        rows = sorted(self.rows.values(), key=lambda r: (int(r.get("round") or 0), str(r.get("trial_id"))))
        if not rows:
            return
        cols: list[str] = []
        for r in rows:
            cols += [c for c in r if c not in cols]
        knob_cols = sorted(c for c in cols if c.split(".")[0] in ("derive", "width", "train"))
        width_cols = [c for c in cols if c.startswith(("stem.", "inception")) and c not in knob_cols]
        lead = [c for c in LEAD_COLUMNS]
        tail = [c for c in TAIL_COLUMNS]
        rest = [c for c in cols if c not in lead + tail + knob_cols + width_cols]
        df = pd.DataFrame(rows, columns=lead + knob_cols + width_cols + rest + tail)
        tmp = self.path / ".trials.csv.tmp"
        df.to_csv(tmp, index=False)
        os.replace(tmp, self.path / "trials.csv")

    def _write_round_report(self, outcome: Any) -> None:
        out = self.path / "report" / f"round-{outcome.round}"
        try:
            write_round_report(out, outcome, self.settings)
        except HebbnasError as e:
            self.message(f"  warning: round {outcome.round} report not written: {e}")

    def _write_text(self, rel: str, text: str) -> None:
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, p)

    def _write_yaml(self, rel: str, obj: Any) -> None:
        import yaml

        self._write_text(rel, yaml.safe_dump(_plain(obj), sort_keys=False))


def write_round_report(out_dir: Path, outcome: Any, settings: Any) -> None:
    """The cluster-to-branch report of one round (the boundary where hebbnas.report is wired in).

    hebbian: the round's probe, clustered with the best trial's derivation knobs, beside the widths the
    best trial trained. random/paper: no probe; the best topology's widths beside the paper's.
    """
    from hebbnas.cli import show_table
    from hebbnas.search import knobs
    from hebbnas.topology import Topology

    out_dir.mkdir(parents=True, exist_ok=True)
    best = outcome.best
    if best is None or not best.get("topology"):
        return
    fitted = Topology.from_json(best["topology"])
    derive_knobs = dict(outcome.report_knobs) or knobs(best, "derive")
    deploy = (fitted.in_channels, 224, 224)
    if outcome.probe is not None and derive_knobs:
        written = _hebbian_report(out_dir, outcome, fitted, derive_knobs, settings)
        if written:
            return
    text = [f"# Round {outcome.round}: best trial {best['trial_id']} ({settings.strategy})", "",
            f"validation accuracy {float(best['val_acc']):.4f}, budget {_fmt_budget(settings.budget)} MACs", ""]
    if derive_knobs:
        text += ["derivation knobs: " + ", ".join(f"{k}={v}" for k, v in derive_knobs.items()), ""]
    text += ["```", show_table(fitted, deploy), "```", ""]
    (out_dir / "report.md").write_text("\n".join(text))
    (out_dir / "report.json").write_text(json.dumps({"round": outcome.round, "trial_id": best["trial_id"],
                                                     "strategy": settings.strategy, "knobs": derive_knobs,
                                                     "fitted_topology": fitted.to_dict()}, indent=1))


def _hebbian_report(out_dir: Path, outcome: Any, fitted: Any, derive_knobs: Mapping[str, Any], settings: Any) -> bool:
    """The full report through hebbnas.derive/hebbnas.report, when the derivation API offers it."""
    from hebbnas import derive

    make = getattr(derive, "derive", None)
    if make is None:
        return False
    try:
        from hebbnas.report import write_report
    except ImportError:
        return False
    derivation = make(outcome.probed, outcome.probe, derive.Policy.from_knobs(dict(derive_knobs)))
    corr = {m.name: outcome.probe.modules[m.name].correlation(remove_common=bool(derive_knobs.get("partial")))
            for m in derivation.modules if m.name in outcome.probe.modules}
    if settings.strategy == "hebbian":
        title = f"Cluster-to-branch report, round {outcome.round}"
    else:  # the baselines' winner, read as the derivation would read it (default knobs)
        title = f"Cluster-to-branch report, round {outcome.round}: the {settings.strategy} baseline's best network"
    write_report(out_dir, derivation, fitted, corr, budget=settings.budget, title=title)
    return True


# ---------------------------------------------------------------------------------------------
# small helpers


def _fmt_budget(b: float) -> str:
    from hebbnas.search import format_budget

    return format_budget(b)


def _fmt_macs(v: Any) -> str:
    from hebbnas.search import fmt_macs

    return fmt_macs(v)


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[str(i)] = out.get(str(i), 0) + 1
    return out


def _nan_to_none(v: Any) -> Any:
    return None if isinstance(v, float) and v != v else v


def _plain(obj: Any) -> Any:
    """YAML-safe copy: tuples to lists, numpy scalars to Python."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        return obj.item()
    return obj

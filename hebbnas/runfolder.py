"""The run folder: the one module that knows its layout, writes it and reads it back.

    RUN/config.yaml                 command, resolved settings, space, seed, versions, Ray address, storage
    RUN/probe/round-K.npz           probe statistics of round K (+ round-K.topology.json, the probed network)
    RUN/report/round-K/             cluster-to-branch report of round K
    RUN/trials.csv                  one row per trial (`trial_row`), rewritten as trials finish
    RUN/trials/<id>/checkpoint.pt   each trial's last checkpoint (export format)
    RUN/tune/round-K/               Ray Tune's experiment (unless --storage puts it elsewhere)
    RUN/optuna.journal              the Optuna studies (one per round, `round-K`): `optuna-dashboard RUN/optuna.journal`
    RUN/best/                       topology.json, model.pt, metrics.json (written last: marks the run complete)
    RUN/export/                     what `hebbnas export RUN` writes by default

It also owns the trial status vocabulary (`TrialStatus`), the trials.csv schema, and the one rule that
picks the best trial (`best_row`), used by the search, export, resume and the analysis scripts.
"""

from __future__ import annotations

import datetime
import enum
import json
import math
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hebbnas.errors import HebbnasError
from hebbnas.topology import WIDTH_FIELDS, Topology

if TYPE_CHECKING:
    import pandas as pd

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
BEST_MODEL = f"{BEST_DIR}/model.pt"
BEST_METRICS = f"{BEST_DIR}/metrics.json"
TIMINGS = "timings.json"  # where the search's wall time went, per phase
BEST_TOPOLOGY = f"{BEST_DIR}/topology.json"
CHECKPOINT_FILE = "checkpoint.pt"
"""Export format: ``{"topology", "state_dict" (inference), "metrics"}`` (also ``trials/<id>/checkpoint.pt``)."""
TRAIN_STATE_FILE = "train_state.pt"
"""What a trial needs to resume: model (aux heads included), optimizer, scheduler, epoch, best val acc."""
METRIC = "val_acc"
"""Validation accuracy after the trial's last epoch: what ASHA, Optuna and `best_row` rank by."""
EPOCH_ATTR = "epoch"
PRESCREEN_CONFIG = "prescreen_config"
"""Result key of a prescreened trial: the knobs of the candidate it picked and trained (JSON)."""
TRIAL_ERROR = "trial_error"
"""Result key of a trial that failed in its own right (model error, NaN loss): final, never retried."""
LEAD_COLUMNS = ("trial_id", "round", "strategy", "status", "optuna_state", "epochs", "val_acc", "best_val_acc",
                "macs", "params", "topology_hash")
TAIL_COLUMNS = ("node_id", "error", "topology")
KNOB_PREFIXES = ("derive", "width", "move", "slim", "train")


class TrialStatus(str, enum.Enum):
    """A trial's status in trials.csv (lower case), whatever Tune or Optuna call it."""

    COMPLETED = "completed"      # every epoch (Tune TERMINATED, Optuna COMPLETE)
    STOPPED = "stopped"          # stopped early by ASHA (Tune TERMINATED, Optuna PRUNED)
    ERROR = "error"              # raised, diverged, or its infrastructure retries ran out (Optuna FAIL)
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    INTERRUPTED = "interrupted"  # the search was stopped while it ran

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        """It will not run again (a resume leaves it alone)."""
        return self in (TrialStatus.COMPLETED, TrialStatus.STOPPED, TrialStatus.ERROR)

    @property
    def usable(self) -> bool:
        """Its last checkpoint is a trained network that may be chosen as the best."""
        return self in (TrialStatus.COMPLETED, TrialStatus.STOPPED)

    @classmethod
    def parse(cls, text: Any) -> TrialStatus:
        """Our names, Tune's (TERMINATED, ERROR, ...) and Optuna's (COMPLETE, PRUNED, FAIL), any case."""
        if isinstance(text, TrialStatus):
            return text
        t = str(text).strip().lower()
        alias = {"terminated": "completed", "complete": "completed", "pruned": "stopped", "fail": "error",
                 "failed": "error"}
        try:
            return cls(alias.get(t, t))
        except ValueError:
            raise HebbnasError(f"unknown trial status {text!r}") from None


# ---------------------------------------------------------------------------------------------
# trials.csv rows and the best trial


def trial_row(trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any] | None, status: str,
              *, round_: int, strategy: str, error: str = "") -> dict[str, Any]:
    """One row of trials.csv: id, round, strategy, status, knobs, the six widths of every module, costs."""
    result = result or {}
    row: dict[str, Any] = {
        "trial_id": trial_id, "round": round_, "strategy": strategy, "status": str(TrialStatus.parse(status)),
        "epochs": int(result.get(EPOCH_ATTR, 0) or 0),
        "val_acc": None if result.get(TRIAL_ERROR) else result.get(METRIC), "best_val_acc": result.get("best_val_acc"),
        "macs": result.get("macs"), "params": result.get("params"), "topology_hash": result.get("topology_hash", ""),
        "started": _started(result),
    }
    row.update({k: v for k, v in sorted(config.items())})
    if result.get(PRESCREEN_CONFIG):  # the knobs of the candidate that trained, not only Optuna's suggestion
        row.update(json.loads(str(result[PRESCREEN_CONFIG])))
        row.update({k: result.get(k) for k in ("prescreen_pick", "prescreen_score", "prescreen_scores")})
    topo = result.get("topology")
    if topo:
        t = Topology.from_json(topo)
        for m in t.modules:
            for f, w in zip(WIDTH_FIELDS, m.widths):
                row[f"{m.name}.{f}"] = w
        row.update({"stem.conv1": t.stem.conv1, "stem.conv2": t.stem.conv2, "stem.conv3": t.stem.conv3})
    row["node_id"] = result.get("node_id", "")
    row["error"] = error or str(result.get(TRIAL_ERROR) or "")
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


def finished_status(result: Mapping[str, Any] | None, error: bool, max_epochs: int) -> TrialStatus:
    """COMPLETED (all epochs), STOPPED (ASHA) or ERROR, for a trial Tune finished."""
    if error or (result or {}).get(TRIAL_ERROR):
        return TrialStatus.ERROR
    epochs = int((result or {}).get(EPOCH_ATTR, 0) or 0)
    return TrialStatus.COMPLETED if epochs >= max_epochs else TrialStatus.STOPPED


def _number(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def best_key(row: Mapping[str, Any]) -> tuple[float, float, int, float]:
    """Last-epoch validation accuracy (what the checkpoint holds), then best-epoch accuracy, more epochs,
    fewer MACs."""
    return (_number(row.get(METRIC)) or 0.0, _number(row.get("best_val_acc")) or 0.0,
            int(_number(row.get("epochs")) or 0), -(_number(row.get("macs")) or 0.0))


def best_row(rows: Iterable[Mapping[str, Any]], has_checkpoint: Callable[[str], bool]) -> dict[str, Any] | None:
    """The best trial: usable (completed or stopped), with a validation accuracy and a checkpoint.

    The one rule used by the search (per round and across rounds), export, resume and the analysis.
    Ties go to the earlier row.
    """
    best, key = None, None
    for r in rows:
        try:
            usable = TrialStatus.parse(r.get("status")).usable
        except HebbnasError:
            usable = False
        if not usable or _number(r.get(METRIC)) is None or not has_checkpoint(str(r.get("trial_id"))):
            continue
        k = best_key(r)
        if key is None or k > key:
            best, key = dict(r), k
    return best


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


# ---------------------------------------------------------------------------------------------
# the folder


class RunFolder:
    """Writes one run folder and prints the progress table; implements `hebbnas.search.SearchSink`."""

    def __init__(self, path: Path, settings: Any, out: Any = None) -> None:
        self.path = Path(path)
        self.settings = settings
        self.out = out or sys.stdout
        self.rows: dict[str, dict[str, Any]] = {}
        self._macs: dict[str, float] = {}
        self.reports: dict[int, Any] = {}  # round -> outcome whose report waits until best/ exists
        csv = self.path / TRIALS_CSV
        if csv.is_file():
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
            "run_path": str(path),
            "storage": _relative_storage(storage, path),
            "ray": dict(ray_info),
            "versions": versions(),
        }
        folder = cls(path, settings)
        folder._write_yaml(CONFIG, cfg)
        return folder

    @staticmethod
    def read_config(run: Path) -> dict[str, Any]:
        import yaml

        p = run / CONFIG
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
        cfg["run_path"] = str(self.path)
        self._write_yaml(CONFIG, cfg)

    def storage(self, cfg: Mapping[str, Any]) -> str:
        """Where Tune keeps this run's experiments, checked against where the folder now is.

        Ray Tune 2.60 cannot continue an experiment whose folder moved: trials that (re)start after the
        restore are set up under the old path, so a moved run would fail them and a copied one would
        write into the original. A run folder whose Tune state lives inside it (the default ``tune/``)
        and that was moved or copied since it last ran is therefore refused in one line, naming where
        it has to be; one with no Tune state yet (interrupted while probing) resumes anywhere. Storage
        given with --storage (a shared path or URI) does not move with the folder and is used as
        recorded; a local one that is gone is refused rather than silently starting over.
        """
        stored = str(cfg.get("storage") or TUNE_DIR)
        if "://" in stored:
            return stored
        p = Path(stored)
        recorded_run = Path(str(cfg["run_path"])) if cfg.get("run_path") else None
        if not p.is_absolute():  # inside the run: valid only where the run last ran
            old = recorded_run
            tune = self.path / p
        elif p.name == TUNE_DIR and p.parent.name == self.path.name:  # an older config: absolute RUN/tune
            old = p.parent
            tune = self.path / TUNE_DIR
        else:  # --storage: a shared location that stays put
            if not p.exists():
                raise HebbnasError(f"the Tune storage {p} recorded in {self.path / CONFIG} does not exist; "
                                   "cannot resume")
            return str(p)
        if old is not None and old != self.path and any(tune.glob("round-*")):
            raise HebbnasError(f"{self.path} was moved or copied from {old}; Ray Tune resumes an experiment only "
                               f"where it was written: move it back to {old} to resume")
        return str(tune)

    def is_complete(self) -> bool:
        return (self.path / BEST_METRICS).is_file()

    # -- SearchSink ------------------------------------------------------------------------------
    def message(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def round_started(self, k: int, rounds: int, n_trials: int, seed: Any, resumed: bool) -> None:
        s = self.settings
        what = "resuming" if resumed else "starting"
        self.message(f"round {k}/{rounds}: {what} {n_trials} trial(s), strategy {s.strategy}, up to {s.max_epochs} "
                     f"epoch(s) each, budget {format_budget(s.budget)} MACs")
        self.message(f"  {'trial':<10} {'round':>5} {'MACs':>10} {'epoch':>7} {'val acc':>8}  status")

    def load_probe(self, k: int) -> Any:
        from hebbnas.probe import load_probe

        p = self.path / PROBE_DIR / f"round-{k}.npz"
        return load_probe(p) if p.is_file() else None

    def probe_ready(self, k: int, probe: Any, seed: Any, info: Mapping[str, Any]) -> None:
        from hebbnas.probe import save_probe

        (self.path / PROBE_DIR).mkdir(exist_ok=True)
        save_probe(probe, self.path / PROBE_DIR / f"round-{k}.npz")
        self._write_text(f"{PROBE_DIR}/round-{k}.topology.json", seed.to_json())
        bits = [f"{k_}: {v:.4g}" if isinstance(v, float) else f"{k_}: {v}" for k_, v in info.items()]
        self.message(f"round {k}: probe saved to probe/round-{k}.npz ({', '.join(bits)})")

    def trial_result(self, k: int, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        if int(result.get("epoch") or 0) >= self.settings.max_epochs:
            return  # the trial's final line follows from trial_finished
        macs = result.get("macs")
        acc = result.get("val_acc")
        epochs = f"{result.get('epoch', '?')}/{self.settings.max_epochs}"
        acc_s = "-" if acc is None else f"{acc:.4f}"
        self.message(f"  {trial_id:<10} {k:>5} {fmt_macs(macs):>10} {epochs:>7} {acc_s:>8}  running")

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
        self.message(f"  {tid:<10} {k:>5} {fmt_macs(row.get('macs')):>10} {epochs:>7} {acc_s:>8}  {row['status']}{extra}")

    def trial_checkpoint(self, trial_id: str, checkpoint: Any) -> None:
        """Keep trials/<id>/checkpoint.pt pointing at the trial's latest checkpoint (hard link or copy)."""
        dst_dir = self.path / TRIALS_DIR / trial_id
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
        self.reports[outcome.round] = outcome  # written after best/: a report must never cost the run
        b = outcome.best
        if b is not None:
            self.message(f"round {outcome.round}: best trial {b['trial_id']} val acc {float(b['val_acc']):.4f}, "
                         f"{fmt_macs(b['macs'])} MACs")

    def _drop_resume_state(self, outcome: Any) -> None:
        """Finished trials never resume: drop their optimizer state (most of a checkpoint's size).

        Only for local storage; trials/<id>/checkpoint.pt (the export format) stays.
        """
        exp = Path(outcome.experiment_path)
        if "://" in outcome.experiment_path or not exp.is_dir():
            return
        for row in outcome.rows:
            if TrialStatus.parse(row["status"]).finished:
                for p in exp.glob(f"{row['trial_id']}/checkpoint_*/{TRAIN_STATE_FILE}"):
                    p.unlink(missing_ok=True)

    # -- best/ and the summary ---------------------------------------------------------------------
    def finish(self, outcome: Any, plan: Any) -> None:
        """best/ first (it marks the run complete), then each round's report; a report that fails is
        one line, and the run stays complete."""
        self.write_best(outcome, plan)
        for k, round_outcome in sorted(self.reports.items()):
            if (self.path / REPORT_DIR / f"round-{k}" / "report.md").is_file():
                continue
            try:
                from hebbnas.report import write_round_report

                write_round_report(self.path / REPORT_DIR / f"round-{k}", round_outcome, self.settings,
                                   plan.space.deploy_input)
            except Exception as e:  # noqa: BLE001 - best/ is written; the report is an extra
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                self.message(f"  warning: round {k} report not written: {type(e).__name__}: {first}")

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
            "proxy_width": float(getattr(s, "width", 1.0)),
        }
        m.update(metrics)
        best = self.path / BEST_DIR
        best.mkdir(exist_ok=True)
        # the candidate at full width (what the budget counts); with a width proxy, model.pt holds the
        # weights of its narrowed copy, which trained in its place
        self._write_text(BEST_TOPOLOGY, Topology.from_json(outcome.best["topology"]).to_json())
        tmp = best / ".model.pt.tmp"
        torch.save({"topology": ckpt["topology"], "state_dict": ckpt["state_dict"], "metrics": m}, tmp)
        os.replace(tmp, self.path / BEST_MODEL)
        self._write_text(BEST_METRICS, json.dumps(metrics, indent=2))  # last: marks the run complete

    def write_timings(self, timings: Mapping[str, float], wall: float) -> None:
        """timings.json: wall seconds per phase of this session of the search, and the whole."""
        self._write_text(TIMINGS, json.dumps({"wall": round(wall, 1), **{k: round(v, 1) for k, v in timings.items()}},
                                             indent=2))

    def print_final(self) -> None:
        p = self.path / BEST_METRICS
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
                f"<= budget {format_budget(metrics['budget'])}, params {metrics['params']:,}")
            self.message(f"run folder: {self.path}  (best/model.pt, best/metrics.json, trials.csv)")
            t = self.path / TIMINGS
            if t.is_file():
                w = json.loads(t.read_text())
                self.message(f"wall time {w.pop('wall'):.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in w.items()))
            width = float(metrics.get("proxy_width", 1.0))
            if width < 1:
                self.message(
                    f"note: trials trained {width:g}-width copies (the width proxy): best/topology.json is the full-width "
                    f"topology, and best/model.pt holds its proxy's weights, not the deployed model. Train it with: "
                    f"hebbnas train {self.path / BEST_TOPOLOGY} --dataset {metrics.get('dataset')} --out DIR; "
                    f"then: hebbnas export DIR")

    # -- files ---------------------------------------------------------------------------------------
    def _write_trials(self) -> None:
        import pandas as pd

        rows = sorted(self.rows.values(), key=lambda r: (int(r.get("round") or 0), str(r.get("trial_id"))))
        if not rows:
            return
        cols: list[str] = []
        for r in rows:
            cols += [c for c in r if c not in cols]
        knob_cols = sorted(c for c in cols if c.split(".")[0] in KNOB_PREFIXES)
        width_cols = [c for c in cols if c.startswith(("stem.", "inception")) and c not in knob_cols]
        lead = [c for c in LEAD_COLUMNS]
        tail = [c for c in TAIL_COLUMNS]
        rest = [c for c in cols if c not in lead + tail + knob_cols + width_cols]
        df = pd.DataFrame(rows, columns=lead + knob_cols + width_cols + rest + tail)
        tmp = self.path / ".trials.csv.tmp"
        df.to_csv(tmp, index=False)
        os.replace(tmp, self.path / TRIALS_CSV)

    def _write_text(self, rel: str, text: str) -> None:
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, p)

    def _write_yaml(self, rel: str, obj: Any) -> None:
        import yaml

        self._write_text(rel, yaml.safe_dump(_plain(obj), sort_keys=False))




def _relative_storage(storage: str, run: Path) -> str:
    """``tune`` for the default storage inside the run (so the folder can move); else as given."""
    if "://" not in storage and Path(storage) == run / TUNE_DIR:
        return TUNE_DIR
    return storage


def trial_checkpoint_path(run: Path, trial_id: str) -> Path:
    return Path(run) / TRIALS_DIR / str(trial_id) / CHECKPOINT_FILE


def read_run_rows(run: Path) -> list[dict[str, Any]]:
    """trials.csv of a run as rows (ids as text, NaN as None); a missing file is no rows."""
    csv = Path(run) / TRIALS_CSV
    if not csv.is_file():
        return []
    df = read_trials(csv)
    return [{k: _nan_to_none(v) for k, v in r.items()} for r in df.to_dict("records")]


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

"""The run folder: the one module that writes it and reads it back (where each file lives: `hebbnas.layout`).

The trial vocabulary (statuses, trials.csv's columns, the best-trial rule) lives in `hebbnas.trials`;
what a person sees while a search runs is the console's (`hebbnas.search.console`). This module only writes
and reads files; where something goes wrong on the way, it hands one line to `warn`.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hebbnas import atomic
from hebbnas.errors import HebbnasError, first_line
from hebbnas.layout import (
    BEST_DIR,
    BEST_METRICS,
    BEST_MODEL,
    BEST_TOPOLOGY,
    CONFIG,
    FINAL_CSV,
    PARETO,
    REPORT_MD,
    TIMINGS,
    TRIALS_CSV,
    TRIALS_DIR,
    TUNE_DIR,
    probe_file,
    probed_topology_file,
    round_name,
    round_report_dir,
)
from hebbnas.objectives import goals, measured_columns
from hebbnas.plain import plain
from hebbnas.topology import Topology
from hebbnas.trials import (
    CHECKPOINT_FILE,
    LEAD_COLUMNS,
    TAIL_COLUMNS,
    TRAIN_STATE_FILE,
    TrialStatus,
    knob_prefixes,
    pareto_rows,
    read_trials,
)


def check_out_folder(out: Path, flag: str = "--out") -> None:
    """Fail before any work when the output folder cannot be written: a file in its place, a non-empty
    folder, or no permission to create it."""
    if out.exists() and not out.is_dir():
        raise HebbnasError(f"{flag} {out} is a file; give a folder to create")
    if out.is_dir() and any(out.iterdir()):
        raise HebbnasError(f"{flag} {out} exists and is not empty; choose another")
    parent = out if out.is_dir() else next((a for a in out.absolute().parents if a.exists()), Path("/"))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise HebbnasError(f"{flag} {out} cannot be written ({parent} is not a writable folder)")


def read_config(run: Path, *, missing_ok: bool = False, broken_ok: bool = False) -> dict[str, Any]:
    """RUN/config.yaml as a dict (the one reader of it). A missing file is {} with `missing_ok`, an unreadable
    one {} with `broken_ok` (a fallback for defaults); otherwise either is one line."""
    import yaml

    p = Path(run) / CONFIG
    if not Path(run).is_dir() or not p.is_file():
        if missing_ok:
            return {}
        raise HebbnasError(f"{run} is not a hebbnas run folder (no {CONFIG})")
    try:
        cfg = yaml.safe_load(p.read_text())
    except Exception as e:  # noqa: BLE001  # with broken_ok any failure means "no defaults from here"
        if broken_ok:
            return {}
        if isinstance(e, (OSError, yaml.YAMLError)):
            raise HebbnasError(f"cannot read {p}: {first_line(e)}") from None
        raise
    return dict(cfg) if isinstance(cfg, Mapping) else {}


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
    """One run folder: writes what a search produces, reads it back for resume, report and export.

    `warn` receives one line when something optional (a report, an informative copy) could not be
    written; the run goes on. What to print while a search runs is the caller's (`hebbnas.search.console`).
    """

    def __init__(self, path: Path, settings: Any, warn: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.settings = settings
        self.warn = warn or (lambda text: print(text, file=sys.stderr, flush=True))
        self.rows: dict[str, dict[str, Any]] = {}
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
            "dataset": settings.proxy.dataset,
            "resolution": settings.proxy.resolution,
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
        """config.yaml of a search run folder; anything else (no folder, no config, no settings) in one line."""
        cfg = read_config(run)
        if "settings" not in cfg:
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
        if old is not None and old != self.path and any(tune.glob(round_name("*"))):
            raise HebbnasError(f"{self.path} was moved or copied from {old}; Ray Tune resumes an experiment only "
                               f"where it was written: move it back to {old} to resume")
        return str(tune)

    def is_complete(self) -> bool:
        return (self.path / BEST_METRICS).is_file()

    # -- what a search produces -----------------------------------------------------------------------
    def load_probe(self, k: int) -> Any:
        from hebbnas.probe import load_probe

        p = self.path / probe_file(k)
        return load_probe(p) if p.is_file() else None

    def save_probe(self, k: int, probe: Any, seed: Topology) -> str:
        """probe/round-K.npz and the probed network beside it; returns the path relative to the run."""
        from hebbnas.probe import save_probe

        (self.path / probe_file(k)).parent.mkdir(exist_ok=True)
        save_probe(probe, self.path / probe_file(k))
        self._write_text(probed_topology_file(k), seed.to_json())
        return probe_file(k)

    def record_trial(self, row: Mapping[str, Any]) -> bool:
        """Put a finished trial's row into trials.csv; False when it was already there with the same
        status and epochs (a restored round reports its finished trials again)."""
        tid = str(row["trial_id"])
        known = self.rows.get(tid)
        new = not (known and known.get("status") == row.get("status") and known.get("epochs") == row.get("epochs"))
        self.rows[tid] = dict(row) if new else {**known, **{k: v for k, v in row.items() if v not in (None, "")}}
        self._write_trials()
        return new

    def trial_checkpoint(self, trial_id: str, checkpoint: Any) -> None:
        """Keep trials/<id>/checkpoint.pt pointing at the trial's latest checkpoint (hard link or copy)."""
        dst_dir = self.path / TRIALS_DIR / trial_id
        dst_dir.mkdir(parents=True, exist_ok=True)
        dst = dst_dir / CHECKPOINT_FILE
        src = f"{checkpoint.path.rstrip('/')}/{CHECKPOINT_FILE}"
        try:
            import pyarrow.fs

            local = isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem)
            if local and dst.exists() and os.path.samefile(src, dst):
                return
            with atomic.replacing(dst) as tmp:
                if local:
                    try:
                        os.link(src, tmp)
                    except OSError:
                        shutil.copyfile(src, tmp)
                else:
                    with checkpoint.filesystem.open_input_stream(src) as fin, open(tmp, "wb") as fout:
                        shutil.copyfileobj(fin, fout)
        except OSError as e:  # an informative copy: never stop the search for it
            self.warn(f"  warning: cannot keep {TRIALS_DIR}/{trial_id}/{CHECKPOINT_FILE}: {e}")

    def round_finished(self, outcome: Any) -> None:
        for row in outcome.rows:
            self.rows[str(row["trial_id"])] = dict(row)
        self._write_trials()
        self._drop_resume_state(outcome)
        self.reports[outcome.round] = outcome  # written after best/: a report must never cost the run

    def final_finished(self, outcome: Any) -> None:
        """The final stage's rows into trials.csv, and final.csv: one row per network (the report's table)."""
        for row in outcome.rows:
            self.rows[str(row["trial_id"])] = dict(row)
        self._write_trials()
        self._write_text(FINAL_CSV, final_table(outcome).to_csv(index=False))

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
    def pending_reports(self) -> list[tuple[Path, Any]]:
        """(report folder, round outcome) of every finished round whose report is not written yet."""
        out = []
        for k, round_outcome in sorted(self.reports.items()):
            where = self.path / round_report_dir(k)
            if not (where / REPORT_MD).is_file():
                out.append((where, round_outcome))
        return out

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
            "stage": "search",  # where the answer came from; the final stage's answer says "final" below
            "trial_id": str(outcome.best["trial_id"]),
            "round": int(outcome.best["round"]) if outcome.best.get("round") is not None else None,
            "epochs": int(outcome.best["epochs"]),
            "strategy": s.strategy,
            "budget": s.budget,
            "topology_hash": str(outcome.best["topology_hash"]),
            "search_seconds": round(outcome.seconds, 1),
            "proxy_width": float(s.proxy.proxy_width),
            **{k: outcome.best[k] for k in measured_columns() if outcome.best.get(k) is not None},
        }
        final = getattr(outcome, "final", None)
        if final is not None:  # the answer of the final stage: which network, which seed's weights, and why
            f = final.fidelity
            metrics.update({
                "stage": "final", "network": str(outcome.best["network"]), "seed": int(outcome.best["seed"]),
                "control": bool(final.decision.kept_control), "decision": final.decision.sentence,
                "resolution": int(f.resolution), "proxy_width": float(f.proxy_width),
                "round": None, "final": final_summary(final)})
            metrics.update({k: m[k] for k in ("dataset", "mean", "std") if k in m})  # the final data's
            m.pop("round", None)
        m.update(metrics)
        best = self.path / BEST_DIR
        best.mkdir(exist_ok=True)
        # the candidate at full width (what the budget counts); with a width proxy, model.pt holds the
        # weights of its narrowed copy, which trained in its place
        self._write_text(BEST_TOPOLOGY, Topology.from_json(outcome.best["topology"]).to_json())
        with atomic.replacing(self.path / BEST_MODEL) as tmp:
            torch.save({"topology": ckpt["topology"], "state_dict": ckpt["state_dict"], "metrics": m}, tmp)
        objectives = tuple(getattr(s, "objectives", ("accuracy",)))
        if len(objectives) > 1:
            self.write_pareto(objectives)
        self._write_text(BEST_METRICS, json.dumps(metrics, indent=2))  # last: marks the run complete

    def write_pareto(self, objectives: Sequence[str]) -> None:
        """best/pareto.csv: every usable trial no other beats on all `objectives` (`hebbnas.trials.pareto_rows`),
        by validation accuracy; `hebbnas export RUN --trial ID` exports any of them."""
        import pandas as pd

        keys = goals(objectives)
        front = pareto_rows([r for r in self.rows.values() if r.get("stage", "search") == "search"], keys)
        cols = ["trial_id", "round", "status", *keys, *[c for c in measured_columns() if c not in keys],
                "epochs", "topology_hash"]
        df = pd.DataFrame(front, columns=list(dict.fromkeys(cols))).sort_values("val_acc", ascending=False)
        self._write_text(PARETO, df.to_csv(index=False))

    def write_timings(self, timings: Mapping[str, float], wall: float) -> None:
        """timings.json: wall seconds per phase of this session of the search, and the whole."""
        self._write_text(TIMINGS, json.dumps({"wall": round(wall, 1), **{k: round(v, 1) for k, v in timings.items()}},
                                             indent=2))

    def metrics(self) -> dict[str, Any]:
        """best/metrics.json ({} before the run is complete)."""
        p = self.path / BEST_METRICS
        return json.loads(p.read_text()) if p.is_file() else {}

    def timings(self) -> dict[str, float]:
        """timings.json ({} when this session did not finish)."""
        p = self.path / TIMINGS
        return json.loads(p.read_text()) if p.is_file() else {}

    # -- files ---------------------------------------------------------------------------------------
    def _write_trials(self) -> None:
        import pandas as pd

        rows = sorted(self.rows.values(), key=lambda r: (r.get("stage") == "final", int(r.get("round") or 0),
                                                         str(r.get("trial_id"))))
        if not rows:
            return
        cols: list[str] = []
        for r in rows:
            cols += [c for c in r if c not in cols]
        prefixes = knob_prefixes()
        knob_cols = sorted(c for c in cols if c.split(".")[0] in prefixes)
        width_cols = [c for c in cols if c.startswith(("stem.", "inception")) and c not in knob_cols]
        lead = [c for c in LEAD_COLUMNS]
        tail = [c for c in TAIL_COLUMNS]
        rest = [c for c in cols if c not in lead + tail + knob_cols + width_cols]
        df = pd.DataFrame(rows, columns=lead + knob_cols + width_cols + rest + tail)
        for c in ("round", "seed"):  # whole numbers, empty where a row has none (the final stage has no round)
            if c in df.columns:
                df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
        with atomic.replacing(self.path / TRIALS_CSV) as tmp:
            df.to_csv(tmp, index=False)

    def _write_text(self, rel: str, text: str) -> None:
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(p, text)

    def _write_yaml(self, rel: str, obj: Any) -> None:
        import yaml

        self._write_text(rel, yaml.safe_dump(plain(obj), sort_keys=False))




def final_table(outcome: Any) -> Any:
    """The final stage per network (a DataFrame): seeds, mean validation and test accuracy, and the paired
    difference to the control on validation (t interval) and test, in points; the chosen one marked."""
    import pandas as pd

    comps = {c.name: c for c in outcome.decision.comparisons}
    rows = []
    for n in outcome.networks:
        c = comps.get(n.name)
        rows.append({"network": n.name, "control": n.control, "search_rank": n.rank,
                     "seeds": len(n.seeds_ok()), "failed_seeds": len(n.val) - len(n.seeds_ok()),
                     "val_acc": n.mean_val(), "test_acc": n.mean_test(),
                     "val_diff_pt": None if c is None else c.diff, "val_diff_lo": None if c is None else c.lo,
                     "val_diff_hi": None if c is None else c.hi, "test_diff_pt": None if c is None else c.test_diff,
                     "beats_control": None if c is None else c.beats,
                     "chosen": n.name == outcome.decision.chosen})
    return pd.DataFrame(rows)


def final_summary(outcome: Any) -> dict[str, Any]:
    """best/metrics.json's `final`: the fidelity, the seeds, the rule and every network's line (plain JSON)."""
    d = outcome.decision
    table = final_table(outcome).astype(object)
    return {"fidelity": outcome.fidelity.to_dict(), "seeds": list(outcome.seeds), "margin_pt": d.margin,
            "confidence": d.confidence, "chosen": d.chosen, "kept_control": d.kept_control, "sentence": d.sentence,
            "networks": [{k: _nan_to_none(v) for k, v in r.items()} for r in table.to_dict("records")]}


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


def _nan_to_none(v: Any) -> Any:
    return None if isinstance(v, float) and v != v else v


"""The trial vocabulary: what a trial's status, result keys and trials.csv row are called, the one rule
that picks the best trial, and how a trial's numbers are written.

Everything that reads or writes trials (the search, the run folder, export, resume, the analysis
scripts) takes these names from here, so a status or a column means one thing end to end.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hebbnas.errors import HebbnasError
from hebbnas.objectives import measured_columns
from hebbnas.topology import WIDTH_FIELDS, Topology

if TYPE_CHECKING:
    import pandas as pd

CHECKPOINT_FILE = "checkpoint.pt"
"""Export format: ``{"topology", "state_dict" (inference), "metrics"}`` (also ``trials/<id>/checkpoint.pt``)."""
TRAIN_STATE_FILE = "train_state.pt"
"""What a trial needs to resume: model (aux heads included), optimizer, scheduler, epoch, best val acc."""
METRIC = "val_acc"
"""Validation accuracy after the trial's last epoch: what ASHA, Optuna and `best_row` rank by."""
EPOCH_ATTR = "epoch"
PRESCREEN_CONFIG = "prescreen_config"
"""Result key of a prescreened trial: the knobs of the candidate it picked and trained (JSON)."""
REJECTED = "rejected"
"""Result key of a trial whose candidate broke the latency budget: it never trained (the reason, one line)."""
TRIAL_ERROR = "trial_error"
"""Result key of a trial that failed in its own right (model error, NaN loss): final, never retried."""
LEAD_COLUMNS = ("trial_id", "stage", "round", "strategy", "network", "seed", "control", "drawn_by", "status",
                "optuna_state", "epochs", "val_acc", "best_val_acc", "test_acc", "macs", "params", "topology_hash")
STAGES = ("search", "final")
"""trials.csv's `stage`: a search trial (one seed, the trial fidelity, chosen by Optuna) or a final-stage unit
(a finalist or the control retrained at the final fidelity on one of the paired seeds)."""
STAGE_KEYS = ("stage", "network", "seed", "control", "test_acc")
"""Result keys a trial row copies when present: where it stands (stage, network, seed, control) and the
final stage's test accuracy (reported beside validation, never used to choose)."""
DRAWN_BY = ("enqueued", "start-up", "model", "random")
"""How the sampler produced a search trial (`drawn_by`): enqueued by the strategy (the paper's widths, a
derivation), a random start-up draw of TPE, a draw from TPE's model, or a random sampler's draw."""
TAIL_COLUMNS = ("node_id", "nodes", "error", "topology")


def knob_prefixes() -> tuple[str, ...]:
    """The namespaces of the knob columns (``train.lr``, ``derive.threshold``): the shared training knobs'
    and each registered strategy's own (its `knob_prefix`), so a new strategy's knobs are columns too."""
    from hebbnas.strategies import knob_prefixes as declared

    return declared()


class TrialStatus(str, enum.Enum):
    """A trial's status in trials.csv (lower case), whatever Tune or Optuna call it."""

    COMPLETED = "completed"      # every epoch (Tune TERMINATED, Optuna COMPLETE)
    STOPPED = "stopped"          # stopped early by ASHA (Tune TERMINATED, Optuna PRUNED)
    ERROR = "error"              # raised, diverged, or its infrastructure retries ran out (Optuna FAIL)
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    INTERRUPTED = "interrupted"  # the search was stopped while it ran
    REJECTED = "rejected"        # over the latency budget: never trained (Optuna: COMPLETE, constraint violated)

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        """It will not run again (a resume leaves it alone)."""
        return self in (TrialStatus.COMPLETED, TrialStatus.STOPPED, TrialStatus.ERROR, TrialStatus.REJECTED)

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
              *, round_: int | None, strategy: str, error: str = "", nodes: Sequence[str] = ()) -> dict[str, Any]:
    """One row of trials.csv: id, stage, round (none in the final stage), strategy, status, knobs, the six
    widths of every module, costs, and every node the trial ran on (`nodes`, in order, ';'-separated: a node lost mid-trial stays visible)."""
    result = result or {}
    row: dict[str, Any] = {
        "trial_id": trial_id, "stage": result.get("stage", "search"), "round": round_, "strategy": strategy,
        "status": str(TrialStatus.parse(status)),
        "epochs": int(result.get(EPOCH_ATTR, 0) or 0),
        "val_acc": None if result.get(TRIAL_ERROR) else result.get(METRIC), "best_val_acc": result.get("best_val_acc"),
        "macs": result.get("macs"), "params": result.get("params"), "topology_hash": result.get("topology_hash", ""),
        "started": _started(result),
    }
    row.update({k: result[k] for k in STAGE_KEYS[1:] if result.get(k) is not None})
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
    for k in measured_columns():  # what the objectives measured before training (latency: ms, IQR, where)
        if result.get(k) is not None:
            row[k] = result[k]
    row["node_id"] = result.get("node_id", "")
    row["nodes"] = ";".join(nodes) if nodes else row["node_id"]
    row["error"] = error or str(result.get(TRIAL_ERROR) or result.get(REJECTED) or "")
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
    if (result or {}).get(REJECTED):
        return TrialStatus.REJECTED
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


def pareto_rows(rows: Iterable[Mapping[str, Any]], objectives: Mapping[str, str]) -> list[dict[str, Any]]:
    """The usable trials no other usable trial beats on every objective ({result key: "max" or "min"}):
    at least as good on all and better on one. Trials missing an objective's value take no part."""
    pts = []
    for r in rows:
        try:
            usable = TrialStatus.parse(r.get("status")).usable
        except HebbnasError:
            usable = False
        vals = [_number(r.get(k)) for k in objectives]
        if usable and all(v is not None for v in vals):
            pts.append((dict(r), [v if objectives[k] == "max" else -v for k, v in zip(objectives, vals)]))
    front = []
    for r, a in pts:
        dominated = any(all(bj >= aj for aj, bj in zip(a, b)) and any(bj > aj for aj, bj in zip(a, b))
                        for _, b in pts)
        if not dominated:
            front.append(r)
    return front


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

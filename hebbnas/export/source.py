"""What to export: a run's best model, an interrupted run's best trial, a `hebbnas train --out` folder, or a
checkpoint file, resolved into one `Source` (topology, weights, metrics, where it came from)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hebbnas import layout
from hebbnas.errors import HebbnasError, one_line
from hebbnas.export.common import model_from, shape_or_none, topology_from, torch_load
from hebbnas.model import GoogLeNet
from hebbnas.topology import DEFAULT_INPUT, Topology

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Source:
    """A trained model to export and where it came from (a run's best, a trial, or a checkpoint file)."""

    topology: Topology
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, Any]
    checkpoint: Path
    run: Path | None = None
    trial_id: str | None = None
    note: str | None = None
    config: dict[str, Any] | None = None

    def input_shape(self) -> tuple[int, int, int]:
        """Deploy shape: metrics' ``input``, else the run config's ``deploy_input``, else 3x224x224."""
        shape = shape_or_none(self.metrics.get("input"))
        if shape is None and self.config:
            shape = shape_or_none(self.config.get("deploy_input") or self.config.get("input"))
        return shape or (self.topology.in_channels, *DEFAULT_INPUT[1:])

    def model(self) -> GoogLeNet:
        """The inference model (no aux heads), eval mode, weights loaded."""
        return model_from(self.topology, self.state_dict, str(self.checkpoint))


def trial_source(run: str | os.PathLike[str], trial_id: str) -> Source:
    """One trial of a run (any of best/pareto.csv's front, say): its last checkpoint."""
    from hebbnas import runfolder as rf

    run = Path(run)
    ckpt = rf.trial_checkpoint_path(run, trial_id)
    if not ckpt.is_file():
        raise HebbnasError(f"--trial {trial_id}: no checkpoint at {ckpt} (trial ids are in {run / layout.TRIALS_CSV})")
    src = source_from_checkpoint(ckpt, run=run, metrics_json=None)
    _refuse_proxy(src, run)
    return dataclasses.replace(src, trial_id=str(trial_id), config=rf.read_config(run, missing_ok=True, broken_ok=True),
                               note=f"exporting trial {trial_id} of {run} (its last epoch's weights)")


def find_source(path: str | os.PathLike[str]) -> Source:
    """Resolve a run folder (its ``best/``, else its best trial), a `hebbnas train --out` folder, or a
    checkpoint file."""
    from hebbnas import runfolder as rf

    p = Path(path)
    if not p.exists():
        raise HebbnasError(f"{p}: no such run folder or checkpoint")
    if p.is_file():
        return source_from_checkpoint(p, run=None, metrics_json=p.parent / layout.METRICS)
    best = p / layout.BEST_MODEL
    markers = (best, p / layout.BEST_DIR, p / layout.TRIALS_CSV, p / layout.CONFIG, p / layout.TRIALS_DIR)
    if not any(m.exists() for m in markers):
        if (p / layout.MODEL).is_file():  # hebbnas train --out DIR
            return source_from_checkpoint(p / layout.MODEL, run=p, metrics_json=p / layout.METRICS)
        raise HebbnasError(f"{p} is not a hebbnas run folder (no {layout.BEST_MODEL}, {layout.TRIALS_CSV} or "
                           f"{layout.CONFIG})")
    config = rf.read_config(p, missing_ok=True, broken_ok=True)
    if best.is_file():
        src = source_from_checkpoint(best, run=p, metrics_json=p / layout.BEST_METRICS)
        _refuse_proxy(src, p)
        return dataclasses.replace(src, config=config)
    return _best_trial(p, config)


def _best_trial(run: Path, config: dict[str, Any]) -> Source:
    """An interrupted search: the best trial by the run folder's one rule whose checkpoint exists.

    The accuracy reported is the one of the exported weights (the checkpoint's last epoch).
    """
    from hebbnas import runfolder as rf
    from hebbnas.trials import METRIC, best_row

    try:
        rows = rf.read_run_rows(run)
    except Exception as e:  # noqa: BLE001  # pandas raises many types for a bad CSV; all mean "unreadable"
        raise HebbnasError(f"cannot read {run / layout.TRIALS_CSV}: {one_line(e)}") from None
    if rows and any(c not in rows[0] for c in ("trial_id", "status", METRIC)):
        missing = [c for c in ("trial_id", "status", METRIC) if c not in rows[0]]
        raise HebbnasError(f"{run / layout.TRIALS_CSV} lacks column(s) {', '.join(missing)}")
    rows = [r for r in rows if r.get("stage", "search") == "search"]  # an interrupted final stage chose nothing
    usable = [r for r in rows if _usable(r)]
    best = best_row(rows, has_checkpoint=lambda tid: rf.trial_checkpoint_path(run, tid).is_file())
    if best is None:
        if usable:
            raise HebbnasError(f"no completed trial of {run} has a checkpoint (trials/<trial_id>/checkpoint.pt); "
                               "nothing to export")
        raise HebbnasError(f"no trial of {run} completed; nothing to export")
    tid = str(best["trial_id"])
    ckpt = rf.trial_checkpoint_path(run, tid)
    src = source_from_checkpoint(ckpt, run=run, metrics_json=None)
    _refuse_proxy(src, run)
    metrics = dict(src.metrics)
    metrics.setdefault(METRIC, float(best[METRIC]))
    metrics["trial_id"] = tid
    note = (f"{run} has no best/ (search interrupted?): exporting trial {tid}, val acc "
            f"{float(metrics[METRIC]):.4f} (its last epoch, the weights exported) of {len(usable)} completed trial(s)")
    return Source(src.topology, src.state_dict, metrics, ckpt, run, tid, note, config)


def _refuse_proxy(src: Source, run: Path) -> None:
    """A width-proxy run's weights belong to a narrowed copy, not to the topology it found."""
    width = float(src.metrics.get("proxy_width") or 1.0)
    if width < 1:
        raise HebbnasError(
            f"{run} trained {width:g}-width proxies, whose weights are not the deployed model; train the full-width "
            f"topology first (hebbnas train {run / layout.BEST_TOPOLOGY} --out DIR), then export DIR")


def _usable(row: Mapping[str, Any]) -> bool:
    from hebbnas.trials import TrialStatus

    try:
        return TrialStatus.parse(row.get("status")).usable
    except HebbnasError:
        return False


def source_from_checkpoint(path: Path, run: Path | None, metrics_json: Path | None) -> Source:
    obj = torch_load(path)
    if not (isinstance(obj, Mapping) and "topology" in obj and "state_dict" in obj):
        raise HebbnasError(f"{path} is not a hebbnas checkpoint (expected a dict with topology and state_dict)")
    topology = topology_from(obj["topology"], path)
    metrics = dict(obj.get("metrics") or {})
    if "metadata" in obj and isinstance(obj["metadata"], Mapping):  # a state_dict export
        meta = obj["metadata"]
        metrics = {**{k: meta.get(k) for k in ("input", "dataset", "resolution", "val_acc", "test_acc", "mean",
                                                 "std", "trial_id") if meta.get(k) is not None}, **metrics}
    if metrics_json is not None and metrics_json.is_file():
        try:
            metrics.update(json.loads(metrics_json.read_text()))
        except (OSError, ValueError) as e:
            raise HebbnasError(f"cannot read {metrics_json}: {one_line(e)}") from None
    trial = metrics.get("trial_id")
    return Source(topology, dict(obj["state_dict"]), metrics, path, run, None if trial is None else str(trial))


"""What a finished (or interrupted) Tune experiment holds, as trials.csv rows: statuses, nodes, checkpoints.

Shared by the search rounds and the final stage, which both run as Tune experiments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hebbnas.errors import error_line
from hebbnas.trials import CHECKPOINT_FILE, TrialStatus, finished_status, trial_row


def _trial_id_of(result: Any) -> str:
    return str(result.metrics.get("trial_id") or Path(str(result.path)).name)


def _trial_status(grid: Any) -> dict[str, str]:
    """Tune's status per trial id (private attribute; empty when Ray changes it)."""
    try:
        return {t.trial_id: str(t.status) for t in grid._experiment_analysis.trials}
    except AttributeError:
        return {}


def rows_from_grid(grid: Any, k: int | None, strategy: str, max_epochs: int, finished_ids: set[str] | None
                   ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of a round's trials and Tune's result per trial id.

    `finished_ids` (when Tune ran steps) says which trials really finished: Ctrl-C marks every trial
    TERMINATED.
    """
    statuses = _trial_status(grid)
    rows, results = [], {}
    for r in grid:
        tid = _trial_id_of(r)
        err = r.error is not None or statuses.get(tid) == "ERROR"
        tune_status = statuses.get(tid, "TERMINATED" if not err else "ERROR")
        if finished_ids is not None and tid not in finished_ids and not err:
            tune_status = "INTERRUPTED"
        if tune_status in ("TERMINATED", "ERROR"):
            status = finished_status(r.metrics, err, max_epochs)
        else:
            status = TrialStatus.parse(tune_status)  # pending, paused, running: an interrupted round
        rows.append(trial_row(tid, r.config or {}, r.metrics, status, round_=k, strategy=strategy,
                              error=error_line(r.error) if r.error is not None else "", nodes=_nodes(r)))
        results[tid] = r
    return rows, results


def _nodes(result: Any) -> list[str]:
    """Every node a trial reported from, in order (Tune keeps each report, so a resumed driver sees them too)."""
    try:
        df = result.metrics_dataframe
    except Exception:  # noqa: BLE001 - an experiment without its results file: the last node only
        return []
    if df is None or "node_id" not in df.columns:
        return []
    return list(dict.fromkeys(str(n) for n in df["node_id"].dropna() if str(n)))


def load_checkpoint(checkpoint: Any) -> dict[str, Any]:
    """The export dict of a Tune checkpoint (any storage)."""
    import torch

    with checkpoint.as_directory() as d:
        return torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)

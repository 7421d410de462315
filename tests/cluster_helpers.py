"""Processes and Ray for the end-to-end tests: find what a test started and end exactly that, run
`hebbnas search` as a user would, and check a finished run folder. Plain functions (tests.cluster_helpers)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

BUDGET = 3e8  # small nets keep the tiny trials quick; the budget logic is the same at 1.5e9
DEPLOY = (3, 224, 224)
RAY = str(Path(sys.executable).with_name("ray"))
HEBBNAS = [sys.executable, "-m", "hebbnas.cli"]
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}  # Ray's token auth stays on
ENV.pop("RAY_ADDRESS", None)
ENV.pop("RAY_AUTH_MODE", None)  # `ray start` keeps token auth; hebbnas search joins it in token mode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pids_mentioning(text: str) -> list[int]:
    """Processes whose command line names `text` (our unique temp dir): what this module started."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text in (d / "cmdline").read_bytes().decode(errors="replace"):
                    out.append(int(d.name))
            except OSError:
                continue
    return out


def _descendants(pid: int) -> set[int]:
    """`pid` and every process below it (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo.extend(children.get(p, []))
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _search(*args: str, timeout: float = 420) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEBBNAS, "search", *args], env=ENV, capture_output=True, text=True, timeout=timeout)


def _check_run(run: Path, budget: float, strategy: str, n_trials: int) -> pd.DataFrame:
    """Everything a finished run folder promises."""
    import yaml

    from hebbnas.data import load_dataset
    from hebbnas.model import build
    from hebbnas.topology import Topology
    from hebbnas.train import evaluate, resolve_device

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["budget"] == budget and cfg["strategy"] == strategy and cfg["deploy_input"] == list(DEPLOY)
    assert {"python", "torch", "ray", "optuna", "hebbnas"} <= set(cfg["versions"])
    every = pd.read_csv(run / "trials.csv", dtype={"trial_id": str})
    assert every["trial_id"].is_unique and set(every["stage"]) <= {"search", "final"}
    final = every[every["stage"] == "final"]
    df = every[every["stage"] == "search"].reset_index(drop=True)
    assert len(df) == n_trials
    assert set(df["status"]) <= {"completed", "stopped"}
    assert (df["macs"] <= budget).all() and (df["strategy"] == strategy).all()
    assert {"inception3a.b1", "inception4c.b2", "inception5b.b4", "best_val_acc", "epochs", "params"} <= set(df.columns)
    for _, row in df.iterrows():  # the budget holds at the deploy shape for the widths recorded
        assert Topology.from_json(row["topology"]).macs(DEPLOY) == row["macs"] <= budget
        assert (run / "trials" / row["trial_id"] / "checkpoint.pt").is_file()
    # Optuna saw ASHA-stopped trials as PRUNED, finished ones as COMPLETE
    assert (df.loc[df["status"] == "stopped", "optuna_state"] == "PRUNED").all()
    assert (df.loc[df["status"] == "completed", "optuna_state"] == "COMPLETE").all()
    metrics = json.loads((run / "best" / "metrics.json").read_text())
    assert metrics["macs"] <= budget and metrics["input"] == list(DEPLOY) and metrics["strategy"] == strategy
    if cfg["settings"].get("final_top"):  # the answer comes from the final stage: control + finalists x seeds
        s = cfg["settings"]
        assert metrics["trial_id"] in set(final["trial_id"]) and metrics["stage"] == "final"
        assert len(final) == (1 + len(set(final["network"]) - {"control"})) * s["final_seeds"]
        assert final["control"].astype(str).str.lower().eq("true").sum() == s["final_seeds"]
        assert (final["status"] == "completed").all() and final["test_acc"].notna().all()
        assert (final["epochs"] == s["final"]["epochs"]).all() and (final["macs"] <= budget).all()
        assert set(final["network"]) - {"control"} <= set(df["trial_id"])
        assert metrics["final"]["sentence"] and (run / "final.csv").is_file()
        for _, row in final.iterrows():
            assert (run / "trials" / row["trial_id"] / "checkpoint.pt").is_file()
    else:
        assert metrics["trial_id"] in set(df["trial_id"])
    # best/ rebuilds and reproduces the recorded test accuracy
    saved = torch.load(run / "best" / "model.pt", weights_only=True)
    t = Topology.from_json((run / "best" / "topology.json").read_text())
    assert t.to_dict() == saved["topology"] and t.macs(DEPLOY) == metrics["macs"]
    model = build(t, aux=False)
    model.load_state_dict(saved["state_dict"])
    p = cfg["settings"]["proxy"]
    data = load_dataset(p["dataset"], resolution=p["resolution"], seed=p["seed"], train_subset=p["train_subset"])
    # the search evaluated on its own device (CUDA where present): compare on the same one
    assert evaluate(model, *data.test, device=resolve_device("auto")) == pytest.approx(metrics["test_acc"], abs=1e-9)
    assert (run / "report" / "round-1" / "report.md").is_file()
    return df


def _no_asha_space(tmp_path: Path, epochs: int, final_top: int = 1) -> Path:
    """googlenet.yaml with smoke-sized data and ASHA unable to stop a trial (grace = max epochs).

    `final_top` 0 leaves the final stage out, for tests that read only the search's trials (CI time)."""
    import yaml

    from hebbnas.space import SPACES_DIR

    raw = yaml.safe_load((SPACES_DIR / "googlenet.yaml").read_text())
    raw["proxy"].update(train_subset=160, resolution=32, probe_resolution=32, seed_epochs=1, probe_images=64)
    raw["search"].update(trials=3, trial_epochs=epochs, grace_period=epochs, concurrency=2, cpus_per_trial=1,
                         final_top=final_top)
    raw["final"] = {"epochs": 1}  # a short final stage: the control and one finalist on two seeds, one epoch each
    p = tmp_path / "no-asha.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p

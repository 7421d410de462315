"""The width proxy: trials train a narrowed copy, the budget and best/ keep the full-width topology."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from hebbnas.errors import HebbnasError
from hebbnas.topology import proxy_network
from hebbnas.search import resolve_settings
from hebbnas.space import load_space
from hebbnas.topology import Topology, get_topology


def test_proxy_network_is_the_topology_at_full_width() -> None:
    t = get_topology("googlenet")
    assert proxy_network(t, 1.0) is t
    narrow = proxy_network(t, 0.25)
    assert narrow.module("inception3a").b1 == 16 and narrow.macs() < t.macs() / 10


@pytest.mark.parametrize("width", [0, -0.5, 1.5, "wide"])
def test_width_must_be_a_share(width: object) -> None:
    with pytest.raises(HebbnasError, match=r"--proxy-width must be a number in \(0, 1\]"):
        resolve_settings(load_space("googlenet"), "googlenet", {"budget": 3e8, "proxy_width": width})


@pytest.mark.slow
def test_two_rounds_with_a_width_proxy_and_prescreen(tmp_path: Path) -> None:
    """One search (CI time) serves three features: --rounds 2 (re-probe, best across rounds), the width
    proxy, and --prescreen (score 3 candidates, train the best)."""
    run = tmp_path / "narrow"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    cli = [sys.executable, "-m", "hebbnas.cli"]
    r = subprocess.run([*cli, "search", "--budget", "3e8", "--smoke", "--proxy-width", "0.5", "--strategy", "hebbian", "--rounds", "2",
                        "--prescreen", "3", "--trials", "2", "--final-top", "0", "--out", str(run)],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "note: trials trained 0.5-width copies" in r.stdout
    df = pd.read_csv(run / "trials.csv", dtype={"trial_id": str})
    # rounds: round 2 re-probed round 1's best network, and best/ is the best of both rounds
    assert "round 2: probing round 1's best network" in r.stdout and sorted(df["round"]) == [1, 2]
    for k in (1, 2):
        assert (run / "probe" / f"round-{k}.npz").is_file() and (run / "report" / f"round-{k}" / "report.md").is_file()
    from hebbnas.runfolder import read_run_rows
    from hebbnas.trials import best_row

    per_round = [best_row([r for r in read_run_rows(run) if r["round"] == k], lambda t: True) for k in (1, 2)]
    top = best_row(per_round, lambda t: True)  # the one rule, across rounds (ties: the earlier round)
    assert json.loads((run / "best" / "metrics.json").read_text())["trial_id"] == top["trial_id"]
    round1 = df[df["round"] == 1].iloc[0]
    assert json.loads((run / "probe" / "round-2.topology.json").read_text()) == json.loads(round1["topology"])
    assert df["prescreen_pick"].between(0, 2).all() and df["prescreen_score"].notna().all()
    for _, row in df.iterrows():
        scores = json.loads(row["prescreen_scores"])
        assert len(scores) == 3 and row["prescreen_score"] == pytest.approx(max(scores), rel=1e-6)
    assert yaml.safe_load((run / "config.yaml").read_text())["settings"]["prescreen"] == 3
    best = Topology.from_json((run / "best" / "topology.json").read_text())
    assert 0.99 * 3e8 < best.macs((3, 224, 224)) <= 3e8  # the candidate, at full width, fills the budget
    saved = torch.load(run / "best" / "model.pt", weights_only=True)
    trained = Topology.from_dict(saved["topology"])
    assert trained == best.narrowed(0.5)  # the weights belong to its narrowed copy
    metrics = json.loads((run / "best" / "metrics.json").read_text())
    assert metrics["proxy_width"] == 0.5 and metrics["macs"] == best.macs((3, 224, 224))
    r = subprocess.run([*cli, "export", str(run)], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2 and "not the deployed model" in r.stderr and r.stderr.count("\n") == 1
    # the documented path: train the full-width topology, then export that
    out = tmp_path / "full"
    r = subprocess.run([*cli, "train", str(run / "best" / "topology.json"), "--train-subset", "120", "--epochs", "1",
                        "--resolution", "32", "--threads", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert Topology.from_json((out / "topology.json").read_text()).widths() == best.widths()
    r = subprocess.run([*cli, "export", str(out), "--format", "state_dict"], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "export" / "model.pt").is_file()

"""`analysis/ablation.py --smoke` runs real searches end to end and writes the documented schema."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis import ablation

ROOT = Path(__file__).resolve().parent.parent


def test_efficiency_follows_start_order_and_keeps_digit_ids(tmp_path: Path) -> None:
    ab = ablation
    # ids that pandas would read as numbers; start order differs from id order; one trial has no checkpoint
    rows = [("1e345678", 30.0, 0.70, True), ("12345678", 10.0, 0.60, True), ("abcdef01", 20.0, 0.90, False),
            ("00000009", 40.0, 0.80, True)]
    pd.DataFrame([{"trial_id": i, "round": 1, "started": s, "val_acc": v} for i, s, v, _ in rows]).to_csv(
        tmp_path / "trials.csv", index=False)
    for i, _, _, ckpt in rows:
        if ckpt:
            (tmp_path / "trials" / i).mkdir(parents=True)
            (tmp_path / "trials" / i / "checkpoint.pt").write_bytes(b"")
    trials = ab.read_trials(tmp_path / "trials.csv")
    assert list(ab.trial_order(trials)["trial_id"]) == ["12345678", "abcdef01", "1e345678", "00000009"]
    test_acc = {"12345678": 0.61, "1e345678": 0.71, "00000009": 0.81}
    curve = ab.efficiency(tmp_path, trials, lambda tid: test_acc[tid])
    assert [k for k, _ in curve] == [1, 2, 3, 4]
    # k=2: abcdef01 has the best val but no checkpoint, so the pick stays 12345678
    assert [acc for _, acc in curve] == [0.61, 0.61, 0.71, 0.81]
    assert not any(math.isnan(a) for _, a in curve)
    # a search whose ids are all digits (the case that broke a CI run) keeps them as text
    pd.DataFrame({"trial_id": ["12345678", "00000009"], "round": 1, "started": [2.0, 1.0]}).to_csv(
        tmp_path / "digits.csv", index=False)
    assert list(ab.trial_order(ab.read_trials(tmp_path / "digits.csv"))["trial_id"]) == ["00000009", "12345678"]


@pytest.mark.slow
def test_ablation_smoke(tmp_path: Path) -> None:
    out, runs = tmp_path / "results", tmp_path / "runs"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_AUTH_MODE", None)
    r = subprocess.run([sys.executable, str(ROOT / "analysis" / "ablation.py"), "--smoke", "--out", str(out),
                        "--runs", str(runs)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    df = pd.read_csv(out / "ablation.csv")
    assert list(df.columns) == ["budget", "strategy", "seed", "best_val_acc", "test_acc", "macs", "params",
                                "trials", "epochs", "wall_s", "run"]
    assert set(df["strategy"]) == {"paper"} and len(df) == 1
    assert (df["macs"] <= df["budget"]).all() and (df["macs"] >= 0.98 * df["budget"]).all()
    assert df["test_acc"].between(0, 1).all() and (df["trials"] == 2).all() and (df["wall_s"] > 0).all()
    for run in df["run"]:  # the efficiency curve orders trials by their recorded start
        assert pd.read_csv(ROOT / run / "trials.csv")["started"].notna().all()
    eff = pd.read_csv(out / "efficiency.csv")
    assert list(eff.columns) == ["budget", "strategy", "seed", "k", "test_acc"]
    assert sorted(eff["k"].unique()) == [1, 2]
    md = (out / "ablation.md").read_text()
    assert "python analysis/ablation.py --smoke" in md and "| 3e+08 | paper |" in md and "k=2" in md
    for png in ("accuracy_vs_macs.png", "efficiency.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

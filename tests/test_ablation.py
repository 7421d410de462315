"""`analysis/ablation.py --smoke` runs real searches end to end and writes the documented schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_ablation_smoke(tmp_path: Path) -> None:
    out, runs = tmp_path / "results", tmp_path / "runs"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    r = subprocess.run([sys.executable, str(ROOT / "analysis" / "ablation.py"), "--smoke", "--out", str(out),
                        "--runs", str(runs)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    df = pd.read_csv(out / "ablation.csv")
    assert list(df.columns) == ["budget", "strategy", "seed", "best_val_acc", "test_acc", "macs", "params",
                                "trials", "epochs", "wall_s", "run"]
    assert set(df["strategy"]) == {"hebbian", "paper"} and len(df) == 2
    assert (df["macs"] <= df["budget"]).all() and (df["macs"] >= 0.98 * df["budget"]).all()
    assert df["test_acc"].between(0, 1).all() and (df["trials"] == 2).all() and (df["wall_s"] > 0).all()
    for run in df["run"]:  # the efficiency curve orders trials by their recorded start
        assert pd.read_csv(ROOT / run / "trials.csv")["started"].notna().all()
    eff = pd.read_csv(out / "efficiency.csv")
    assert list(eff.columns) == ["budget", "strategy", "seed", "k", "test_acc"]
    assert sorted(eff["k"].unique()) == [1, 2]
    md = (out / "ablation.md").read_text()
    assert "python analysis/ablation.py --smoke" in md and "| 3e+08 | hebbian |" in md and "k=2" in md
    for png in ("accuracy_vs_macs.png", "efficiency.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

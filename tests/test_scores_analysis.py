"""analysis/scores.py: the prescreen simulation's logic, and a seconds-long run on a smoke zoo."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import scores

ROOT = Path(__file__).resolve().parent.parent


def test_prescreen_simulation_rewards_an_informative_score() -> None:
    s = scores
    rng = np.random.default_rng(0)
    acc = np.linspace(0.5, 0.9, 20)
    plain = s.simulate_prescreen(acc, None, 8, 1, 400, rng)
    oracle = s.simulate_prescreen(acc, acc, 8, 4, 400, rng)
    anti = s.simulate_prescreen(acc, -acc, 8, 4, 400, rng)
    assert plain.shape == (400, 8) and (np.diff(plain, axis=1) >= 0).all()  # best-so-far never drops
    assert oracle[:, 0].mean() > plain[:, 0].mean() + 0.05 > anti[:, 0].mean() + 0.1
    full = s.simulate_prescreen(acc, None, 20, 1, 10, rng)
    assert np.allclose(full[:, -1], 0.9)  # after every candidate, the best is the best


@pytest.mark.slow
def test_scores_smoke_on_a_smoke_zoo(zoo_smoke: Path, tmp_path: Path) -> None:
    import subprocess

    zoo = zoo_smoke
    r = subprocess.run([sys.executable, str(ROOT / "analysis" / "scores.py"), "--smoke", "--zoo", str(zoo), "--out",
                        str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    df = pd.read_csv(tmp_path / "scores.csv")
    assert {"hebb_erank", "meco", "naswot", "params", "macs", "wall_s", "variant"} <= set(df.columns)
    assert set(df["variant"]) == {"untrained", "trained3"} and df["hebb_erank"].notna().all()
    md = (tmp_path / "scores.md").read_text()
    assert "Spearman" in md and "Prescreen, simulated by lookup" in md and "| params |" in md

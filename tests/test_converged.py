"""analysis/converged.py: the smoke run reuses the zoo's probe and candidates, records learning curves,
plans seed by seed, and its read-out's statistics are right."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis import converged, zoo

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smoke(zoo_smoke: Path) -> Path:
    """`converged.py --smoke` against the shared zoo smoke folder (its probe, zoo.csv and randoms)."""
    out = zoo_smoke.parent / "converged"
    r = subprocess.run([sys.executable, str(ROOT / "analysis" / "converged.py"), "--smoke", "--jobs", "2",
                        "--out", str(out), "--zoo", str(zoo_smoke)], capture_output=True, text=True, timeout=300,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_smoke_trains_the_zoo_candidates_with_curves_and_writes_the_readout(smoke: Path, zoo_smoke: Path) -> None:
    df = pd.read_csv(smoke / "converged.csv", keep_default_na=False)
    zoo_c = {c["candidate"]: c for c in json.loads((zoo_smoke / "zoo-candidates.json").read_text())}
    z = pd.read_csv(zoo_smoke / "zoo.csv", keep_default_na=False)
    # the same topologies as the zoo's (hebbian ones derived from the zoo's cached probe)
    for cand, h in df.groupby("candidate")["topology_hash"].first().items():
        assert h == z[z["candidate"] == cand]["topology_hash"].iloc[0], cand
        assert cand in zoo_c
    assert df.groupby("candidate")["seed"].apply(sorted).to_dict() == {
        "paper": [0, 1, 2], "hebbian-default": [0, 1, 2], "hebbian-split": [0, 1, 2],
        "random-00": [0, 1], "random-01": [0, 1], "random-02": [0, 1]}
    for curve in df["val_curve"]:
        assert len(json.loads(curve)) == 3  # one validation accuracy per epoch
    assert (df["val_acc"] == df["val_curve"].map(lambda c: json.loads(c)[-1])).all()
    text = (smoke / "converged.md").read_text()
    for heading in ("Accuracy at convergence", "against paper", "Does the zoo rank like convergence",
                    "fidelity curve", "stem confound"):
        assert heading in text
    assert (smoke / "converged_fidelity.png").stat().st_size > 0
    meta = json.loads((smoke / "converged-meta.json").read_text())
    assert meta["protocol"]["augment"] and meta["sessions"][-1]["commit"]


def test_a_rerun_reads_every_unit_from_the_cache(smoke: Path, zoo_smoke: Path) -> None:
    before = pd.read_csv(smoke / "converged.csv", keep_default_na=False)
    r = subprocess.run([sys.executable, str(ROOT / "analysis" / "converged.py"), "--smoke", "--out", str(smoke),
                        "--zoo", str(zoo_smoke)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert ": val " not in r.stdout  # nothing trained: a trained unit logs "<candidate> seed s: val ..."
    assert pd.read_csv(smoke / "converged.csv", keep_default_na=False).equals(before)


def test_plan_is_seed_by_seed_with_the_randoms_late_seeds_last() -> None:
    p = converged.protocol(epochs=2, train_images=10, focal_seeds=3, random_seeds=2)
    cands = [zoo.Candidate(n, k, None) for n, k in (("paper", "paper"), ("hebbian-x", "hebbian"), ("random-a", "random"))]
    keys = [(u.cand.name, u.seed) for u in converged.plan_units(p, cands)]
    assert keys == [("paper", 0), ("hebbian-x", 0), ("random-a", 0), ("paper", 1), ("hebbian-x", 1),
                    ("paper", 2), ("hebbian-x", 2), ("random-a", 1)]


def test_fidelity_curve_and_the_epoch_it_settles() -> None:
    final = [0.9, 0.8, 0.7, 0.6]
    curves = [[0.1, 0.5, 0.9], [0.2, 0.6, 0.8], [0.3, 0.4, 0.7], [0.4, 0.3, 0.6]]
    fid = converged.fidelity_curve(curves, final)
    assert fid == pytest.approx([-1.0, 0.8, 1.0])
    assert converged.first_epoch_above(fid, 0.8) == 3  # 0.8 is not above 0.8
    assert converged.first_epoch_above([0.9, 0.5, 0.9], 0.8) == 3  # must stay above
    assert converged.first_epoch_above([0.1, 0.2], 0.8) is None


@pytest.mark.parametrize("zoo_d, lo, hi, word", [
    (-0.05, -0.07, -0.05, "holds"), (-0.05, -0.03, -0.01, "shrinks"), (-0.05, -0.01, 0.02, "vanishes"),
    (-0.05, 0.01, 0.03, "flips"), (0.02, 0.01, 0.03, "holds")])
def test_verdict_words(zoo_d: float, lo: float, hi: float, word: str) -> None:
    assert converged.verdict(zoo_d, lo, hi).startswith(word)

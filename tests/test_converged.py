"""analysis/converged.py: the smoke run reuses the zoo's probe and candidates, records learning curves,
plans seed by seed, and its read-out's statistics are right."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis import converged, zoo_protocol

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
    for heading in ("Accuracy after", "against paper", "Does the zoo rank like the", "Levelled off?",
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
    cands = [zoo_protocol.Candidate(n, k, None) for n, k in (("paper", "paper"), ("hebbian-x", "hebbian"), ("random-a", "random"))]
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


def _zoo_rows(macs: dict[str, float], acc: dict[str, list[float]]) -> pd.DataFrame:
    kind = lambda c: "paper" if c == "paper" else ("random" if c.startswith("random") else "hebbian")  # noqa: E731
    return pd.DataFrame([{"candidate": c, "kind": kind(c), "seed": s, "test_acc": a, "proxy_macs": macs[c]}
                         for c, accs in acc.items() for s, a in enumerate(accs)])


def test_the_stem_line_groups_randoms_by_papers_proxy_macs_not_by_the_random_minimum() -> None:
    # two randoms within 1% of paper's proxy MACs (one of them below paper's), two with the wider stem;
    # the random minimum (random-a) is not the only one with paper's stem
    macs = {"paper": 8830712, "random-a": 8830000, "random-b": 8831500, "random-c": 9734000, "random-d": 9735000,
            "hebbian-x": 8831000}
    acc = {"paper": [0.80, 0.82], "random-a": [0.70, 0.72], "random-b": [0.74, 0.76], "random-c": [0.60, 0.62],
           "random-d": [0.64, 0.66], "hebbian-x": [0.50, 0.52]}
    line = converged.stem_line(_zoo_rows(macs, acc))
    assert "the 2 with paper's stem (random-a, random-b" in line
    assert "average 0.7300" in line  # (0.71 + 0.75) / 2
    assert "the 2 with wider stems 0.6300" in line  # (0.61 + 0.65) / 2
    assert "4 randoms (2 seeds each)" in line  # hebbian and paper are not randoms
    assert "Spearman(proxy MACs, accuracy) = -0.60" in line  # ranks by MACs a<b<c<d, by accuracy c<d<a<b
    assert converged.has_papers_stem(8830712 * 1.009, 8830712) and not converged.has_papers_stem(8830712 * 1.02, 8830712)


def test_the_stem_line_uses_only_the_seeds_every_candidate_has() -> None:
    macs = {"paper": 100.0, "random-a": 100.0, "random-b": 110.0}
    z = _zoo_rows(macs, {"paper": [0.8, 0.8], "random-a": [0.7, 0.7], "random-b": [0.6, 0.6]})
    z = pd.concat([z, pd.DataFrame([{"candidate": "random-a", "kind": "random", "seed": 2, "test_acc": 0.1,
                                     "proxy_macs": 100.0}])])  # a seed only random-a has: not in its mean
    assert "(random-a: proxy MACs within 1% of paper's) average 0.7000" in converged.stem_line(z)


def test_percentiles_rank_every_candidate_on_the_seeds_all_of_them_share() -> None:
    # the focal candidate has 4 seeds, the randoms 2: on all its seeds its mean (0.80) beats every random,
    # on the shared seeds 0-1 (0.65) it beats only random-a
    acc = pd.DataFrame({0: [0.6, 0.6, 0.7, 0.8], 1: [0.7, 0.6, 0.7, 0.8], 2: [0.9, float("nan"), float("nan"),
                        float("nan")], 3: [1.0, float("nan"), float("nan"), float("nan")]},
                       index=["focal", "random-a", "random-b", "random-c"])
    pct, seeds = converged.shared_seed_percentiles(acc, ["focal"], ["random-a", "random-b", "random-c"])
    assert seeds == [0, 1]
    assert pct["focal"] == pytest.approx(100 / 3)
    # a tie counts half
    tied = acc.copy()
    tied[1] = [0.6, 0.6, 0.7, 0.8]
    pct, _ = converged.shared_seed_percentiles(tied, ["focal"], ["random-a"])
    assert pct["focal"] == pytest.approx(50.0)


@pytest.mark.parametrize("curve, flat", [([0.5, 0.8885, 0.889, 0.8979], True), ([0.5, 0.88, 0.889, 0.8901], False),
                                         ([0.654, 0.767, 0.797, 0.828, 0.842, 0.860, 0.869, 0.883, 0.887, 0.89295], True),
                                         ([0.9, 0.9], False)])
def test_levelled_off_is_the_pilots_one_point_over_two_epochs_rule(curve: list[float], flat: bool) -> None:
    assert converged.levelled_off(curve) is flat

"""analysis/hebbian_v3.py: the smoke run trains the probe unit (with its probe and weights), derives the
five candidates from it, reads units the converged run already has instead of training them, and its
read-out answers the stated question; the statistics are right."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import hebbian_v3, zoo_protocol, zoo_units

ROOT = Path(__file__).resolve().parent.parent
FAKE_TEST_ACC = 0.4321  # a paper unit "already in the converged cache": the run must read it, not train it


def _fake_converged(root: Path) -> Path:
    """A converged results folder: converged.csv (paper, the seed-probe split policy, three randoms on
    seeds 0-1) and a cache holding one paper unit (seed 1) with a made-up accuracy."""
    p, zoo_p = hebbian_v3.smoke_protocol(), zoo_protocol.smoke_protocol()
    paper = hebbian_v3.paper_candidate(zoo_p).topology
    path = zoo_units.unit_path(root / "converged-cache", p.main, paper, 1, zoo_units.recipe_tag(p))
    path.parent.mkdir(parents=True)
    small = paper.narrowed(p.main.width)
    path.write_text(json.dumps({"seed": 1, "val_acc": 0.4, "test_acc": FAKE_TEST_ACC, "macs": paper.macs(),
                                "params": paper.params(), "proxy_macs": small.macs((3, 32, 32)),
                                "proxy_params": small.params(), "topology_hash": paper.hash(), "commit": "fake"}))
    rows = [{"candidate": c, "kind": k, "seed": s, "test_acc": a + 0.01 * s, "proxy_macs": 1}
            for c, k, a in (("paper", "paper", 0.20), ("hebbian-split", "hebbian", 0.15), ("random-00", "random", 0.1),
                            ("random-01", "random", 0.2), ("random-02", "random", 0.3)) for s in (0, 1)]
    pd.DataFrame(rows).to_csv(root / "converged.csv", index=False)
    return root


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("hebbian-v3")
    conv = _fake_converged(root / "converged")
    out = root / "v3"
    r = subprocess.run([sys.executable, str(ROOT / "analysis" / "hebbian_v3.py"), "--smoke", "--jobs", "2", "--out",
                        str(out), "--converged", str(conv)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, conv


def test_smoke_trains_the_probe_unit_and_the_five_derivations(smoke: tuple[Path, Path]) -> None:
    out, _ = smoke
    df = pd.read_csv(out / "hebbian-v3.csv", keep_default_na=False)
    assert list(df.columns[:5]) == ["candidate", "seed", "val_acc", "test_acc", "proxy_macs"]
    names = ["paper"] + [f"hebbian-{n}" for n, _ in hebbian_v3.POLICIES]
    assert df.groupby("candidate")["seed"].apply(sorted).to_dict() == {n: [0, 1] for n in names}
    paper1 = df[(df["candidate"] == "paper") & (df["seed"] == 1)].iloc[0]
    assert paper1["test_acc"] == FAKE_TEST_ACC and paper1["source"] == "converged-cache"  # read, not trained
    assert (df[df["candidate"] != "paper"]["source"] == "hebbian-v3-cache").all()
    assert df[df["candidate"] != "paper"]["commit"].astype(bool).all()  # every new unit records its commit
    # the probe unit: its probe (on the zoo's probe images) and its weights, beside the cached record
    meta = json.loads((out / "hebbian-v3-meta.json").read_text())
    probe = meta["probe"]
    unit_dir = next((out / "hebbian-v3-cache").iterdir())
    assert (unit_dir / probe["probe_path"]).is_file() and (unit_dir / probe["weights_path"]).is_file()
    assert set(probe["candidates"]) == set(names[1:]) and meta["sessions"][-1]["commit"]
    # each derivation's report says its signal per module
    for name, _ in hebbian_v3.POLICIES:
        cols = pd.read_csv(out / "hebbian-v3-reports" / name / "modules.csv").columns
        assert any(c.startswith("signal") for c in cols) == ("pca" in name or "redundancy" in name), name
    text = (out / "hebbian-v3.md").read_text()
    for heading in ("## Accuracy", "## Each candidate against paper", "## Against the converged run's random",
                    "## The stated question", "Does any trained-probe derivation beat paper by >= 0.5 point"):
        assert heading in text, heading
    assert "hebbian-split" in text  # the seed-probe twin of the trained-probe split policy


def test_a_rerun_trains_nothing(smoke: tuple[Path, Path]) -> None:
    out, conv = smoke
    before = pd.read_csv(out / "hebbian-v3.csv", keep_default_na=False)
    r = subprocess.run([sys.executable, str(ROOT / "analysis" / "hebbian_v3.py"), "--smoke", "--out", str(out),
                        "--converged", str(conv)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not re.search(r"seed \d+: val", r.stdout)  # a trained unit logs "<candidate> seed s: val ..."
    assert pd.read_csv(out / "hebbian-v3.csv", keep_default_na=False).equals(before)


def _acc(rows: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, index=range(len(next(iter(rows.values()))))).T


def test_versus_paper_and_the_answer() -> None:
    rng = np.random.default_rng(0)
    paper = 0.89 + rng.normal(0, 0.003, 5)
    acc = _acc({"paper": list(paper), "win": list(paper + 0.010 + rng.normal(0, 0.001, 5)),
                "small-win": list(paper + 0.003 + rng.normal(0, 0.0005, 5)), "loss": list(paper - 0.02)})
    comps = {r["candidate"]: r for r in hebbian_v3.versus_paper(acc, ["win", "small-win", "loss"])}
    assert comps["win"]["beats"] and comps["win"]["lo"] > 0 and comps["win"]["n"] == 5
    assert not comps["small-win"]["beats"] and comps["small-win"]["lo"] > 0  # above zero, but under 0.5 point
    assert not comps["loss"]["beats"] and comps["loss"]["mean"] == pytest.approx(-0.02)
    assert all(r["p_holm"] >= r["p"] for r in comps.values())
    text = hebbian_v3.answer(list(comps.values()))
    assert "**Yes**: win (" in text and "small-win" not in text
    no = hebbian_v3.answer([comps["small-win"], comps["loss"]])
    assert "**No**" in no and "The closest, small-win" in no


def test_the_study_is_the_converged_protocol_on_five_paired_seeds() -> None:
    from analysis import converged

    p = hebbian_v3.protocol()
    c = converged.protocol()
    assert zoo_units.recipe_tag(p) == zoo_units.recipe_tag(c) and p.main == c.main  # the converged run's units are reusable
    assert hebbian_v3.all_seeds(p) == [0, 1, 2, 3, 4]
    assert (p.probe_resolution, p.probe_images) == (128, 600) and zoo_protocol.cpu_protocol().main.train_images == 5000
    assert [dict(k).get("energy") for n, k in hebbian_v3.POLICIES if "pca" in n] == [0.99, 0.95]

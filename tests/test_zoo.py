"""analysis/zoo.py: the smoke run writes the zoo's CSV and read-out; the statistics helpers are right."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import stats, zoo, zoo_protocol

ROOT = Path(__file__).resolve().parent.parent

REQUIRED = ("candidate", "kind", "policy", "seed", "proxy", "lr", "epochs", "train_images", "val_images",
            "test_images", "val_acc", "test_acc", "macs", "params", "train_s")


def test_smoke_writes_csv_and_readout(zoo_smoke: Path) -> None:
    out = zoo_smoke
    df = pd.read_csv(out / "zoo.csv", keep_default_na=False)
    assert set(REQUIRED) <= set(df.columns)
    assert set(df["kind"]) == {"random", "paper", "hebbian"}
    assert (df["macs"] <= 3e8).all() and (df["macs"] > 0.9 * 3e8).all()  # every candidate fitted to the budget
    assert sorted(df["seed"].unique()) == [0, 1, 2]
    # seeds 0, 1 for every candidate; the focal seed 2 for paper and the hebbian policies only
    assert set(df.loc[df["seed"] == 2, "kind"]) == {"paper", "hebbian"}
    assert df.groupby("candidate")["seed"].nunique().min() == 2
    heb = df[df["kind"] == "hebbian"]
    assert heb["policy"].str.contains('"allocation": "split"').any()
    assert (df.loc[df["kind"] != "hebbian", "policy"] == "").all()
    assert df["test_acc"].between(0, 1).all() and df["val_acc"].between(0, 1).all()
    fid = pd.read_csv(out / "zoo-fidelity.csv", keep_default_na=False)
    assert set(fid["proxy"]) == {"today", "cheap"}
    assert set(fid["kind"]) == {"random", "paper"}  # probe-independent candidates only
    text = (out / "zoo.md").read_text()
    assert "Noise floor" in text and "percentile" in text and "Proxy fidelity" in text
    assert "tells 1 pt from none" in text and "comparisons tell a 1-point difference" in text
    assert "What sets the width of the v2.3 'vs random median' intervals" in text
    assert "Headline 'vs random median' intervals above +-1 pt" in text and "| vs paper: S, paired t" in text
    assert (out / "zoo_acc_vs_params.png").exists()
    # resuming reads every unit from the cache: no training line in the log
    r2 = subprocess.run([sys.executable, str(ROOT / "analysis" / "zoo.py"), "--smoke", "--out", str(out)],
                        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "seed 0: val" not in r2.stdout
    assert pd.read_csv(out / "zoo.csv", keep_default_na=False).equals(df)


def test_paired_accuracy_keeps_only_the_seeds_every_candidate_has() -> None:
    main = pd.DataFrame({"candidate": ["a", "a", "a", "b", "b", "c", "c", "c"],
                         "seed": [0, 1, 2, 0, 2, 0, 1, 2],
                         "test_acc": [0.5, 0.6, 0.7, 0.4, 0.5, 0.8, 0.8, 0.9]})
    acc, seeds = stats.paired_accuracy(main)
    assert seeds == [0, 2]  # b lacks seed 1: a mean over it would not be paired
    assert acc.loc["b", 2] == 0.5 and math.isnan(acc.loc["b", 1])
    assert acc[seeds].mean(axis=1).round(3).to_dict() == {"a": 0.6, "b": 0.45, "c": 0.85}


def test_random_sampler_matches_the_random_strategy() -> None:
    base = zoo_protocol.base_topology()
    mult = zoo_protocol.random_multipliers(base, np.random.default_rng(0))
    assert len(mult) == sum(1 for m in base.modules for w in m.widths if w)
    assert all(0.25 <= v <= 2.0 for v in mult.values())
    t = zoo_protocol.scaled_topology(base, mult)
    m = base.modules[0]
    assert t.modules[0].b1 == max(1, round(m.b1 * mult[f"{m.name}.b1"]))


def test_growing_the_seeds_keeps_the_fidelity_units_and_runs_seed_by_seed() -> None:
    import dataclasses

    p = dataclasses.replace(zoo_protocol.smoke_protocol(), seeds=(0, 1, 2, 3), focal_seeds=(4,))
    static = zoo_protocol.static_candidates(p)
    units = zoo.plan_units(p, static, [])
    cheap = {u.seed for u in units if u.label == "cheap"}
    assert cheap == set(p.fidelity_seeds) == {0, 1}  # growing `seeds` adds main units only
    main = [u for u in units if u.phase == "main"]
    first = [u.seed for u in main[: len(static) * len(p.seeds)]]
    assert first == sorted(first)  # every candidate on seed s before any on s + 1: a stop leaves complete seeds
    rand = {u.seed for u in main if u.cand.kind == "random"}
    assert rand == {0, 1, 2, 3}
    assert {u.seed for u in main if u.cand.kind == "paper"} == {0, 1, 2, 3, 4}


def test_a_resumed_run_keeps_every_session(tmp_path: Path) -> None:
    p = zoo_protocol.smoke_protocol()
    for started, cmd in (("2026-12-01 03:04", "zoo.py --jobs 2"), ("2026-12-01 05:16", "zoo.py --collect")):
        zoo.write_meta(tmp_path, p, tmp_path, cmd, started, "2026-12-01T03:04:00", None, {}, 2, 1, 10, 5, 5)
    meta = json.loads((tmp_path / "zoo-meta.json").read_text())
    assert [x["command"] for x in meta["sessions"]] == ["zoo.py --jobs 2", "zoo.py --collect"]
    import dataclasses

    grown = dataclasses.replace(p, seeds=(0, 1, 2), grow=(("paper", 9),))  # more seeds: the same zoo
    zoo.write_meta(tmp_path, grown, tmp_path, "zoo.py --grow paper=9", "2026-12-01 10:06", "2026-12-01T03:04:00",
                   60.0, {}, 2, 1, 12, 12, 7)
    meta = json.loads((tmp_path / "zoo-meta.json").read_text())
    assert [x["command"] for x in meta["sessions"]][-1] == "zoo.py --grow paper=9" and len(meta["sessions"]) == 3
    other = dataclasses.replace(p, lr=1e-3)  # another recipe is another zoo
    zoo.write_meta(tmp_path, other, tmp_path, "zoo.py --lr", "2026-12-01 11:00", "2026-12-01T03:04:00",
                   None, {}, 2, 1, 12, 0, 0)
    assert len(json.loads((tmp_path / "zoo-meta.json").read_text())["sessions"]) == 1


def test_grow_trains_single_focal_candidates_seed_by_seed_after_everything_else() -> None:
    import dataclasses

    p = dataclasses.replace(zoo_protocol.smoke_protocol(), seeds=(0, 1), focal_seeds=(2,),
                            grow=(("paper", 6), ("hebbian-default", 5)))
    static = zoo_protocol.static_candidates(p)
    heb = [zoo_protocol.Candidate("hebbian-default", "hebbian", static[0].topology),
           zoo_protocol.Candidate("hebbian-split", "hebbian", static[0].topology)]
    units = zoo.plan_units(p, static, heb)
    keys = [u.key for u in units]
    assert len(keys) == len(set(keys))  # a seed already planned (0-2) is not planned twice
    grown = units[-5:]
    assert [(u.cand.name, u.seed) for u in grown] == [("paper", 3), ("hebbian-default", 3), ("paper", 4),
                                                      ("hebbian-default", 4), ("paper", 5)]
    assert {u.seed for u in units if u.cand.name == "hebbian-split"} == {0, 1, 2}
    assert {u.seed for u in units if u.cand.kind == "random"} == {0, 1}


def test_parse_grow_names_the_bad_item() -> None:
    p = zoo_protocol.smoke_protocol()
    assert zoo.parse_grow("paper=7, hebbian-split=5", p) == (("paper", 7), ("hebbian-split", 5))
    with pytest.raises(ValueError, match="random-00"):
        zoo.parse_grow("random-00=9", p)
    with pytest.raises(ValueError, match="NAME=N"):
        zoo.parse_grow("paper:9", p)



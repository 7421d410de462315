"""analysis/zoo.py: the smoke run writes the zoo's CSV and read-out; the statistics helpers are right."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("zoo", ROOT / "analysis" / "zoo.py")
zoo = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
sys.modules["zoo"] = zoo
spec.loader.exec_module(zoo)  # type: ignore[union-attr]

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
    acc, seeds = zoo.paired_accuracy(main)
    assert seeds == [0, 2]  # b lacks seed 1: a mean over it would not be paired
    assert acc.loc["b", 2] == 0.5 and math.isnan(acc.loc["b", 1])
    assert acc[seeds].mean(axis=1).round(3).to_dict() == {"a": 0.6, "b": 0.45, "c": 0.85}


def test_percentile_within() -> None:
    pop = [0.1, 0.2, 0.3, 0.4]
    assert zoo.percentile_within(0.05, pop) == 0
    assert zoo.percentile_within(0.5, pop) == 100
    assert zoo.percentile_within(0.25, pop) == 50
    assert zoo.percentile_within(0.3, pop) == pytest.approx(62.5)  # a tie counts half
    with pytest.raises(ValueError):
        zoo.percentile_within(0.3, [])


def test_paired_diff_to_median() -> None:
    rng = np.random.default_rng(1)
    seed_effect = np.array([0.0, 0.05, -0.04])  # shared by every arm: pairing must remove it
    pop = 0.80 + seed_effect + rng.normal(0, 0.002, size=(25, 3))
    arm = np.median(pop, axis=0) + 0.01
    d, lo, hi = zoo.paired_diff_to_median(arm, pop)
    assert d == pytest.approx(0.01)
    assert lo < 0.01 < hi and hi - lo < 0.01  # narrow although seeds differ by 9 points
    d0, lo0, hi0 = zoo.paired_diff_to_median(np.median(pop, axis=0), pop)
    assert d0 == pytest.approx(0.0) and lo0 <= 0 <= hi0
    with pytest.raises(ValueError):
        zoo.paired_diff_to_median(arm[:2], pop)


def test_paired_diff_to_median_with_pooled_noise() -> None:
    rng = np.random.default_rng(2)
    pop = 0.80 + np.array([0.0, 0.05]) + rng.normal(0, 0.02, size=(24, 2))
    arm = np.median(pop, axis=0) - 0.03
    d, lo, hi = zoo.paired_diff_to_median(arm, pop, noise_sd=0.001)
    d2, lo2, hi2 = zoo.paired_diff_to_median(arm, pop, noise_sd=0.05)
    assert d == d2 == pytest.approx(-0.03)
    assert lo2 < lo < -0.03 < hi < hi2  # more noise, a wider interval around the same point


def test_paired_noise_removes_candidate_and_seed_effects() -> None:
    cand = np.array([0.70, 0.75, 0.80, 0.72])[:, None]
    seed = np.array([0.0, 0.05, -0.03, 0.02])[None, :]
    sigma, df = zoo.paired_noise(cand + seed)
    assert sigma == pytest.approx(0.0, abs=1e-12) and df == 9
    noisy = cand + seed + np.random.default_rng(0).normal(0, 0.01, size=(4, 4))
    sigma, _ = zoo.paired_noise(noisy)
    assert 0.003 < sigma < 0.02
    with pytest.raises(ValueError):
        zoo.paired_noise(np.array([[0.7, np.nan], [0.8, 0.9]]))
    # 4 seeds halve the half-width of 1 seed's; the t quantile widens it for few df
    assert zoo.paired_halfwidth(0.01, 4, 1000) == pytest.approx(1.96 * 0.01 * math.sqrt(0.5), rel=1e-2)
    assert zoo.paired_halfwidth(0.01, 4, 3) > zoo.paired_halfwidth(0.01, 4, 1000)
    n = zoo.seeds_for_halfwidth(0.018, 24, 0.01)
    assert zoo.paired_halfwidth(0.018, n, 24) <= 0.01 < zoo.paired_halfwidth(0.018, n - 1, 24)


def test_t_interval_uses_the_pair_own_scatter() -> None:
    # differences +1, +3 pt: mean 2, sd sqrt(2) pt, t(1) = 12.71
    m, lo, hi = zoo.t_interval(np.array([0.81, 0.83]) - np.array([0.80, 0.80]))
    assert m == pytest.approx(0.02) and hi - m == pytest.approx(12.706 * 0.01 * math.sqrt(2) / math.sqrt(2), rel=1e-3)
    assert m - lo == pytest.approx(hi - m)
    rng = np.random.default_rng(0)
    a = rng.normal(0.8, 0.02, 16)
    steady, noisy = a - 0.01 + rng.normal(0, 0.002, 16), a - 0.01 + rng.normal(0, 0.02, 16)
    _, lo_s, hi_s = zoo.t_interval(steady - a)
    _, lo_n, hi_n = zoo.t_interval(noisy - a)
    assert hi_s < 0 and hi_s - lo_s < (hi_n - lo_n) / 4  # a steady pair resolves 1 pt, a noisy one does not
    with pytest.raises(ValueError):
        zoo.t_interval(np.array([0.1]))
    n = zoo.seeds_for_paired_t(0.015, 0.01)
    from scipy.stats import t

    assert t.ppf(0.975, n - 1) * 0.015 / math.sqrt(n) <= 0.01 < t.ppf(0.975, n - 2) * 0.015 / math.sqrt(n - 1)
    assert zoo.seeds_for_paired_t(0.0, 0.01) == 2


def test_paired_diff_and_spearman() -> None:
    a = np.array([0.80, 0.85, 0.75, 0.82])
    d, lo, hi = zoo.paired_diff(a + 0.01, a)
    assert d == pytest.approx(0.01) and lo == pytest.approx(0.01) and hi == pytest.approx(0.01)
    d, lo, hi = zoo.paired_diff(np.array([0.0, 0.1]), np.zeros(2))
    assert d == pytest.approx(0.05) and lo == pytest.approx(0.0) and hi == pytest.approx(0.1)
    x = np.arange(12.0)
    assert zoo.spearman(x, x ** 3) == pytest.approx(1.0)
    assert zoo.spearman(x, -x) == pytest.approx(-1.0)
    r, lo, hi = zoo.spearman_boot(x, x + np.random.default_rng(0).normal(0, 3, 12))
    assert lo <= r <= hi and -1 <= lo and hi <= 1


def test_random_sampler_matches_the_random_strategy() -> None:
    base = zoo.base_topology()
    mult = zoo.random_multipliers(base, np.random.default_rng(0))
    assert len(mult) == sum(1 for m in base.modules for w in m.widths if w)
    assert all(0.25 <= v <= 2.0 for v in mult.values())
    t = zoo.scaled_topology(base, mult)
    m = base.modules[0]
    assert t.modules[0].b1 == max(1, round(m.b1 * mult[f"{m.name}.b1"]))


def test_growing_the_seeds_keeps_the_fidelity_units_and_runs_seed_by_seed() -> None:
    import dataclasses

    p = dataclasses.replace(zoo.smoke_protocol(), seeds=(0, 1, 2, 3), focal_seeds=(4,))
    static = zoo.static_candidates(p)
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
    p = zoo.smoke_protocol()
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

    p = dataclasses.replace(zoo.smoke_protocol(), seeds=(0, 1), focal_seeds=(2,),
                            grow=(("paper", 6), ("hebbian-default", 5)))
    static = zoo.static_candidates(p)
    heb = [zoo.Candidate("hebbian-default", "hebbian", static[0].topology),
           zoo.Candidate("hebbian-split", "hebbian", static[0].topology)]
    units = zoo.plan_units(p, static, heb)
    keys = [u.key for u in units]
    assert len(keys) == len(set(keys))  # a seed already planned (0-2) is not planned twice
    grown = units[-5:]
    assert [(u.cand.name, u.seed) for u in grown] == [("paper", 3), ("hebbian-default", 3), ("paper", 4),
                                                      ("hebbian-default", 4), ("paper", 5)]
    assert {u.seed for u in units if u.cand.name == "hebbian-split"} == {0, 1, 2}
    assert {u.seed for u in units if u.cand.kind == "random"} == {0, 1}


def test_parse_grow_names_the_bad_item() -> None:
    p = zoo.smoke_protocol()
    assert zoo.parse_grow("paper=7, hebbian-split=5", p) == (("paper", 7), ("hebbian-split", 5))
    with pytest.raises(ValueError, match="random-00"):
        zoo.parse_grow("random-00=9", p)
    with pytest.raises(ValueError, match="NAME=N"):
        zoo.parse_grow("paper:9", p)


def test_additive_effects_match_row_means_on_a_complete_table_and_see_through_missing_seeds() -> None:
    rng = np.random.default_rng(0)
    mu, beta = rng.normal(size=6), rng.normal(size=9)
    x = mu[:, None] + beta[None, :]
    full = zoo.additive_effects(x)
    assert np.allclose(full - full[0], mu - mu[0])
    x[2:, 4:] = np.nan  # rows 2-5 only on seeds 0-3: without noise the fit still recovers every effect
    part = zoo.additive_effects(x)
    assert np.allclose(part - part[0], mu - mu[0])
    # the plain mean of row 0 over its 9 seeds would be off by the easier or harder seeds 4-8
    assert abs((np.nanmean(x[0]) - np.nanmean(x[2])) - (mu[0] - mu[2])) > 1e-3


def test_diff_to_median_additive_uses_each_arm_own_scatter_and_seeds() -> None:
    rng = np.random.default_rng(1)
    n_rand, seeds = 24, 40
    seed_fx = rng.normal(0, 0.02, size=seeds)
    rand = 0.77 + rng.normal(0, 0.01, size=(n_rand, 1)) + seed_fx + rng.normal(0, 0.015, size=(n_rand, seeds))
    quiet = 0.74 + seed_fx + rng.normal(0, 0.01, size=seeds)
    noisy = 0.74 + seed_fx + rng.normal(0, 0.04, size=seeds)
    noisy_short = noisy.copy()
    noisy_short[10:] = np.nan
    x = np.vstack([quiet, noisy, noisy_short, rand])
    res = zoo.diff_to_median_additive(x, [[0], [1], [2]], list(range(3, 3 + n_rand)), n_boot=1000,
                                      rng=np.random.default_rng(2))
    (pq, lq, hq), (pn, ln, hn), (ps, ls, hs) = res
    assert lq < pq < hq and ln < pn < hn and ls < ps < hs
    assert abs(pq - (0.74 - 0.77)) < 0.01  # about 3 points below the random median
    assert (hn - ln) > 1.5 * (hq - lq)  # the noisy arm's own scatter widens its interval
    assert (hs - ls) > 1.15 * (hn - ln)  # and fewer seeds widen it further
    # the random population on seeds 0-12 only, and seeds 13-39 easier by 5 points: the seed effects there
    # come from the other rows, so the arm is not credited with its easier seeds
    x[3:, 13:] = np.nan
    x[:, 13:] += 0.05
    (pq2, lq2, hq2), *_ = zoo.diff_to_median_additive(x, [[0], [1], [2]], list(range(3, 3 + n_rand)), n_boot=500,
                                                      rng=np.random.default_rng(2))
    assert lq2 < pq2 < hq2 and abs(pq2 - (0.74 - 0.77)) < 0.015
    naive = np.nanmean(x[0]) - np.median(np.nanmean(x[3:], axis=1))
    assert abs(naive - (0.74 - 0.77)) > 0.02

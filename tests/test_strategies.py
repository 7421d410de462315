"""Strategies: one interface and one registry; the probe-guided strategies' pure core: branch redundancy, reallocate's moves, slim's shares, tpe's
enqueued points, and how a keeps-incumbent strategy shares its trials over rounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hebbnas.derive import fit
from hebbnas.probe import ModuleStats, ProbeResult
from hebbnas.redundancy import branch_redundancy, kept_fraction
from hebbnas.search.settings import resolve_settings
from hebbnas.space import load_space
from hebbnas.strategies import get_strategy, names
from hebbnas.strategies.reallocate import FLOOR, branch_macs, propose
from hebbnas.strategies.slim import slimmed
from hebbnas.errors import HebbnasError
from hebbnas.strategies.random import width_distributions
from hebbnas.strategies.tpe import multipliers
from hebbnas.topology import Topology, get_topology

DEPLOY = (3, 224, 224)
REDUNDANT = {("inception3a", "b2"), ("inception4b", "b1")}  # their units all repeat one signal


def _stats(corr: np.ndarray) -> ModuleStats:
    c = corr.shape[0]
    return ModuleStats(n=1000, n_images=10, map_size=(4, 4), mean=np.zeros(c), var=np.ones(c), corr=corr,
                       dead=np.zeros(c, dtype=bool), corr_ring={1: None, 2: None}, ring_pairs={1: 0, 2: 0})


def _probe(t: Topology) -> ProbeResult:
    """Every Inception input white (independent channels) but the REDUNDANT branches' slices (all 1)."""
    out = {t.module_names[0]: _stats(np.eye(t.in_channels_of()[t.module_names[0]]))}
    for m, nxt in zip(t.modules, t.module_names[1:]):
        corr, start = np.eye(m.out_channels), 0
        for b in ("b1", "b2", "b3", "b4"):
            w = getattr(m, b)
            if (m.name, b) in REDUNDANT:
                corr[start:start + w, start:start + w] = 1.0
            start += w
        out[nxt] = _stats(corr)
    return ProbeResult(out, t.hash())


@pytest.fixture(scope="module")
def paper() -> Topology:
    return fit(get_topology("googlenet").with_classes(10), 3e8, DEPLOY, multiple=8)


def test_redundancy_is_one_minus_effective_rank_over_width(paper: Topology) -> None:
    small = paper.narrowed(0.25)
    red = branch_redundancy(small, _probe(small))
    assert len(red) == 4 * (len(small.modules) - 1)  # the last module's output is not probed
    for b, v in red.items():
        w = getattr(small.module(b[0]), b[1])
        assert v == pytest.approx(1 - 1 / w if b in REDUNDANT else 0.0, abs=1e-9)
    with pytest.raises(Exception, match="probe and topology differ"):
        branch_redundancy(paper, _probe(small))


def test_kept_fraction_counts_the_directions_that_hold_the_energy() -> None:
    assert kept_fraction(np.eye(10), 0.5) == pytest.approx(0.5)  # white: energy e needs e of the units
    assert kept_fraction(np.ones((8, 8)), 0.99) == pytest.approx(1 / 8)  # one signal repeated: one unit
    assert kept_fraction(np.zeros((4, 4)), 0.9) == pytest.approx(1 / 4)  # dead: the minimum


def test_reallocate_moves_macs_from_redundant_to_independent_branches(paper: Topology) -> None:
    small = paper.narrowed(0.25)
    red = branch_redundancy(small, _probe(small))
    before = branch_macs(paper, DEPLOY)
    moved = propose(paper, paper, red, option=0, share=0.1, k=2)
    assert moved is not None
    after = branch_macs(moved, DEPLOY)
    for b in REDUNDANT:  # the donors shrank, never below the floor
        assert after[b] < before[b]
        for f in {"b1": ("b1",), "b2": ("b2_red", "b2")}[b[1]]:
            assert getattr(moved.module(b[0]), f) >= FLOOR * getattr(paper.module(b[0]), f) - 1
    ranked = sorted(red, key=lambda b: (red[b], b))
    for b in ranked[:2]:  # the two least redundant grew
        assert after[b] > before[b]
    taken = sum(before[b] - after[b] for b in REDUNDANT)
    given = sum(after[b] - before[b] for b in ranked[:2])
    assert given == pytest.approx(taken, rel=0.05)  # MACs moved, not created (up to rounding)
    total = sum(before.values())
    assert taken <= 0.1 * total * 1.01
    # another option moves between other branches; a fitted move stays within the budget
    other = propose(paper, paper, red, option=1)
    assert other is not None and other != moved
    assert fit(moved, 3e8, DEPLOY, multiple=8).macs(DEPLOY) <= 3e8


def test_reallocate_respects_the_floor_and_refuses_empty_moves(paper: Topology) -> None:
    small = paper.narrowed(0.25)
    red = branch_redundancy(small, _probe(small))
    t = paper
    for _ in range(12):  # keep taking from the same donors: they stop at half their starting width
        nxt = propose(t, paper, red, option=0, share=0.3)
        if nxt is None:
            break
        t = nxt
    for b in REDUNDANT:
        for f in {"b1": ("b1",), "b2": ("b2_red", "b2")}[b[1]]:
            assert getattr(t.module(b[0]), f) >= FLOOR * getattr(paper.module(b[0]), f) - 1
    assert propose(paper, paper, red, option=len(red)) is None  # no branches left for this option


def test_slim_keeps_each_branch_share_of_independent_units(paper: Topology) -> None:
    small = paper.narrowed(0.25)
    s = slimmed(paper, small, _probe(small), energy=0.99)
    for m, m0 in zip(s.modules[:-1], paper.modules[:-1]):
        for b in ("b1", "b2", "b3", "b4"):
            w, w0 = getattr(m, b), getattr(m0, b)
            if (m.name, b) in REDUNDANT:
                assert w < w0 / 2  # one signal: about one unit of the probed copy's width
            else:
                assert w == w0  # white: 99% of the energy needs (nearly) every unit


def test_tpe_enqueues_the_paper_first_then_derivations_as_exact_multipliers(paper: Topology) -> None:
    from hebbnas.derive import fit
    from hebbnas.strategies import knobs
    from hebbnas.strategies.random import scaled_topology

    space = load_space("googlenet")
    dists = width_distributions(space)
    pts = get_strategy("tpe").initial_points(space, 1, 5)
    assert pts == [{f"width.{k}": 1.0 for k in dists}]  # without a probe: the paper's widths only
    assert multipliers(paper, paper, paper, dists) == {f"width.{k}": pytest.approx(1.0) for k in dists}
    doubled = paper.with_widths({m.name: tuple(2 * w for w in m.widths) for m in paper.modules})
    m2 = multipliers(paper, doubled, paper, dists)
    assert fit(scaled_topology(paper, knobs(m2, "width")), 1.5e9, name="x") == fit(doubled, 1.5e9, name="x")
    skewed = paper.with_widths({"inception3a": (paper.module("inception3a").b1 * 100, *paper.module("inception3a").widths[1:])})
    m = multipliers(paper, skewed, paper, dists)
    assert m["width.inception3a.b1"] == pytest.approx(100.0) and m["width.inception3a.b1"] > dists["inception3a.b1"].high
    removed = paper.with_widths({"inception3a": (*paper.module("inception3a").widths[:3], 0, 0,
                                                 paper.module("inception3a").b4)})
    kept = scaled_topology(paper, knobs(multipliers(paper, removed, paper, dists), "width"))
    assert kept.module("inception3a").widths[3:5] == (0, 0)  # a branch the derivation removed stays removed


def test_keeps_incumbent_strategy_trains_its_start_once(monkeypatch: pytest.MonkeyPatch) -> None:
    space = load_space("googlenet")
    s = resolve_settings(space, "googlenet", {"budget": 1.5e9, "strategy": "reallocate", "trials": 8, "rounds": 4})
    assert [s.trials_in_round(k) for k in range(1, 5)] == [1, 3, 2, 2]
    assert {"reallocate", "slim", "tpe"} <= set(names())
    assert get_strategy("reallocate").initial_points(space, 2, 3) == [
        {"move.option": j, "move.share": 0.1} for j in range(3)]


# ---------------------------------------------------------------------------------------------
# strategies: one interface, one registry


def test_strategies_register_in_one_place() -> None:
    from hebbnas.strategies import STRATEGIES, Strategy, get_strategy, names, register

    assert names() == ("hebbian", "random", "paper", "reallocate", "slim", "tpe")  # found by module, in `order`
    assert get_strategy("hebbian").probes_seed and not get_strategy("paper").probes_seed

    @register
    class Widest(Strategy):
        name = "test-widest"

    try:
        assert names()[-1] == "test-widest" and get_strategy("test-widest").topology(get_topology("googlenet"), None, {})
    finally:
        STRATEGIES.unregister("test-widest")
    assert "test-widest" not in names()
    with pytest.raises(HebbnasError, match=r"unknown strategy 'x' for --strategy \(known: hebbian, random, paper,"):
        get_strategy("x")


NARROW = """
    \"\"\"A strategy in one file: one sampled factor scales every width; its knobs and YAML section are its own.\"\"\"

    from __future__ import annotations

    from typing import Any, ClassVar

    from hebbnas.strategies import Strategy, knobs, register
    from hebbnas.strategies.random import scaled_topology
    from hebbnas.topology import WIDTH_FIELDS


    @register
    class Narrow(Strategy):
        name = "narrow"
        knob_prefix: ClassVar[str] = "narrow"
        yaml_section: ClassVar[str] = "narrow"

        def distributions(self, space: Any) -> dict[str, Any]:
            return {f"{self.knob_prefix}.{k}": d for k, d in space.section(self.yaml_section).items()}

        def topology(self, seed: Any, probe: Any, config: Any, *, probed: Any = None, start: Any = None) -> Any:
            factor = knobs(config, self.knob_prefix)["factor"]
            return scaled_topology(seed, {f"{m.name}.{f}": factor for m in seed.modules for f in WIDTH_FIELDS})
"""


def test_a_new_strategy_is_one_module_with_its_own_knobs_and_section(tmp_path: Path) -> None:
    """A strategy written as one new module: --strategy knows it, the space accepts its YAML section, the
    searcher samples its knobs under its prefix, trials.csv and the report treat them as knobs."""
    from tests.plugins import plugged

    from hebbnas.search.searcher import Sampler
    from hebbnas.space import parse_space
    from hebbnas.strategies import STRATEGIES, get_strategy, names
    from hebbnas.trials import knob_prefixes

    raw = {**load_space("googlenet").raw, "narrow": {"factor": {"low": 0.25, "high": 0.5}}}
    space = parse_space(raw, source="narrow.yaml")
    with pytest.raises(HebbnasError, match=r"narrow.yaml: unknown keys \['narrow'\]"):  # no strategy owns it yet
        resolve_settings(space, "narrow", {"budget": 1.5e9})
    assert "narrow" not in knob_prefixes()
    with plugged(tmp_path, "narrow_strategy", NARROW, STRATEGIES, "narrow"):
        assert names()[-1] == "narrow" and "narrow" in knob_prefixes()
        s = resolve_settings(space, "narrow", {"budget": 1.5e9, "strategy": "narrow"})
        assert s.strategy == "narrow"
        sampler = Sampler.for_space(space, "narrow")
        assert [n for n, _ in sampler.params] == ["narrow.factor"]
        base = get_topology("googlenet")
        t = get_strategy("narrow").topology(base, None, {"narrow.factor": 0.5, "train.lr": 1e-3})
        assert t.params() < base.params() / 2 and t.modules[0].widths[0] == base.modules[0].widths[0] // 2
    assert "narrow" not in names() and "narrow" not in knob_prefixes()


def test_the_equal_compute_comparison_smoke(zoo_smoke, tmp_path) -> None:  # noqa: ANN001
    """analysis/strategies.py --smoke: every trained strategy's runs, selected on validation, scored on test."""
    import shutil
    import subprocess
    import sys

    import pandas as pd

    root = Path(__file__).resolve().parent.parent
    zoo_dir = tmp_path / "zoo"
    shutil.copytree(zoo_smoke, zoo_dir)  # the comparison reads the zoo's cache and may add probed units
    r = subprocess.run([sys.executable, str(root / "analysis" / "strategies.py"), "--smoke", "--repeats", "2",
                        "--jobs", "2", "--out", str(tmp_path / "s"), "--zoo", str(zoo_dir)],
                       capture_output=True, text=True, timeout=600, cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    df = pd.read_csv(tmp_path / "s" / "strategies.csv")
    assert set(df["strategy"]) == {"reallocate", "slim", "tpe"} and set(df["seed"]) == {0, 1}
    assert (df.groupby(["strategy", "seed"])["unit"].max() == 3).all()  # --smoke: 3 units per run
    first = df[(df["unit"] == 1) & (df["strategy"] == "reallocate")]
    assert (first["move"] == "start").all()  # reallocate starts from the paper's widths
    text = (tmp_path / "s" / "strategies.md").read_text()
    assert "k = 2 trained units" in text and "| random |" in text and "| paper |" in text
    # the finalists: the best two at the largest k, their seed-0 picks replayed from the cache and retrained
    r = subprocess.run([sys.executable, str(root / "analysis" / "strategies.py"), "--smoke", "--finalists",
                        "--finalist-count", "5", "--jobs", "2", "--out", str(tmp_path / "s"), "--zoo", str(zoo_dir)],
                       capture_output=True, text=True, timeout=600, cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    sel = pd.read_csv(tmp_path / "s" / "strategies-selected.csv")
    from analysis.strategies import TRAINED, finalists

    assert sorted(s for s in finalists(sel, 3, 5) if s in TRAINED) == sorted(TRAINED)  # all five arms: all trained ones
    fin = pd.read_csv(tmp_path / "s" / "strategies-finalists.csv")
    assert sorted(fin["strategy"].unique()) == sorted(TRAINED) and (fin.groupby("strategy")["seed"].count() == 2).all()
    assert fin["test_acc"].between(0, 1).all()
    assert "## Finalists retrained in converged.py's protocol (k = 3)" in (tmp_path / "s" / "strategies.md").read_text()


# the comparison's read-out: selection on validation, scoring on test, runs that end early


def test_a_run_selects_on_validation_among_its_first_k_units() -> None:
    from analysis.strategies import selected

    rows = [{"unit": 1, "val_acc": 0.70, "test_acc": 0.71}, {"unit": 2, "val_acc": 0.75, "test_acc": 0.60},
            {"unit": 3, "val_acc": 0.75, "test_acc": 0.90}, {"unit": 4, "val_acc": 0.80, "test_acc": 0.50},
            {"unit": 5, "val_acc": float("nan"), "test_acc": 0.99}]
    assert selected(rows, 1)["unit"] == 1
    assert selected(rows, 3)["unit"] == 2  # a tie goes to the earlier unit, test accuracy never looked at
    assert selected(rows, 5)["unit"] == 4  # a unit without validation accuracy is never selected


def test_best_of_k_is_the_expected_test_accuracy_of_the_validation_best() -> None:
    from analysis.strategies import best_of_k

    val, test = np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0])
    assert best_of_k(val, test, 3) == 3.0 and best_of_k(val, test, 1) == pytest.approx(2.0, abs=0.05)
    # of 2 drawn from 3: the best of the pair is 3 in 2 of 3 pairs, else 2
    assert best_of_k(val, test, 2) == pytest.approx(8 / 3, abs=0.02)


def test_a_run_that_ended_early_is_read_at_larger_k_with_the_units_it_spent() -> None:
    import pandas as pd

    from analysis.strategies import table

    zoo_main = pd.DataFrame([{"candidate": c, "seed": 0, "val_acc": v, "test_acc": v}
                             for c, v in (("paper", 0.8), ("hebbian-default", 0.7), ("random-00", 0.6),
                                          ("random-01", 0.75))])
    kinds = pd.Series({"paper": "paper", "hebbian-default": "hebbian", "random-00": "random", "random-01": "random"})
    df = pd.DataFrame([{"strategy": "reallocate", "seed": 0, "unit": u, "val_acc": v, "test_acc": t,
                        "topology_hash": f"h{u}"} for u, v, t in ((1, 0.8, 0.81), (2, 0.9, 0.77))])
    t = table(df, zoo_main, kinds, [0], ks=(2, 4)).set_index(["strategy", "k"])
    assert t.loc[("reallocate", 4), "test_acc"] == 0.77 and t.loc[("reallocate", 4), "units_used"] == 2
    assert t.loc[("reallocate", 2), "units_used"] == 2 and t.loc[("paper-here", 4), "test_acc"] == 0.81


def test_the_read_out_uses_complete_repeats_only() -> None:
    import pandas as pd

    from analysis.strategies import complete_repeats

    df = pd.DataFrame({"strategy": ["reallocate", "slim", "tpe", "reallocate", "slim", "reallocate", "slim", "tpe"],
                       "seed": [0, 0, 0, 1, 1, 2, 2, 2]})
    assert complete_repeats(df) == [0, 2]  # seed 1's tpe run never finished


def test_a_network_proposed_twice_in_a_run_is_one_unit() -> None:
    import pandas as pd

    from analysis.strategies import distinct_units, table

    rows = [{"unit": u, "topology_hash": h, "val_acc": v, "test_acc": t}
            for u, h, v, t in ((1, "a", 0.70, 0.70), (2, "b", 0.72, 0.71), (3, "a", 0.70, 0.70), (4, "c", 0.80, 0.60),
                               (5, "b", 0.72, 0.71), (6, "d", 0.75, 0.74))]
    d = distinct_units(rows)
    assert [(r["unit"], r["row"], r["topology_hash"]) for r in d] == [(1, 1, "a"), (2, 2, "b"), (3, 4, "c"), (4, 6, "d")]
    zoo_main = pd.DataFrame([{"candidate": c, "seed": 0, "val_acc": v, "test_acc": v}
                             for c, v in (("paper", 0.8), ("random-00", 0.6), ("random-01", 0.75))])
    kinds = pd.Series({"paper": "paper", "random-00": "random", "random-01": "random"})
    df = pd.DataFrame([{"strategy": "slim", "seed": 0, **r} for r in rows])
    t = table(df, zoo_main, kinds, [0], ks=(3, 8)).set_index(["strategy", "k"])
    # k = 3 reads three distinct networks (rows 1, 2, 4), so it sees c (row 4), not the repeat in row 3
    assert t.loc[("slim", 3), "test_acc"] == 0.60 and t.loc[("slim", 3), "unit"] == 4
    assert t.loc[("slim", 3), "units_used"] == 3
    # k = 8: the run has 4 distinct networks in 6 rows and is charged 4
    assert t.loc[("slim", 8), "units_used"] == 4


def test_the_stated_question_is_answered_on_paper_here_with_holm() -> None:
    from analysis.strategies import _question_lines

    strong = np.array([0.030, 0.031, 0.029])  # +3 pt, tight: p ~ 0.0007, Holm x2 still < 0.05
    weak = np.array([0.020, 0.030, 0.025])  # +2.5 pt, p = 0.013: passes alone, not x 7
    noisy = np.array([0.01, 0.04, 0.02])  # p = 0.09: fails
    text = "\n".join(_question_lines([("tpe", 8, "paper-here", strong), ("slim", 8, "paper-here", noisy),
                                      ("tpe", 8, "paper", noisy)], 3))
    assert "family of 2" in text and "**Answer: yes: tpe at k = 8**" in text  # the zoo-paper row is not in the family
    # the same nominal result in a family of 7 does not survive Holm
    fam = [("tpe", 8, "paper-here", weak)] + [(f"s{i}", 8, "paper-here", noisy) for i in range(6)]
    text = "\n".join(_question_lines(fam, 3))
    assert "**Answer: no**" in text and "Without the adjustment tpe at k = 8 would pass" in text


def test_reallocate_runs_rounds_of_moves_unless_told_otherwise() -> None:
    """Defect: `--strategy reallocate` without --rounds ran one round, which trains only its start: the
    paper's widths 8 times. Left open, the rounds are its own (the start, then rounds of up to 4 moves); an
    explicit --rounds 1 is refused in one line; other strategies keep one round."""
    space = load_space("googlenet")
    s = resolve_settings(space, "googlenet", {"budget": 1.5e9, "strategy": "reallocate"})
    assert (s.trials, s.rounds) == (8, 3) and [s.trials_in_round(k) for k in (1, 2, 3)] == [1, 4, 3]
    assert resolve_settings(space, "googlenet", {"budget": 1.5e9, "strategy": "reallocate", "trials": 1}).rounds == 1
    assert resolve_settings(space, "googlenet", {"budget": 1.5e9, "strategy": "reallocate"}, smoke=True).rounds == 2
    assert resolve_settings(space, "googlenet", {"budget": 1.5e9, "strategy": "hebbian"}).rounds == 1
    assert resolve_settings(space, "googlenet", {"budget": 1.5e9}).rounds == 3  # the default strategy is reallocate
    assert resolve_settings(space, "googlenet", {"budget": 1.5e9, "strategy": "tpe"}).rounds == 1
    with pytest.raises(HebbnasError, match=r"^--rounds 1 with --strategy reallocate would train its start 8 times"):
        resolve_settings(space, "googlenet", {"budget": 1.5e9, "strategy": "reallocate", "rounds": 1})

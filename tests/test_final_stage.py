"""The final stage's pure parts: the paired interval, the selection rule, the finalists, the settings, and
how tpe's enqueued networks and every trial's `drawn_by` come about. No Ray here (the end-to-end stage,
kill and resume included, is in test_search_cluster.py)."""

from __future__ import annotations

import dataclasses
import math

import optuna
import pytest
import torch
from scipy import stats

from hebbnas.derive import fit
from hebbnas.errors import HebbnasError
from hebbnas.model import build
from hebbnas.pipeline import probe_network, recipe, seed_topology
from hebbnas.search import resolve_settings
from hebbnas.search.final import CONTROL, FinalUnit, chosen_unit, finalists, network_results, plan_units
from hebbnas.search.searcher import Sampler
from hebbnas.search.select import NetworkResult, compare, decide, paired_interval
from hebbnas.space import load_space, parse_space
from hebbnas.strategies import get_strategy
from hebbnas.strategies.tpe import DERIVED_POLICIES
from hebbnas.topology import get_topology, proxy_network


def net(name: str, val: dict[int, float | None], control: bool = False, rank: int = 1,
        test: dict[int, float | None] | None = None) -> NetworkResult:
    return NetworkResult(name, control, val, test or {s: v for s, v in val.items()}, 0 if control else rank)


# ---------------------------------------------------------------------------------------------
# the paired interval and the rule


def test_paired_interval_is_scipys_one_sample_t_interval() -> None:
    d = [0.8, 1.9, 1.1, -0.2]
    mean, lo, hi = paired_interval(d)
    ref = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert mean == pytest.approx(sum(d) / 4) and lo == pytest.approx(ref.low) and hi == pytest.approx(ref.high)
    assert paired_interval([1.0])[0] == 1.0 and math.isnan(paired_interval([1.0])[1])


def test_ties_keep_the_control() -> None:
    c = net(CONTROL, {0: 0.90, 1: 0.91}, control=True)
    f = net("t1", {0: 0.90, 1: 0.91})
    d = decide([c, f])
    assert d.kept_control and d.chosen == CONTROL and "kept" in d.sentence
    assert d.comparisons[0].diff == pytest.approx(0.0) and not d.comparisons[0].beats


def test_a_finalist_ahead_by_more_than_the_noise_replaces_the_control() -> None:
    c = net(CONTROL, {0: 0.900, 1: 0.910, 2: 0.905}, control=True)
    f = net("t1", {0: 0.920, 1: 0.931, 2: 0.924}, rank=1)  # +2.0, +2.1, +1.9 points
    g = net("t2", {0: 0.950, 1: 0.890, 2: 0.930}, rank=2)  # larger mean, but noisy: the interval holds 0
    d = decide([c, f, g])
    assert d.chosen == "t1" and not d.kept_control
    comp = {x.name: x for x in d.comparisons}
    assert comp["t1"].beats and comp["t1"].lo > 0 and not comp["t2"].beats
    assert d.sentence.startswith("t1 beats the paper's widths by +2.00 [")


def test_a_margin_raises_the_bar() -> None:
    c = net(CONTROL, {0: 0.900, 1: 0.910, 2: 0.905}, control=True)
    f = net("t1", {0: 0.920, 1: 0.931, 2: 0.924})
    assert decide([c, f], margin=0.5).chosen == "t1"  # its interval lies above +0.5 points
    assert decide([c, f], margin=1.9).kept_control  # but not above +1.9


def test_a_control_that_wins_is_kept() -> None:
    c = net(CONTROL, {0: 0.93, 1: 0.94}, control=True)
    f = net("t1", {0: 0.90, 1: 0.91})
    d = decide([c, f])
    assert d.kept_control and d.comparisons[0].diff == pytest.approx(-3.0) and d.comparisons[0].hi < 0


def test_a_failed_finalist_is_never_chosen() -> None:
    c = net(CONTROL, {0: 0.90, 1: 0.91}, control=True)
    broken = net("t1", {0: 0.99, 1: None})  # far ahead on the seed it finished, failed on the other
    d = decide([c, broken])
    assert broken.failed and d.kept_control and not d.comparisons[0].beats and d.comparisons[0].n == 1


def test_one_seed_decides_only_by_a_stated_margin() -> None:
    c = net(CONTROL, {0: 0.90}, control=True)
    f = net("t1", {0: 0.93})
    assert decide([c, f]).kept_control  # no interval, no margin: no evidence beyond the noise
    d = decide([c, f], margin=1.0)
    assert d.chosen == "t1" and "one seed" in d.sentence


def test_a_control_that_failed_leaves_the_finalists_to_their_mean() -> None:
    c = net(CONTROL, {0: None, 1: None}, control=True)
    d = decide([c, net("t1", {0: 0.90, 1: 0.90}, rank=1), net("t2", {0: 0.91, 1: 0.92}, rank=2)])
    assert d.chosen == "t2" and "did not train" in d.sentence
    with pytest.raises(ValueError):
        decide([c])


def test_test_accuracy_is_reported_never_used() -> None:
    c = net(CONTROL, {0: 0.90, 1: 0.91}, control=True, test={0: 0.50, 1: 0.50})
    f = net("t1", {0: 0.90, 1: 0.91}, test={0: 0.99, 1: 0.99})
    d = decide([c, f])
    assert d.kept_control and compare(f, c).test_diff == pytest.approx(49.0)


# ---------------------------------------------------------------------------------------------
# the units


def _row(tid: str, acc: float, topo: str, status: str = "completed", **kw: object) -> dict:
    return {"trial_id": tid, "status": status, "val_acc": acc, "best_val_acc": acc, "epochs": 5, "macs": 1.0,
            "topology": topo, "topology_hash": topo[-6:], **kw}


def test_finalists_are_the_best_distinct_networks_other_than_the_control() -> None:
    rows = [_row("a", 0.91, "xxxA"), _row("b", 0.95, "xxxB"), _row("c", 0.95, "xxxB"),  # c: b's network again
            _row("d", 0.99, "xxxC", status="error"), _row("e", 0.97, "xxxD"), _row("f", 0.93, "xxxE")]
    picked = finalists(rows, control_hash="xxxD", top=2)  # e is the control's network: it trains anyway
    assert [r["trial_id"] for r in picked] == ["b", "f"]
    assert [r["trial_id"] for r in finalists(rows, "none", top=0)] == []


def test_units_and_results_per_network_and_seed() -> None:
    t = get_topology("googlenet")
    fin = [{"trial_id": "t1", "topology": t.to_json()}]
    units = plan_units(fin, t, seeds=(0, 1))
    assert [(u.network, u.seed, u.control, u.rank) for u in units] == [
        (CONTROL, 0, True, 0), ("t1", 0, False, 1), (CONTROL, 1, True, 0), ("t1", 1, False, 1)]
    rows = [{"network": CONTROL, "seed": 0, "status": "completed", "val_acc": 0.9, "test_acc": 0.8},
            {"network": CONTROL, "seed": 1, "status": "completed", "val_acc": 0.92, "test_acc": 0.81},
            {"network": "t1", "seed": 0, "status": "completed", "val_acc": 0.95, "test_acc": 0.85},
            {"network": "t1", "seed": 1, "status": "error", "val_acc": None}]
    res = {n.name: n for n in network_results(rows, units)}
    assert res[CONTROL].seeds_ok() == [0, 1] and res["t1"].failed and res["t1"].val[1] is None
    assert res[CONTROL].mean_test() == pytest.approx(0.805)
    assert chosen_unit(rows, CONTROL)["seed"] == 1  # the better validation accuracy's weights
    assert isinstance(units[0], FinalUnit)


# ---------------------------------------------------------------------------------------------
# settings


def test_final_stage_settings() -> None:
    space = load_space("googlenet")
    s = resolve_settings(space, "googlenet", {"budget": "1.5e9"})
    f = s.final_fidelity
    assert s.final_top == 1 and s.final_seeds == 2 and f is not None  # the digits space keeps its demo short
    assert f.epochs == 3 and not f.augment and f.proxy_width == 1.0 and f.resolution == s.proxy.resolution
    assert resolve_settings(space, "googlenet", {"budget": "1.5e9", "final_top": 0}).final_fidelity is None
    smoke = resolve_settings(space, "googlenet", {"budget": "1.5e9"}, smoke=True).final_fidelity
    assert smoke is not None and smoke.epochs == 1 and smoke.train_subset == 160
    fms = resolve_settings(load_space("fashion-mnist"), "fashion-mnist", {"budget": "1.5e9"})
    assert fms.final_top == 2  # the code's default, where a space does not state its own
    fm = fms.final_fidelity
    assert fm is not None and (fm.epochs, fm.train_subset, fm.val_images, fm.augment) == (10, 20000, 10000, True)
    assert fm.val_fraction() == pytest.approx(1 / 3) and fm.proxy_width == 0.25 and fm.resolution == 128
    assert not space.train  # architectures share one recipe: the default space samples no training knob


def test_bad_final_blocks_are_one_line() -> None:
    raw = {"name": "x", "base": "googlenet", "final": {"val_images": 100}, "random": {"width_scale": {"low": 0.5,
                                                                                                  "high": 2.0}}}
    with pytest.raises(HebbnasError, match="final.val_images needs .*final.train_subset"):
        resolve_settings(parse_space(raw, source="x.yaml"), "x", {"budget": "1.5e9", "strategy": "random"})
    raw["final"] = {"epochs": 0}
    with pytest.raises(HebbnasError, match=r"x.yaml: final.epochs must be an integer >= 1"):
        resolve_settings(parse_space(raw, source="x.yaml"), "x", {"budget": "1.5e9", "strategy": "random"})
    raw["final"] = {"epoch": 3}
    with pytest.raises(HebbnasError, match="unknown keys in final"):
        parse_space(raw, source="x.yaml")


# ---------------------------------------------------------------------------------------------
# tpe: the enqueued networks are the derivations themselves; how each trial was drawn


@pytest.mark.parametrize("space_name,width", [("googlenet", 1.0), ("fashion-mnist", 0.25)])
def test_tpe_enqueues_exactly_the_derived_networks(space_name: str, width: float) -> None:
    space = load_space(space_name)
    seed = seed_topology(1.5e9, space, 10)
    probed = proxy_network(seed, width)
    torch.manual_seed(0)
    probe = probe_network(probed, build(probed).eval(), torch.randn(48, 3, 64, 64))
    tpe, heb = get_strategy("tpe"), get_strategy("hebbian")
    points = tpe.initial_points(space, 1, 8, seed=seed, probe=probe, probed=probed)
    assert points[0] and set(points[0].values()) == {1.0}  # the paper's widths first
    outside = 0
    for policy, point in zip(DERIVED_POLICIES, points[1:]):
        mine = fit(tpe.topology(seed, probe, point, probed=probed).with_classes(10), 1.5e9, space.deploy_input, name="t")
        theirs = fit(heb.topology(seed, probe, {f"derive.{k}": v for k, v in policy.items()}, probed=probed)
                     .with_classes(10), 1.5e9, space.deploy_input, name="t")
        assert mine.to_dict() == theirs.to_dict(), policy
        outside += sum(not 0.25 <= v <= 2.0 for v in point.values())
    assert outside > 0  # these derivations reach outside the sampled range: nothing was clipped


def test_drawn_by_says_enqueued_start_up_model_or_random() -> None:
    space = load_space("googlenet")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler_, startup = get_strategy("tpe").sampler(0, n_trials=8, n_enqueued=3)
    assert startup == 3 + 2  # the enqueued trials are not random draws: two random ones follow them
    sampler = Sampler.for_space(space, "tpe", startup)
    study = optuna.create_study(direction="maximize", sampler=sampler_)
    for _ in range(3):
        study.enqueue_trial({"width.inception3a.b1": 1.0})
    drawn = []
    for i in range(7):
        t = study.ask()
        drawn.append(sampler(t)["drawn_by"])
        study.tell(t, 0.5 + 0.01 * i)
    assert drawn == ["enqueued"] * 3 + ["start-up"] * 2 + ["model"] * 2
    rnd, none = get_strategy("random").sampler(0, 8, 0)
    assert none is None and isinstance(rnd, optuna.samplers.RandomSampler)
    t = optuna.create_study(sampler=rnd).ask()
    assert Sampler.for_space(space, "random", None)(t)["drawn_by"] == "random"


def test_smoke_trains_contiguous_unless_the_space_fixes_a_format() -> None:
    """`--smoke` skips the memory-format timing (its numbers must not depend on the machine's load); a real
    search leaves the format to the timing rule, and a space's `fixed:` format wins over both."""
    space = load_space("googlenet")
    assert recipe(space, smoke=True)["channels_last"] is False and "channels_last" not in recipe(space)
    fixed = dataclasses.replace(space, fixed={**space.fixed, "channels_last": True})
    assert recipe(fixed, smoke=True)["channels_last"] is True

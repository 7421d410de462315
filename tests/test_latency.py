"""Latency: measured with its spread, repeated when noisy, profiled per block; the search's latency
vocabulary (rejected trials, the Pareto front, objectives)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hebbnas import latency
from hebbnas.cli import main
from hebbnas.errors import HebbnasError
from hebbnas.objectives import budgets, to_measure
from hebbnas.search.searcher import optuna_outcome
from hebbnas.search.settings import resolve_settings
from hebbnas.space import load_space
from hebbnas.trials import REJECTED, TrialStatus, finished_status, pareto_rows
from tests.builders import tiny_topology

pytestmark = pytest.mark.usefixtures("one_thread_module")
SMALL = (3, 64, 64)


def test_measure_reports_median_iqr_and_where(monkeypatch: pytest.MonkeyPatch) -> None:
    lat = latency.measure(tiny_topology(), SMALL, runs=30, warmup=1, profile=True)
    assert lat.runs == 30 and lat.q1_ms <= lat.median_ms <= lat.q3_ms and lat.iqr_ms >= 0
    assert lat.runtime == "eager" and lat.threads == 1 and lat.device and lat.batch == 1
    assert {"conv1", "inception3a", "fc"} <= set(lat.modules) and not any(k.startswith("aux") for k in lat.modules)
    assert json.loads(json.dumps(lat.to_dict()))["input"] == list(SMALL)


def test_a_noisy_measurement_is_repeated_and_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    spreads = iter([np.array([1.0, 1.0, 5.0, 9.0] * 8), np.array([1.0, 2.0, 3.0, 9.0] * 8),
                    np.array([1.0, 1.5, 2.0, 9.0] * 8)])
    monkeypatch.setattr(latency, "_timed", lambda *a, **k: (next(spreads), {}))
    lat = latency.measure(tiny_topology(), SMALL, runs=30, warmup=0, max_repeats=3, channels_last=False)
    assert lat.repeats == 3 and lat.noisy  # every try stayed above 10% of the median: say so
    quiet = iter([np.array([1.0, 5.0] * 16), np.full(32, 2.0)])
    monkeypatch.setattr(latency, "_timed", lambda *a, **k: (next(quiet), {}))
    lat = latency.measure(tiny_topology(), SMALL, runs=30, warmup=0, max_repeats=3, channels_last=False)
    assert lat.repeats == 2 and not lat.noisy and lat.median_ms == 2.0  # stops at the first quiet one


def test_bad_requests_are_one_line() -> None:
    with pytest.raises(HebbnasError, match="unknown runtime"):
        latency.measure(tiny_topology(), SMALL, runtime="tvm")
    with pytest.raises(HebbnasError, match="at least 30 timed runs"):
        latency.measure(tiny_topology(), SMALL, runs=5)


def test_show_latency_prints_a_profile_beside_the_macs(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    path = tmp_path / "t.json"
    path.write_text(tiny_topology().to_json())
    assert main(["show", str(path), "--input", "3x64x64", "--latency"]) == 0
    out = capsys.readouterr().out
    assert "median" in out and "IQR" in out and "ns/MAC" in out and "inception5b" in out
    assert main(["show", str(path), "--input", "3x64x64", "--latency", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["runs"] >= 30 and obj["median_ms"] > 0 and obj["macs"] == tiny_topology().macs(SMALL)
    assert len(obj["repeat_medians_ms"]) == 2 and obj["repeat_spread"] >= 1.0  # how repeatable the median is


def test_show_latency_says_how_repeatable_its_figure_is(tmp_path, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    import hebbnas.latency as latency_mod
    from hebbnas.latency import Latency

    medians = iter([10.0, 12.5, 11.0])
    base = Latency(median_ms=0, q1_ms=0, q3_ms=0, runs=30, batch=1, input=SMALL, runtime="eager", threads=1,
                   device="cpu", channels_last=False)
    monkeypatch.setattr(latency_mod, "measure", lambda *a, **k: dataclasses.replace(
        base, median_ms=(m := next(medians)), q1_ms=m * 0.99, q3_ms=m * 1.01))
    path = tmp_path / "t.json"
    path.write_text(tiny_topology().to_json())
    assert main(["show", str(path), "--input", "3x64x64", "--latency", "--repeat", "3"]) == 0
    out = capsys.readouterr().out
    assert "medians 10.00, 12.50, 11.00 ms over 3 back-to-back measurements, 1.25x apart" in out
    assert main(["show", str(path), "--input", "3x64x64", "--latency", "--repeat", "0"]) == 2


def test_rejected_trials_are_finished_never_usable_and_told_apart() -> None:
    result = {REJECTED: "latency 9 ms > budget 5 ms", "latency_ms": 9.0, "epoch": 0}
    assert finished_status(result, False, 5) is TrialStatus.REJECTED
    assert TrialStatus.REJECTED.finished and not TrialStatus.REJECTED.usable
    assert optuna_outcome(result, False, 5) == "REJECTED"


def test_pareto_rows_keep_the_non_dominated_usable_trials() -> None:
    rows = [{"trial_id": "a", "status": "completed", "val_acc": 0.9, "latency_ms": 10.0},
            {"trial_id": "b", "status": "completed", "val_acc": 0.8, "latency_ms": 5.0},
            {"trial_id": "c", "status": "completed", "val_acc": 0.85, "latency_ms": 12.0},  # worse than a on both
            {"trial_id": "d", "status": "rejected", "val_acc": None, "latency_ms": 1.0},  # never trained
            {"trial_id": "e", "status": "stopped", "val_acc": 0.9, "latency_ms": 10.0}]  # ties a: both stay
    front = pareto_rows(rows, {"val_acc": "max", "latency_ms": "min"})
    assert [r["trial_id"] for r in front] == ["a", "b", "e"]


@pytest.mark.parametrize(("objectives", "ok"), [("accuracy", True), ("accuracy,latency", True),
                                                 ("accuracy,macs,params", True), ("latency", False),
                                                 ("accuracy,speed", False), ("accuracy,macs,macs", False)])
def test_objectives_start_with_accuracy(objectives: str, ok: bool) -> None:
    space = load_space("googlenet")
    if ok:
        s = resolve_settings(space, "googlenet", {"budget": 1.5e9, "objectives": objectives})
        assert s.objectives == tuple(objectives.split(",")) and (to_measure(s) == ("latency",)) == ("latency" in objectives)
    else:
        with pytest.raises(HebbnasError, match="--objectives must be accuracy"):
            resolve_settings(space, "googlenet", {"budget": 1.5e9, "objectives": objectives})


def test_a_latency_budget_is_positive_and_makes_trials_measure() -> None:
    space = load_space("googlenet")
    s = resolve_settings(space, "googlenet", {"budget": 1.5e9, "latency_budget": 20})
    assert s.latency_budget == 20.0 and to_measure(s) == ("latency",) and budgets(s) == {"latency": 20.0}
    with pytest.raises(HebbnasError, match="--latency-budget must be a positive number"):
        resolve_settings(space, "googlenet", {"budget": 1.5e9, "latency_budget": 0})


def test_latency_analysis_smoke(zoo_smoke, tmp_path) -> None:  # noqa: ANN001
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, str(root / "analysis" / "latency.py"), "--smoke", "--zoo", str(zoo_smoke),
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    text = (tmp_path / "latency.md").read_text()
    assert "Spearman(MACs, latency)" in text and "| paper" in text and "Repeatability: every candidate" in text
    import pandas as pd

    df = pd.read_csv(tmp_path / "latency.csv")
    passes = df.groupby(["candidate", "runtime", "batch"])["pass"].agg(lambda x: tuple(sorted(x)))
    assert len(passes) == 6 and set(passes) == {(1, 2)}  # three candidates x two settings, each measured twice


def test_latency_readout_puts_pass_to_pass_change_beside_the_spread() -> None:
    import pandas as pd

    from analysis.latency import repeatability

    ms = {"a": (10.0, 11.0), "b": (12.0, 12.0), "c": (15.0, 13.5)}  # c moves 1.11x between passes
    g = pd.DataFrame([{"candidate": c, "pass": p + 1, "ms_per_image": v[p]} for c, v in ms.items() for p in (0, 1)])
    r = repeatability(g)
    assert r["passes"] == 2 and r["between"] == pytest.approx(14.25 / 10.5)
    assert r["between_lo"] == pytest.approx(13.5 / 11.0) and r["between_hi"] == pytest.approx(1.5)
    assert r["move_max"] == pytest.approx(15 / 13.5) and r["move_median"] == pytest.approx(1.1)
    assert r["spearman_min"] == pytest.approx(1.0)  # same order in both passes
    g.loc[(g["candidate"] == "a") & (g["pass"] == 2), "ms_per_image"] = 20.0
    assert repeatability(g)["spearman_min"] == pytest.approx(-0.5)


BRANCHES = '''
    """An objective in one file: the candidate's number of branches (fewer is simpler), counted before it trains."""

    from __future__ import annotations

    from hebbnas.objectives import Objective, register


    @register
    class Branches(Objective):
        name = "branches"
        key = "branches"
        direction = "min"
        columns = ("branches",)

        def measure(self, topology, deploy_input, threads, cache):  # noqa: ANN001, ANN201 - as Objective.measure
            return {"branches": sum(1 for m in topology.modules for w in (m.b1, m.b2, m.b3, m.b4) if w)}
'''


def test_a_new_objective_is_one_module(tmp_path) -> None:  # noqa: ANN001
    """An objective written as one new module: --objectives accepts it, each candidate is measured for it
    before training, trials.csv gets its column, and the front ranks by it."""
    from hebbnas.objectives import OBJECTIVES, goals, measure, names
    from hebbnas.trials import trial_row
    from tests.plugins import plugged

    space = load_space("googlenet")
    with pytest.raises(HebbnasError, match=r"objectives must be accuracy, optionally followed by any of latency, "
                                           r"macs, params \(comma-separated, each once\), got 'accuracy,branches'"):
        resolve_settings(space, "googlenet", {"budget": 1.5e9, "objectives": "accuracy,branches"})
    with plugged(tmp_path, "branches_objective", BRANCHES, OBJECTIVES, "branches"):
        assert names() == ("accuracy", "latency", "macs", "params", "branches")
        s = resolve_settings(space, "googlenet", {"budget": 1.5e9, "objectives": "accuracy,branches"})
        assert s.objectives == ("accuracy", "branches") and to_measure(s) == ("branches",) and not budgets(s)
        assert goals(s.objectives) == {"val_acc": "max", "branches": "min"}
        t = tiny_topology()  # 9 modules, every branch present
        got = measure(to_measure(s), t, (3, 64, 64), 1, None)
        assert got == {"branches": 36}
        t = t.with_widths({"inception3a": (0, 4, 8, 0, 0, 8)})  # one module keeps two of its four branches
        assert measure(to_measure(s), t, (3, 64, 64), 1, None) == {"branches": 34}
        row = trial_row("t1", {}, {"val_acc": 0.5, "epochs": 1, **got}, "completed", round_=1, strategy="random")
        assert row["branches"] == got["branches"]
        rows = [{"trial_id": i, "status": "completed", "val_acc": a, "branches": b}
                for i, (a, b) in enumerate([(0.9, 30), (0.8, 20), (0.7, 25), (0.95, 40)])]
        assert [r["trial_id"] for r in pareto_rows(rows, goals(s.objectives))] == [0, 1, 3]  # 2: beaten by 1

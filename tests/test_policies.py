"""The pca and redundancy policies on planted structure: a module whose input is low-rank (three
directions under a little noise) gets the smaller share under pca and loses MACs under redundancy; a
module whose input is white gets the larger share and gains them. Plus the report's signal columns, the
hebbian strategy, and `hebbnas probe --policy` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hebbnas.cli import main
from hebbnas.derive import Policy, derive, fit
from hebbnas.policies import module_mac_terms, module_redundancy, pca_signals, redundancy_moves
from hebbnas.probe import ModuleStats, ProbeResult
from hebbnas.redundancy import components_for_energy, redundancy
from hebbnas.report.files import write_report
from hebbnas.strategies import get_strategy
from hebbnas.topology import Topology
from tests.builders import small_topology

BUDGET = 2e8
"""Close to the small topology's own MACs (2.3e8 at 224 px, mostly its stem), so the fitted Inception
widths stay near the probed ones; `_fit` rounds to 1 channel, so rounding does not hide the planted effect."""
KINDS = ("redundant", "moderate", "white")


def _corr(c: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A correlation matrix: `redundant` 3 latent directions plus 1% noise, `moderate` c/2 directions
    plus 10% noise, `white` the identity."""
    if kind == "white":
        return np.eye(c)
    rank, noise = (3, 0.01) if kind == "redundant" else (c // 2, 0.1)
    w = rng.normal(size=(rank, c))
    cov = w.T @ w / rank + noise * np.eye(c)
    d = 1 / np.sqrt(np.diag(cov))
    corr = cov * d[:, None] * d[None, :]
    np.fill_diagonal(corr, 1.0)
    return corr


def _stats(corr: np.ndarray, dead: np.ndarray | None = None) -> ModuleStats:
    c = corr.shape[0]
    dead = np.zeros(c, dtype=bool) if dead is None else dead
    # a 1x1 map: no ring is measurable, so the cluster split keeps the probed module's (as a 5x5-free probe would)
    return ModuleStats(n=1000, n_images=1000, map_size=(1, 1), mean=np.ones(c), var=np.where(dead, 0.0, 1.0),
                       corr=corr, dead=dead, corr_ring={1: None, 2: None}, ring_pairs={1: 0, 2: 0})


def planted(t: Topology, kinds: dict[str, str]) -> ProbeResult:
    rng = np.random.default_rng(7)
    chans = t.in_channels_of()
    return ProbeResult({n: _stats(_corr(chans[n], kinds[n], rng)) for n in t.module_names}, t.hash())


# the redundant and the white input in two places each, so no test passes by a module's position
LAYOUTS = [dict(zip(("inception3a", "inception3b", "inception4a"), k))
           for k in (("moderate", "redundant", "white"), ("white", "moderate", "redundant"))]


def _name(kinds: dict[str, str], kind: str) -> str:
    return next(n for n, k in kinds.items() if k == kind)


def _fit(t: Topology) -> Topology:
    return fit(t, BUDGET, multiple=1)


def _inception_share(t: Topology, module: str) -> float:
    costs = t.module_costs()
    return costs[module][0] / sum(v[0] for k, v in costs.items() if k.startswith("inception"))


# ---------------------------------------------------------------------------------------------
# the signals


def test_components_and_redundancy_of_planted_matrices() -> None:
    rng = np.random.default_rng(0)
    low, white = _corr(48, "redundant", rng), np.eye(48)
    k_low, held = components_for_energy(low, 0.95)
    assert k_low <= 4 and held >= 0.95  # three directions (and the noise) hold 95%
    assert components_for_energy(white, 0.99) == (48, pytest.approx(1.0))  # white: 0.99 of 48 needs all 48
    assert components_for_energy(white, 0.5)[0] == 24
    assert redundancy(low) > 0.8 and redundancy(white) == pytest.approx(0.0, abs=1e-9)


def test_dead_channels_hold_no_direction() -> None:
    """The probe writes 1 on a dead channel's diagonal; counted as is, a dead channel is a white one."""
    dead = np.zeros(10, dtype=bool)
    dead[5:] = True
    corr = np.eye(10)  # as the probe stores it: dead rows zero but the diagonal
    assert components_for_energy(corr, 0.99, dead)[0] == 5
    assert redundancy(corr, dead) == pytest.approx(0.5)
    assert redundancy(corr) == pytest.approx(0.0)  # without the mask: the branch measure, unchanged


@pytest.mark.parametrize("kinds", LAYOUTS)
def test_pca_gives_the_redundant_input_the_smaller_share(kinds: dict[str, str]) -> None:
    t = small_topology()
    probe = planted(t, kinds)
    red, white = _name(kinds, "redundant"), _name(kinds, "white")
    sig = pca_signals(probe, t.module_names, 0.99)
    assert sig[red].components < sig[red].channels / 3 and sig[white].components == sig[white].channels
    assert sig[red].share < sig[_name(kinds, "moderate")].share < sig[white].share
    d = derive(t, probe, Policy(allocation="pca"))
    fitted = _fit(d.topology)
    assert 0.98 * BUDGET <= fitted.macs() <= BUDGET
    ratio = {n: fitted.module(n).out_channels / t.module(n).out_channels for n in t.module_names}
    assert ratio[red] < ratio[white] / 3
    # the signal travels with the module, and the split inside it is the split-only policy's
    split = derive(t, probe, Policy(allocation="split"))
    for md, ms in zip(d.modules, split.modules):
        got = dict(md.signal)
        assert got["components"] == sig[md.name].components and got["kept share"] == pytest.approx(sig[md.name].share)
        assert md.raw_widths == pytest.approx(tuple(sig[md.name].share * v for v in ms.raw_widths))
        assert "pca:" in md.note


def test_a_lower_energy_counts_fewer_components() -> None:
    t = small_topology()
    probe = planted(t, LAYOUTS[0])
    lo, hi = pca_signals(probe, t.module_names, 0.95), pca_signals(probe, t.module_names, 0.99)
    assert all(lo[n].components <= hi[n].components for n in t.module_names)
    assert any(lo[n].components < hi[n].components for n in t.module_names)
    assert derive(t, probe, Policy(allocation="pca", energy=0.95)).topology != derive(
        t, probe, Policy(allocation="pca", energy=0.99)).topology


@pytest.mark.parametrize("kinds", LAYOUTS)
def test_redundancy_moves_macs_from_the_redundant_input_to_the_white_one(kinds: dict[str, str]) -> None:
    t = small_topology()
    probe = planted(t, kinds)
    red, white, mid = _name(kinds, "redundant"), _name(kinds, "white"), _name(kinds, "moderate")
    moves = redundancy_moves(t, module_redundancy(probe, t.module_names))
    assert (moves[red].rank, moves[mid].rank, moves[white].rank) == (1, 2, 3)
    assert moves[red].moved < 0 < moves[white].moved and moves[red].moved == pytest.approx(-moves[white].moved)
    assert 0.5 <= moves[red].factor < 1 < moves[white].factor and moves[mid].factor == 1.0  # 3 modules: one pair
    d = derive(t, probe, Policy(allocation="redundancy"))
    fitted = _fit(d.topology)
    paper = _fit(t)  # the starting point: the probed widths fitted to the same budget
    assert 0.98 * BUDGET <= fitted.macs() <= BUDGET
    assert fitted.module_costs()[red][0] < paper.module_costs()[red][0]  # it loses MACs at the same budget
    assert _inception_share(fitted, red) < _inception_share(paper, red)
    assert _inception_share(fitted, white) > _inception_share(paper, white)
    for md in d.modules:  # no clustering, and the branch split stays the probed module's
        probed = t.module(md.name)
        assert md.clusters == () and "clusters not used" in md.note
        assert md.raw_widths == pytest.approx(tuple(moves[md.name].factor * w for w in probed.widths))
        assert dict(md.signal)["rank"] == moves[md.name].rank
    assert derive(t, probe, Policy(allocation="redundancy")).topology == d.topology  # deterministic


def test_redundancy_moves_are_fixed_steps_bounded_by_the_floor() -> None:
    t = small_topology()
    probe = planted(t, LAYOUTS[0])
    red = module_redundancy(probe, t.module_names)
    terms = module_mac_terms(t)
    total = sum(a + b for a, b in terms.values())
    one = redundancy_moves(t, red, steps=1, step_share=0.02)
    assert one["inception3b"].moved == pytest.approx(-0.02 * total)  # one step of 2% of the Inception MACs
    many = redundancy_moves(t, red, steps=50, step_share=0.2)
    assert many["inception3b"].factor == pytest.approx(0.5)  # never below half its starting widths
    none = redundancy_moves(t, red, steps=0)
    assert all(m.factor == 1.0 and m.moved == 0 for m in none.values())
    # module MACs are a f + b f**2 at a fixed input width: f = 1 gives the module's own MACs
    costs = t.module_costs()
    assert all(a + b == costs[n][0] for n, (a, b) in terms.items())


@pytest.mark.parametrize(("knobs", "match"), [({"allocation": "pcaa"}, "unknown allocation"),
                                             ({"energy": 0.0}, "energy must be"), ({"steps": -1}, "steps must be"),
                                             ({"step_share": 1.0}, "step_share")])
def test_bad_policy_knobs(knobs: dict[str, object], match: str) -> None:
    from hebbnas.errors import HebbnasError

    with pytest.raises(HebbnasError, match=match):
        Policy.from_knobs(knobs)


# ---------------------------------------------------------------------------------------------
# where they are used: the hebbian strategy and the report


@pytest.mark.parametrize("allocation", ["pca", "redundancy"])
def test_the_hebbian_strategy_derives_with_the_policy(allocation: str) -> None:
    t = small_topology()
    probe = planted(t, LAYOUTS[0])
    got = get_strategy("hebbian").topology(t, probe, {"derive.allocation": allocation, "derive.energy": 0.95},
                                           probed=t)
    assert got == derive(t, probe, Policy(allocation=allocation, energy=0.95)).topology


@pytest.mark.parametrize(("allocation", "columns", "heading"), [
    ("pca", ("signal components", "signal energy share", "signal kept share"), "what the pca policy read"),
    ("redundancy", ("signal redundancy", "signal rank", "signal factor", "signal MACs moved"),
     "what the redundancy policy read")])
def test_the_report_says_the_signal_and_the_width_it_led_to(allocation: str, columns: tuple[str, ...], heading: str,
                                                            tmp_path: Path) -> None:
    t = small_topology()
    probe = planted(t, LAYOUTS[0])
    d = derive(t, probe, Policy(allocation=allocation))
    fitted = fit(d.topology, BUDGET)
    write_report(tmp_path, d, fitted, None, budget=BUDGET, plots=False)
    mt = pd.read_csv(tmp_path / "modules.csv")
    for col in columns:
        assert col in mt.columns and mt[col].notna().all(), col
    text = (tmp_path / "report.md").read_text()
    assert heading in text and "output width (paper)" in text
    rec = json.loads((tmp_path / "report.json").read_text())
    assert rec["policy"]["allocation"] == allocation and columns[0] in rec["modules"][0]
    # the cluster policies' report has no signal columns
    write_report(tmp_path / "c", derive(t, probe, Policy()), fit(derive(t, probe).topology, BUDGET), None,
                 budget=BUDGET, plots=False)
    assert not any(c.startswith("signal") for c in pd.read_csv(tmp_path / "c" / "modules.csv").columns)


# ---------------------------------------------------------------------------------------------
# the command line


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["pca", "redundancy"])
def test_probe_command_with_a_policy(policy: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "probe"
    assert main(["probe", "--smoke", "--policy", policy, "--budget", "1.5e9", "--out", str(out), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    info = json.loads((out / "probe.json").read_text())
    assert info["policy"]["allocation"] == policy and info["macs"] <= 1.5e9
    fitted = Topology.from_json((out / "topology.json").read_text())
    assert fitted.name.endswith(policy) and fitted.macs((3, 224, 224)) == info["macs"]
    assert f"what the {policy} policy read" in printed
    assert "signal" in (out / "report" / "modules.csv").read_text().splitlines()[0]


@pytest.mark.parametrize(("argv", "named"), [(["--policy", "bogus"], "invalid choice: 'bogus'"),
                                             (["--policy", "pca", "--energy", "1.5"], "energy must be in (0, 1]")])
def test_a_bad_policy_is_one_line(argv: list[str], named: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--smoke", "--budget", "1.5e9", "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and named in err, err
    assert not (tmp_path / "o").exists()

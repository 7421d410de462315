"""Budget fitting: the largest uniformly scaled topology under the MAC budget, and its errors."""

from __future__ import annotations

import dataclasses

import pytest

from hebbnas import HebbnasError, get_topology
from hebbnas.derive import fit, irreducible_macs


@pytest.mark.parametrize("budget", [1.5e9, 3e8, 8e7, 4e9])
@pytest.mark.parametrize("name", ["googlenet", "googlenet-tv"])
def test_fit_uses_the_budget(name: str, budget: float) -> None:
    t = fit(get_topology(name), budget)
    assert t.macs((3, 224, 224)) <= budget
    assert t.macs((3, 224, 224)) >= 0.98 * budget
    widths = [w for m in t.modules for w in m.widths] + [t.stem.conv1, t.stem.conv2, t.stem.conv3]
    assert all(w % 8 == 0 for w in widths)


def test_paper_googlenet_does_not_fit_1_5e9_unscaled() -> None:
    base = get_topology("googlenet")
    assert base.macs() > 1.5e9
    fitted = fit(base, 1.5e9)
    assert fitted.macs() <= 1.5e9 < base.macs()


def test_fit_keeps_zero_widths_and_proportions() -> None:
    base = get_topology("googlenet").with_widths({"inception4c": (0, 0, 0, 32, 64, 16)})
    t = fit(base, 6e8)
    m = t.module("inception4c")
    assert (m.b1, m.b2_red, m.b2) == (0, 0, 0) and m.b3 > m.b3_red > 0
    # wide modules stay wider than narrow ones
    assert t.module("inception5b").out_channels > t.module("inception3a").out_channels


def test_fit_other_multiple_and_param_cap() -> None:
    t = fit(get_topology("googlenet"), 1e9, multiple=16)
    assert all(w % 16 == 0 for m in t.modules for w in m.widths)
    capped = fit(get_topology("googlenet"), 1e9, max_params=2e6)
    assert capped.params() <= 2e6 and capped.macs() <= 1e9


def test_fit_with_fixed_stem() -> None:
    base = get_topology("googlenet")
    t = fit(base, 1.2e9, scale_stem=False)
    assert t.stem == base.stem and t.macs() <= 1.2e9
    with pytest.raises(HebbnasError, match="stem kept fixed"):
        fit(base, 3e8, scale_stem=False)


@pytest.mark.parametrize("budget", [0, -1.0, float("nan"), float("inf")])
def test_fit_rejects_bad_budgets(budget: float) -> None:
    with pytest.raises(HebbnasError, match="budget"):
        fit(get_topology("googlenet"), budget)


def test_fit_below_irreducible_cost() -> None:
    base = get_topology("googlenet")
    floor = irreducible_macs(base)
    with pytest.raises(HebbnasError, match="irreducible cost"):
        fit(base, floor * 0.99)
    t = fit(base, floor * 1.5)  # between the 1-channel floor and the 8-channel one: rounding is dropped
    assert t.macs() <= floor * 1.5


def test_fit_is_deterministic_and_named() -> None:
    base = dataclasses.replace(get_topology("googlenet"), name="x")
    assert fit(base, 5e8, name="y") == fit(base, 5e8, name="y")
    assert fit(base, 5e8, name="y").name == "y"

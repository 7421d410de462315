"""The split-only policy: module output widths stay the probed topology's, the branch split is the clusters'."""

from __future__ import annotations

import pytest

from hebbnas import HebbnasError
from hebbnas.derive import Policy, derive, fit
from tests.builders import PLAN, planted_probe, small_topology


def test_default_allocation_is_clusters() -> None:
    assert Policy().allocation == "clusters"
    with pytest.raises(HebbnasError, match="allocation"):
        Policy(allocation="modules")
    assert Policy.from_knobs({"allocation": "split"}).allocation == "split"


def test_split_keeps_module_output_widths() -> None:
    t = small_topology()
    probe = planted_probe(t)
    both = derive(t, probe, Policy())
    split = derive(t, probe, Policy(allocation="split"))
    for mb, ms in zip(both.modules, split.modules):
        probed = t.module(ms.name)
        rb, rs = mb.raw_widths, ms.raw_widths
        # the raw output width equals the probed module's (#1x1 + #3x3 + #5x5 + pool proj)
        assert rs[0] + rs[2] + rs[4] + rs[5] == pytest.approx(probed.out_channels)
        # the split between branches (and the reductions) is the clusters' one, only rescaled
        factor = rs[0] / rb[0]
        assert rs == pytest.approx(tuple(factor * v for v in rb))
        assert "split only" in ms.note
    # with the default, module widths follow cluster counts, which differ across modules here
    totals = [m.raw_widths[0] + m.raw_widths[2] + m.raw_widths[4] + m.raw_widths[5] for m in both.modules]
    assert len({round(v, 6) for v in totals}) > 1
    # integer topology: output widths in the probed proportions between modules, up to rounding
    td = split.topology
    ratio = [td.module(n).out_channels / t.module(n).out_channels for n in PLAN]
    assert max(ratio) / min(ratio) == pytest.approx(1.0, abs=0.15)


def test_split_differs_from_default_and_fits() -> None:
    t = small_topology()
    probe = planted_probe(t)
    split = derive(t, probe, Policy(allocation="split")).topology
    default = derive(t, probe, Policy()).topology
    assert split.widths() != default.widths()
    f = fit(split, 5e7)
    assert 0.98 * 5e7 <= f.macs() <= 5e7
    # width_exponent changes module totals only, so it has no effect under the split-only policy
    other = derive(t, probe, Policy(allocation="split", width_exponent=0.5)).topology
    assert other.widths() == split.widths()

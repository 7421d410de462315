"""Derivation: planted clusters with known spatial scales become the right branch widths."""

from __future__ import annotations

import numpy as np
import pytest

from hebbnas import HebbnasError
from hebbnas.derive import Policy, derive, derive_topology, fit
from tests.builders import GROUP, PLAN, planted_probe, small_topology

def test_planted_clusters_become_branches() -> None:
    t = small_topology()
    d = derive(t, planted_probe(t), Policy(threshold=0.5, scale_cut=0.35))
    for md in d.modules:
        n1, n3, n5 = PLAN[md.name]
        noise = md.in_channels - 1 - GROUP * (n1 + n3 + n5)
        assert md.count(3) == n3 and md.count(5) == n5
        assert md.count(1) == n1 + noise + 1  # the dead channel is a scale-1 singleton, never a branch
        assert md.scale_measured and md.dead == (md.in_channels - 1,)
        k = n1 + n3 + n5 + noise  # live clusters
        r, p = 0.75, 0.15
        expect = (n1 + noise, r * (n3 + n5), n3, r * n5, n5, p * k)
        assert md.raw_widths == pytest.approx(expect)
        assert {c.branch for c in md.clusters if c.scale == 5 and c.branch != "dead"} == {"branch3"}
    # the derived topology keeps the proportions: inception3b (most spread clusters) has the widest 3x3
    td = d.topology
    assert td.module("inception3b").b2 > td.module("inception3a").b2
    assert td.module("inception3a").b1 > td.module("inception3a").b3


def test_derived_topology_fits_the_budget() -> None:
    t = small_topology()
    derived = derive_topology(t, planted_probe(t), threshold=0.5)
    for budget in (2e8, 5e7):
        f = fit(derived, budget)
        assert 0.98 * budget <= f.macs() <= budget


def test_unmeasurable_scale_keeps_the_probed_split() -> None:
    t = small_topology()
    d = derive(t, planted_probe(t, map_size=1), Policy())
    for md in d.modules:
        assert not md.scale_measured and "not measurable" in md.note
        m = t.module(md.name)
        b1, b2, b3 = md.raw_widths[0], md.raw_widths[2], md.raw_widths[4]
        assert b1 / b2 == pytest.approx(m.b1 / m.b2) and b2 / b3 == pytest.approx(m.b2 / m.b3)


def test_width_exponent_compresses_the_range() -> None:
    t = small_topology()
    probe = planted_probe(t)
    flat = derive(t, probe, Policy(width_exponent=0.5))
    full = derive(t, probe, Policy(width_exponent=1.0))
    k = {m.name: m.num_clusters for m in full.modules}
    assert k["inception3a"] != k["inception4a"]
    ratio_full = sum(full.module("inception3a").raw_widths) / sum(full.module("inception4a").raw_widths)
    ratio_flat = sum(flat.module("inception3a").raw_widths) / sum(flat.module("inception4a").raw_widths)
    assert abs(np.log(ratio_flat)) < abs(np.log(ratio_full))


def test_probe_from_another_topology() -> None:
    t = small_topology()
    probe = planted_probe(t)
    other = t.with_widths({"inception3a": (8, 8, 8, 8, 8, 8)})
    with pytest.raises(HebbnasError, match="another topology"):
        derive(other, probe)


@pytest.mark.parametrize(
    ("knobs", "match"),
    [
        ({"threshold": 0.0}, "threshold must be in"),
        ({"threshold": 1.0}, "threshold must be in"),
        ({"method": "kmeans"}, "unknown clustering method"),
        ({"bogus": 1}, "unknown derivation knobs"),
    ],
)
def test_bad_knobs(knobs: dict[str, object], match: str) -> None:
    t = small_topology()
    with pytest.raises(HebbnasError, match=match):
        derive_topology(t, planted_probe(t), **knobs)

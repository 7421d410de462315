"""Derivation: planted clusters with known spatial scales become the right branch widths."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hebbnas import HebbnasError, get_topology
from hebbnas.derive import Policy, derive, derive_topology, fit
from hebbnas.probe import ModuleStats, ProbeResult
from hebbnas.topology import Topology

# (n scale-1 groups, n scale-3 groups, n scale-5 groups) planted at every module input
PLAN = {"inception3a": (6, 3, 1), "inception3b": (2, 6, 2), "inception4a": (4, 4, 4)}
GROUP = 4  # channels per planted group
DECAY = {1: (0.05, 0.0), 3: (0.6, 0.2), 5: (0.8, 0.6)}  # ring-1 / ring-2 correlation relative to ring 0


def small_topology() -> Topology:
    base = get_topology("googlenet")
    mods = []
    widths = {"inception3a": 48, "inception3b": 64}
    for m in base.modules[:3]:
        out = widths.get(m.name, 32)
        mods.append(m.with_widths((out // 4, 8, out // 4, 8, out // 4, out // 4)))
    stem = dataclasses.replace(base.stem, conv3=48)
    return dataclasses.replace(base, modules=tuple(mods), stem=stem, pools=(), aux_after=(), name="small",
                               num_classes=10)


def planted_stats(c: int, plan: tuple[int, int, int], rng: np.random.Generator, map_size: int = 8) -> ModuleStats:
    scales = [1] * plan[0] + [3] * plan[1] + [5] * plan[2]
    corr = np.eye(c)
    rings = {1: np.zeros((c, c)), 2: np.zeros((c, c))}
    for g, s in enumerate(scales):
        idx = np.arange(g * GROUP, (g + 1) * GROUP)
        r = rng.uniform(0.6, 0.8)
        block = np.full((GROUP, GROUP), r)
        np.fill_diagonal(block, 1.0)
        corr[np.ix_(idx, idx)] = block
        for d in (1, 2):
            rings[d][np.ix_(idx, idx)] = block * DECAY[s][d - 1]
    # the remaining channels are independent noise (singletons, scale 1) except the last, which is dead
    dead = np.zeros(c, dtype=bool)
    dead[-1] = True
    corr[-1, :] = corr[:, -1] = 0.0
    corr[-1, -1] = 1.0
    for d in (1, 2):
        rest = np.arange(len(scales) * GROUP, c - 1)
        rings[d][rest, rest] = 0.02
    # like the probe: a ring that does not fit in the map is not measured
    ring_of = {d: (rings[d] if map_size > d else None) for d in (1, 2)}
    return ModuleStats(n=1000, n_images=100, map_size=(map_size, map_size), mean=np.zeros(c), var=np.where(dead, 0, 1.0),
                       corr=corr, dead=dead, corr_ring=ring_of, ring_pairs={d: int(map_size > d) for d in (1, 2)})


def planted_probe(t: Topology, map_size: int = 8) -> ProbeResult:
    rng = np.random.default_rng(0)
    chans = t.in_channels_of()
    return ProbeResult({n: planted_stats(chans[n], PLAN[n], rng, map_size) for n in t.module_names}, t.hash())


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

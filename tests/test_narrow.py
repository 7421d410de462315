"""Topology.narrowed: the width proxy's uniformly narrowed copy."""

from __future__ import annotations

import pytest

from hebbnas import HebbnasError, get_topology
from hebbnas.derive import fit
from hebbnas.topology import Topology


def test_narrowed_scales_every_width() -> None:
    t = get_topology("googlenet")
    n = t.narrowed(0.25)
    assert n.stem.conv1 == 16 and n.stem.conv2 == 16 and n.stem.conv3 == 48
    assert n.module("inception3a").widths == (16, 24, 32, 4, 8, 8)
    assert n.module("inception5b").widths == (96, 48, 96, 12, 32, 32)
    assert n.module_names == t.module_names and n.pools == t.pools and n.num_classes == t.num_classes
    assert n.name == "googlenet-w0.25"
    assert t.narrowed(1.0).widths() == t.widths() and t.narrowed(1.0).stem == t.stem


def test_narrowed_keeps_branches_and_zeros() -> None:
    t = get_topology("googlenet")
    m = t.modules[0].with_widths((5, 0, 3, 1, 2, 0))
    t2 = t.with_widths({m.name: m.widths})
    n = t2.narrowed(0.01)
    assert n.module(m.name).widths == (1, 0, 1, 1, 1, 0)  # non-zero stays >= 1, zero stays 0
    assert all(w >= 1 for mod in n.modules for w, w0 in zip(mod.widths, t2.module(mod.name).widths) if w0)


def test_narrowed_cost_and_roundtrip() -> None:
    t = fit(get_topology("googlenet").with_classes(10), 3e8, (3, 224, 224))
    n = t.narrowed(0.25, name="proxy")
    assert n.name == "proxy"
    # MACs scale about with width**2 (conv1, fed by 3 image channels, only with width)
    assert 0.0625 < n.macs((3, 224, 224)) / t.macs((3, 224, 224)) < 0.12
    assert Topology.from_json(n.to_json()) == n


@pytest.mark.parametrize("bad", [0, -0.5, float("nan"), float("inf"), True, "0.5"])
def test_narrowed_rejects_bad_width(bad: object) -> None:
    with pytest.raises(HebbnasError, match="width"):
        get_topology("googlenet").narrowed(bad)  # type: ignore[arg-type]

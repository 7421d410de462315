"""Closed-form MACs/params against the built module, JSON round-trips and validation."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hebbnas import HebbnasError, Topology, build, get_topology
from hebbnas.model import count_params
from hebbnas.topology import (
    BASE_TOPOLOGIES,
    InceptionSpec,
    irreducible_topology,
    load_topology,
    min_input_size,
    parse_input_shape,
    round_width,
)


def measured_macs(model: torch.nn.Module, shape: tuple[int, int, int]) -> int:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, *shape))
    flops = fc.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


@pytest.mark.parametrize(
    ("name", "params", "macs"),
    [("googlenet-tv", 6_624_904, 1_498_376_192), ("googlenet", 7_005_832, 1_582_671_872)],
)
def test_reference_numbers(name: str, params: int, macs: int) -> None:
    t = get_topology(name)
    assert t.params() == params
    assert t.macs((3, 224, 224)) == macs
    model = build(t)
    assert count_params(model) == params  # aux heads excluded
    assert count_params(model, aux=True) == t.params(aux=True)
    assert measured_macs(model, (3, 224, 224)) == macs


def test_worked_examples_from_design() -> None:
    # 3x3 conv 192->128 with bias vs a 1x1 reduction to 64 first
    assert (3 * 3 * 192 + 1) * 128 == 221_312
    assert (192 + 1) * 64 + (3 * 3 * 64 + 1) * 128 == 86_208
    # the same saving in our closed form (BN instead of bias: 2 params per channel)
    full = get_topology("googlenet").with_widths({"inception3a": (0, 0, 128, 0, 0, 0)})
    red = get_topology("googlenet").with_widths({"inception3a": (0, 64, 128, 0, 0, 0)})
    c_full, c_red = full.module_costs()["inception3a"], red.module_costs()["inception3a"]
    assert c_full[1] == 3 * 3 * 192 * 128 + 2 * 128
    assert c_red[1] == 192 * 64 + 2 * 64 + 3 * 3 * 64 * 128 + 2 * 128
    # 5x5 480->128 through a 32 reduction: ~13x fewer MACs
    a, b, c = 480, 128, 32
    assert round(25 * a * b / (a * c + 25 * c * b)) == 13
    t0 = get_topology("googlenet").with_widths({"inception4a": (0, 0, 0, 0, 128, 0)})
    t1 = get_topology("googlenet").with_widths({"inception4a": (0, 0, 0, 32, 128, 0)})
    m0, m1 = t0.module_costs()["inception4a"][0], t1.module_costs()["inception4a"][0]
    assert 12.5 < m0 / m1 < 13.5


def random_topology(rng: random.Random) -> Topology:
    base = get_topology(rng.choice(list(BASE_TOPOLOGIES)))
    mods = []
    for m in base.modules:
        while True:
            w = [rng.choice([0, rng.randint(1, 24)]) for _ in range(6)]
            if w[0] + w[2] + w[4] + w[5] > 0:
                break
        mods.append(dataclasses.replace(m, b3_kernel=rng.choice([3, 5])).with_widths(w))
    stem = dataclasses.replace(base.stem, conv1=rng.randint(4, 16), conv2=rng.randint(4, 16), conv3=rng.randint(4, 24))
    return dataclasses.replace(base, modules=tuple(mods), stem=stem, num_classes=rng.randint(2, 20),
                               in_channels=rng.choice([1, 3]), name="random")


@pytest.mark.parametrize("seed", range(12))
def test_random_topologies_match_module(seed: int) -> None:
    rng = random.Random(seed)
    t = random_topology(rng)
    lo = min_input_size(t)
    shape = (t.in_channels, rng.randint(lo, 80), rng.randint(lo, 80))
    model = build(t)
    assert count_params(model) == t.params()
    assert count_params(model, aux=True) == t.params(aux=True)
    assert measured_macs(model, shape) == t.macs(shape)
    out = model(torch.zeros(2, *shape))
    assert out.shape == (2, t.num_classes)
    assert Topology.from_json(t.to_json()) == t


def test_minimum_input_is_exact() -> None:
    for t in BASE_TOPOLOGIES.values():
        lo = min_input_size(t)
        build(t).eval()(torch.zeros(1, 3, lo, lo))
        with pytest.raises(HebbnasError, match="input too small"):
            t.macs((3, lo - 1, lo - 1))
        with pytest.raises(RuntimeError):
            build(t).eval()(torch.zeros(1, 3, lo - 1, lo - 1))


@pytest.mark.parametrize("name", list(BASE_TOPOLOGIES))
def test_forward_at_32_and_224(name: str) -> None:
    t = get_topology(name).with_classes(10)
    model = build(t).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 10)
    model.train()
    logits, aux = model.forward_with_aux(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and [a.shape for a in aux] == [(2, 10), (2, 10)]


def test_zero_width_removes_branch() -> None:
    t = get_topology("googlenet").with_widths({"inception4c": (0, 0, 0, 16, 32, 0)})
    m = build(t)
    assert m.inception4c.branch1 is None and m.inception4c.branch2 is None and m.inception4c.branch4 is None
    assert t.module("inception4c").out_channels == 32
    # a zero reduction feeds the branch directly
    t2 = get_topology("googlenet").with_widths({"inception4c": (8, 0, 16, 0, 0, 0)})
    assert len(build(t2).inception4c.branch2) == 1
    with pytest.raises(HebbnasError, match="no branch left"):
        get_topology("googlenet").with_widths({"inception4c": (0, 16, 0, 16, 0, 0)})


def test_json_round_trip_and_hash() -> None:
    t = get_topology("googlenet")
    t2 = Topology.from_json(t.to_json())
    assert t2 == t and t2.hash() == t.hash()
    assert t.with_widths({"inception3a": (8, 8, 8, 8, 8, 8)}).hash() != t.hash()
    assert json.loads(t.to_json())["modules"][0]["name"] == "inception3a"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{", "malformed topology JSON"),
        ("[]", "expected a JSON object"),
        ('{"name": "x"}', "malformed topology"),
        ('{"name": "x", "modules": [{"name": "a", "b1": -1, "b2_red": 0, "b2": 0, "b3_red": 0, "b3": 0, "b4": 0}]}',
         "non-negative"),
        ('{"name": "x", "modules": [], "bogus": 1}', "unknown keys"),
    ],
)
def test_malformed_json(text: str, match: str) -> None:
    with pytest.raises(HebbnasError, match=match):
        Topology.from_json(text)


def test_load_topology_errors(tmp_path) -> None:
    with pytest.raises(HebbnasError, match="unknown topology"):
        load_topology("resnet50")
    with pytest.raises(HebbnasError, match="not found"):
        load_topology(str(tmp_path / "missing.json"))
    p = tmp_path / "t.json"
    p.write_text(get_topology("googlenet-tv").to_json())
    assert load_topology(str(p)) == get_topology("googlenet-tv")


def test_helpers() -> None:
    assert parse_input_shape("3x224x224") == (3, 224, 224)
    with pytest.raises(HebbnasError):
        parse_input_shape("224")
    assert [round_width(w, 8) for w in (0, 0.1, 3.9, 4.1, 12.5)] == [0, 8, 8, 8, 16]
    floor = irreducible_topology(get_topology("googlenet"))
    assert floor.macs() < get_topology("googlenet").macs()
    assert all(m.b2_red == 0 and m.b1 == 1 for m in floor.modules)
    assert isinstance(get_topology("googlenet").module("inception3a"), InceptionSpec)

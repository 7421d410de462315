"""Training-free scores, each against a case whose answer is known (--prescreen: tests/test_width_proxy.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hebbnas.errors import HebbnasError
from hebbnas.probe import ModuleStats, ProbeResult
from hebbnas.score import (
    SCORES,
    effective_rank,
    hebb_erank,
    hebb_erank_sampled,
    hebb_erank_width,
    min_eigenvalue_sum,
    naswot,
    score_candidate,
)
from hebbnas.topology import StemSpec, Topology, get_topology


def _tiny(width: int = 8) -> Topology:
    t = get_topology("googlenet")
    t = t.with_widths({m.name: (width, width // 2, width, width // 2, width, width) for m in t.modules}, name="tiny")
    import dataclasses

    return dataclasses.replace(t, stem=StemSpec(8, 8, 16), num_classes=10)


def _stats(corr: np.ndarray) -> ModuleStats:
    c = corr.shape[0]
    return ModuleStats(n=100, n_images=1, map_size=(10, 10), mean=np.zeros(c), var=np.ones(c), corr=corr,
                       dead=np.zeros(c, dtype=bool), corr_ring={}, ring_pairs={})


def test_effective_rank_counts_independent_directions() -> None:
    assert effective_rank(np.eye(6)) == pytest.approx(6.0)
    assert effective_rank(np.ones((6, 6))) == pytest.approx(1.0)
    block = np.kron(np.eye(3), np.ones((2, 2)))  # three perfectly correlated pairs
    assert effective_rank(block) == pytest.approx(3.0)


def test_hebb_erank_and_meco_aggregate_over_modules() -> None:
    probe = ProbeResult({"a": _stats(np.eye(4)), "b": _stats(np.kron(np.eye(2), np.ones((2, 2))))})
    assert hebb_erank(probe) == pytest.approx(np.log(4) + np.log(2))
    assert min_eigenvalue_sum(probe) == pytest.approx(1.0 + 0.0, abs=1e-12)


def test_width_debiased_eranks_do_not_count_channels() -> None:
    narrow = ProbeResult({"a": _stats(np.eye(16))})
    wide = ProbeResult({"a": _stats(np.eye(64))})
    assert hebb_erank(wide) > hebb_erank(narrow)  # the plain score grows with width ...
    assert hebb_erank_width(wide) == pytest.approx(hebb_erank_width(narrow)) == pytest.approx(0.0)  # ... these do not
    assert hebb_erank_sampled(wide) == pytest.approx(hebb_erank_sampled(narrow)) == pytest.approx(np.log(8))
    pairs = ProbeResult({"a": _stats(np.kron(np.eye(32), np.ones((2, 2))))})  # 64 channels, 32 directions
    assert hebb_erank_width(pairs) == pytest.approx(np.log(0.5))
    assert hebb_erank_sampled(pairs) < hebb_erank_sampled(wide)  # some sampled channels repeat each other


def test_naswot_on_a_fixed_number_of_units_per_layer(one_thread: None) -> None:
    from hebbnas.model import build

    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    scores = []
    for w in (8, 32):
        torch.manual_seed(0)
        model = build(_tiny(w), aux=False)
        scores.append((naswot(model, x), naswot(model, x, units=64), naswot(model, x, units=64)))
    (n8, k8, k8b), (n32, k32, _) = scores
    assert k8 == k8b  # seeded
    assert n32 - n8 > abs(k32 - k8)  # all units: the wider net scores higher; a fixed number: far closer


def test_naswot_separates_distinct_from_identical_inputs(one_thread: None) -> None:
    from hebbnas.model import build

    torch.manual_seed(0)
    model = build(_tiny(), aux=False)
    distinct = naswot(model, torch.randn(16, 3, 32, 32))
    same = naswot(model, torch.randn(1, 3, 32, 32).repeat(16, 1, 1, 1))
    assert np.isfinite(distinct) and (same == float("-inf") or same < distinct - 10)


def test_scores_are_seeded_and_named(one_thread: None) -> None:
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = score_candidate(_tiny(), x, seed=3)
    b = score_candidate(_tiny(), x, seed=3)
    assert set(a.values) == set(SCORES) and a.values == b.values
    assert a.values["params"] == _tiny().params() and all(v >= 0 for v in a.seconds.values())
    wider = score_candidate(_tiny(16), x, seed=3, which=["params"])
    assert wider.values["params"] > a.values["params"]
    with pytest.raises(HebbnasError, match="unknown score"):
        score_candidate(_tiny(), x, which=["vibes"])

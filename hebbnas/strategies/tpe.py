"""tpe: Optuna's TPE over the random strategy's width space, whose first trials are the paper's widths
and the probe's best derivations.

Mechanism borrowed: EagleEye and AutoSlim both start from strong known allocations and let measured
accuracy decide; here Optuna's TPE sampler is seeded (`enqueue_trial`) with the paper's widths (every
multiplier 1) and with the derivations of the round's probe under the policies that did best on the zoo
(split + partial, then split: analysis/results/zoo.md), each expressed as per-width multipliers of the
seed (clipped to the space's range). TPE then models what trained well. The paper's widths are trained
first, so the search's best validation accuracy is never below theirs (unless ASHA stopped that trial
at an earlier epoch than the others ran). `--prescreen N` works as for every strategy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hebbnas.strategies import register
from hebbnas.strategies.random import Random, width_distributions

if TYPE_CHECKING:
    from hebbnas.probe import ProbeResult
    from hebbnas.space import Space
    from hebbnas.topology import Topology

DERIVED_POLICIES: tuple[dict[str, Any], ...] = ({"allocation": "split", "partial": True}, {"allocation": "split"})
"""The derivations enqueued after the paper's widths: the zoo's best and second-best hebbian policies."""


@register
class TPE(Random):
    """The random strategy's space, searched by TPE from the paper's widths and the probe's derivations."""

    name = "tpe"
    probes_seed = True

    def initial_points(self, space: Space, round_: int, n_trials: int, *, seed: Topology | None = None,
                       probe: ProbeResult | None = None, probed: Topology | None = None) -> list[dict[str, Any]]:
        dists = width_distributions(space)
        points = [{f"width.{k}": 1.0 for k in dists}]
        if seed is not None and probe is not None and probed is not None:
            from hebbnas.derive import Policy, derive

            for knobs in DERIVED_POLICIES:
                derived = derive(probed, probe, Policy(**knobs)).topology
                points.append(multipliers(seed, derived, dists))
        return points[:n_trials]


def multipliers(seed: Topology, target: Topology, dists: Mapping[str, Any]) -> dict[str, float]:
    """Per-width multipliers that bring `seed`'s proportions to `target`'s, clipped to each distribution.

    The target may be at another scale (a derivation of a narrowed copy): multipliers are normalised so
    their geometric mean is 1, since the budget fit sets the scale anyway.
    """
    raw: dict[str, float] = {}
    for m_seed, m_target in zip(seed.modules, target.modules):
        for f in ("b1", "b2_red", "b2", "b3_red", "b3", "b4"):
            key = f"{m_seed.name}.{f}"
            if key in dists:
                raw[key] = max(getattr(m_target, f), 1) / getattr(m_seed, f)
    norm = math.exp(sum(math.log(v) for v in raw.values()) / max(len(raw), 1))
    out = {}
    for key, v in raw.items():
        d = dists[key]
        out[f"width.{key}"] = float(min(max(v / norm, d.low), d.high))
    return out

"""tpe: Optuna's TPE over the random strategy's width space, whose first trials are the paper's widths
and the probe's best derivations.

Mechanism borrowed: EagleEye and AutoSlim both start from strong known allocations and let measured
accuracy decide; here Optuna's TPE sampler is seeded (`enqueue_trial`) with the paper's widths (every
multiplier 1) and with the derivations of the round's probe under the policies that did best on the zoo
(split + partial, then split: analysis/results/zoo.md), each expressed as the exact per-width multipliers
of the seed that give the derived network (not clipped to the sampled range). TPE then models what trained
well; its random start-up draws are counted after the enqueued trials (`Strategy.sampler`), and trials.csv
says for every trial how it was drawn (`drawn_by`). The paper's widths are trained
first, so the search's best validation accuracy is never below theirs (unless ASHA stopped that trial
at an earlier epoch than the others ran). `--prescreen N` works as for every strategy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hebbnas.strategies import Strategy, register
from hebbnas.strategies.random import REMOVED, Random, width_distributions
from hebbnas.topology import WIDTH_FIELDS

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
    order = 50
    probes_seed = True
    sampler = Strategy.sampler  # TPE, its start-up draws counted after the enqueued networks (not Random's)

    def report_derivations(self, space: Space, best: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The derivations this strategy enqueued, each on the round's probe (what the probe saw and what
        each derivation made of it)."""
        defaults = {n: d.default() for n, d in space.section("derive").items()}
        return [(f"{policy_label(p)} (enqueued by tpe)", {**defaults, **p}) for p in DERIVED_POLICIES]

    def initial_points(self, space: Space, round_: int, n_trials: int, *, seed: Topology | None = None,
                       probe: ProbeResult | None = None, probed: Topology | None = None) -> list[dict[str, Any]]:
        dists = width_distributions(space)
        points = [{f"width.{k}": 1.0 for k in dists}]
        if seed is not None and probe is not None and probed is not None:
            from hebbnas.derive import Policy, derive

            for knobs in DERIVED_POLICIES:
                derived = derive(probed, probe, Policy(**knobs)).topology
                points.append(multipliers(seed, derived, probed, dists))
        return points[:n_trials]


def multipliers(seed: Topology, derived: Topology, probed: Topology, dists: Mapping[str, Any]) -> dict[str, float]:
    """Per-width multipliers of `seed` whose trial is the derivation itself: exact, never clipped.

    `derived` has the proportions of the network the probe was taken on (`probed`, the seed's width-proxy
    copy), stem included; scaling its widths by the seed's stem over the probed stem gives the seed's
    stem beside the derivation's Inception widths, so the budget fit (which scales stem and widths
    together) gives what the hebbian strategy trains for this policy. Optuna records the multipliers as
    they are, also outside the sampled range (TPE's own draws stay inside it). A branch the derivation
    removed (width 0) gets the multiplier `REMOVED`, which removes it again.
    """
    r = sum(_stem(seed)) / sum(_stem(probed))
    out: dict[str, float] = {}
    for m_seed, m_der in zip(seed.modules, derived.modules):
        for f in WIDTH_FIELDS:
            key = f"{m_seed.name}.{f}"
            if key in dists:
                w = getattr(m_der, f)
                out[f"width.{key}"] = w * r / getattr(m_seed, f) if w else REMOVED
    return out


def _stem(t: Topology) -> tuple[int, int, int]:
    return t.stem.conv1, t.stem.conv2, t.stem.conv3


def policy_label(policy: Mapping[str, Any]) -> str:
    """'split + partial' for {"allocation": "split", "partial": True}: a derivation policy in words."""
    return " + ".join([str(policy.get("allocation", "clusters"))] + (["partial"] if policy.get("partial") else []))

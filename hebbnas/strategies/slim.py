"""slim: one global redundancy threshold over the probe of the seed, then the budget fit, trained from
scratch.

Mechanism borrowed: network slimming (Liu et al. 2017) ranks every channel of a trained network against
one global threshold, keeps those above it wherever they are, and retrains the slimmed network from
scratch. Here the probe says how many units each Inception branch needs: the fewest eigen-directions
of its output's correlation that hold `energy` of its variance (one energy for the whole network, the
global threshold), over its width. Every branch keeps that share of its seed width (its 1x1 reduction
with it; the last module's branches, whose output the probe does not see, keep the network's mean
share), and the whole is fitted to the budget, so widths move towards the branches whose units carry
independent signal. Optuna searches the energy; validation accuracy chooses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from hebbnas.errors import HebbnasError
from hebbnas.strategies import Strategy, knobs, register
from hebbnas.topology import BRANCH_FIELDS, FIELD_INDEX

if TYPE_CHECKING:
    from hebbnas.probe import ProbeResult
    from hebbnas.space import Distribution, Space
    from hebbnas.topology import Topology

ENERGY = (0.5, 0.99)
"""The searched range of the energy a branch's kept units must hold."""


@register
class Slim(Strategy):
    """Widths from one global energy threshold on the probe of the seed (network slimming's rule)."""

    name = "slim"
    order = 40
    knob_prefix: ClassVar[str] = "slim"
    probes_seed = True
    multi_round = True

    def distributions(self, space: Space) -> dict[str, Distribution]:
        from hebbnas.space import Distribution

        return {"slim.energy": Distribution("float", low=ENERGY[0], high=ENERGY[1])}

    def topology(self, seed: Topology, probe: ProbeResult | None, config: Mapping[str, Any], *,
                 probed: Topology | None = None, start: Topology | None = None) -> Topology:
        if probe is None:
            raise HebbnasError("strategy slim needs the round's probe")
        return slimmed(seed, probed or seed, probe, float(knobs(config, self.knob_prefix).get("energy", 0.9)))


def slimmed(seed: Topology, probed: Topology, probe: ProbeResult, energy: float) -> Topology:
    """`seed` with every branch times its kept share at `energy` (not fitted: the caller fits it)."""
    from hebbnas.redundancy import branch_correlations, kept_fraction

    if not 0 < energy <= 1:
        raise HebbnasError(f"slim.energy must be in (0, 1], got {energy}")
    share = {b: kept_fraction(c, energy) for b, c in branch_correlations(probed, probe).items()}
    mean = sum(share.values()) / max(len(share), 1)
    widths = {}
    for m in seed.modules:
        w = list(m.widths)
        for b, fields in BRANCH_FIELDS.items():
            f = share.get((m.name, b), mean)
            for i in (FIELD_INDEX[field] for field in fields):
                if w[i]:
                    w[i] = max(1, int(round(w[i] * f)))
        widths[m.name] = tuple(w)
    return seed.with_widths(widths)

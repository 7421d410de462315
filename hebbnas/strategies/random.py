"""random: every width of every module is the base width times its own sampled multiplier."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from hebbnas.errors import HebbnasError
from hebbnas.strategies import Strategy, knobs, register
from hebbnas.topology import WIDTH_FIELDS

if TYPE_CHECKING:
    from hebbnas.probe import ProbeResult
    from hebbnas.space import Distribution, Space
    from hebbnas.topology import Topology

WIDTH_SCALE = "width_scale"
"""The `random:` knob every width falls back to; ``<module>.<field>`` keys override it per width."""


@register
class Random(Strategy):
    """The baseline a derivation must beat: random proportions, fitted to the same budget."""

    name = "random"
    order = 10
    knob_prefix: ClassVar[str] = "width"
    yaml_section: ClassVar[str] = "random"

    def validate(self, space: Space) -> None:
        width_distributions(space)

    def distributions(self, space: Space) -> dict[str, Distribution]:
        return {f"{self.knob_prefix}.{k}": d for k, d in width_distributions(space).items()}

    def sampler(self, seed: int, n_trials: int, n_enqueued: int) -> tuple[Any, int | None]:
        """Random search is random: Optuna's RandomSampler for every trial."""
        import optuna

        return optuna.samplers.RandomSampler(seed=seed), None

    def topology(self, seed: Topology, probe: ProbeResult | None, config: Mapping[str, Any], *,
                 probed: Topology | None = None, start: Topology | None = None) -> Topology:
        return scaled_topology(seed, knobs(config, self.knob_prefix))


def width_distributions(space: Space) -> dict[str, Distribution]:
    """Per-width distributions, keyed ``<module>.<field>`` (non-zero widths of the base only)."""
    own = space.section(Random.yaml_section)
    if WIDTH_SCALE not in own:
        raise HebbnasError(f"{space.source}: strategy random needs random.{WIDTH_SCALE}")
    keys = {f"{m.name}.{f}": m for m in space.base.modules for f in WIDTH_FIELDS if getattr(m, f)}
    extra = sorted(set(own) - set(keys) - {WIDTH_SCALE})
    if extra:
        raise HebbnasError(f"{space.source}: random: keys {extra} name no width of {space.base.name}")
    return {k: own.get(k, own[WIDTH_SCALE]) for k in keys}


REMOVED = 1e-9
"""The multiplier of a width an enqueued network removed (tpe's derivations can drop a branch); anything
below `REMOVE_BELOW` gives width 0. Sampled ranges are positive and never reach it."""
REMOVE_BELOW = 1e-6


def scaled_topology(t: Topology, multipliers: Mapping[str, float]) -> Topology:
    """Each non-zero width times its multiplier (at least 1, or 0 for a multiplier below `REMOVE_BELOW`);
    a missing multiplier is 1."""
    def width(w: int, m: float) -> int:
        return 0 if not w or m < REMOVE_BELOW else max(1, int(round(w * m)))

    widths = {mod.name: tuple(width(w, float(multipliers.get(f"{mod.name}.{f}", 1.0)))
                              for f, w in zip(WIDTH_FIELDS, mod.widths)) for mod in t.modules}
    return t.with_widths(widths)

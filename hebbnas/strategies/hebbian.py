"""hebbian: derive every module's widths from the clusters of the round's probe (the project's idea)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from hebbnas.errors import HebbnasError
from hebbnas.strategies import Strategy, knobs, register

if TYPE_CHECKING:
    from hebbnas.probe import ProbeResult
    from hebbnas.space import Distribution, Space
    from hebbnas.topology import Topology


@register
class Hebbian(Strategy):
    """Optuna samples the derivation knobs (`derive:`); the trial derives its widths from the shared probe."""

    name = "hebbian"
    order = 0
    knob_prefix: ClassVar[str] = "derive"
    yaml_section: ClassVar[str] = "derive"
    probes_seed = True
    multi_round = True

    def validate(self, space: Space) -> None:
        from hebbnas.derive import Policy

        own = space.section(self.yaml_section)
        if not own:
            raise HebbnasError(f"{space.source}: strategy hebbian needs a derive: section")
        Policy.from_knobs({n: d.default() for n, d in own.items()})  # unknown knob names fail here

    def distributions(self, space: Space) -> dict[str, Distribution]:
        return {f"{self.knob_prefix}.{n}": d for n, d in space.section(self.yaml_section).items()}

    def report_derivations(self, space: Space, best: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The knobs of the round's best trial: the derivation that won."""
        return [("the best trial's knobs", knobs(best, "derive"))]

    def topology(self, seed: Topology, probe: ProbeResult | None, config: Mapping[str, Any], *,
                 probed: Topology | None = None, start: Topology | None = None) -> Topology:
        """The derivation of the probed network (its widths are the probe's channels); the fit scales it."""
        from hebbnas.derive import derive_topology

        if probe is None:
            raise HebbnasError("strategy hebbian needs the round's probe")
        return derive_topology(probed or seed, probe, **knobs(config, self.knob_prefix))

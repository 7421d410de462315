"""The signals of the two one-shot derivation policies taken from the redundancy literature, and the
module widths they lead to (values in, values out; `hebbnas.derive` assembles them into a derivation).

Both read the probe of each Inception module's *input* (the probe sees every module's input, so every
module gets a value; the same convention as the cluster derivation: what a module reads decides how
wide it is) and use its zero-offset correlation matrix, i.e. the activations standardised per channel,
with dead (zero-variance) channels holding no direction:

- **pca** (PCA width; Garg, Panda & Roy 2020): the number of principal components of the input that
  hold `energy` of its variance (`hebbnas.redundancy.components_for_energy`), over its channel count,
  is the share of the probed module's width the module keeps: k_pca / C times its widths. Modules whose
  input spans few directions shrink, and the fit hands what they free to the others.
- **redundancy** (redundancy-ranked reallocation, a one-shot counterpart of the `reallocate`
  strategy; Structural Redundancy Reduction, Wang et al. 2021, prunes from the most redundant layers):
  modules ranked by ``1 - effective rank / channels`` of their input (`hebbnas.redundancy.redundancy`,
  the measure `reallocate` ranks branches by); starting from the probed topology's widths (the paper's
  proportions), `steps` fixed moves of `step_share` of the Inception MACs each, move j from the
  (j mod P)-th most redundant module to the (j mod P)-th least redundant (P = modules // 2 pairs), a
  donor never below `floor` of its starting widths. Every width of a module is scaled by one factor, so
  its branch split stays the paper's. Deterministic (ties broken by module name).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hebbnas.errors import HebbnasError
from hebbnas.redundancy import components_for_energy, redundancy
from hebbnas.topology import DEFAULT_INPUT, layer_costs

if TYPE_CHECKING:
    from hebbnas.probe import ProbeResult
    from hebbnas.topology import Topology

ENERGY = 0.99
"""pca: the share of the input's variance the kept components hold (the default)."""
ENERGIES = (0.95, 0.99)
"""pca: the shares offered (fixed before any comparison; issue 31)."""
STEPS = 4
"""redundancy: moves (the default); 4 moves of 5% move a fifth of the Inception MACs."""
STEP_SHARE = 0.05
"""redundancy: the share of the starting topology's Inception MACs one move takes."""
FLOOR = 0.5
"""redundancy: no module below this fraction of its starting widths (as `reallocate`'s branches)."""


@dataclass(frozen=True)
class PcaSignal:
    """One module input's principal components: `components` of `channels` hold `energy_share`."""

    module: str
    components: int
    channels: int
    energy_share: float

    @property
    def share(self) -> float:
        """k_pca / C: the fraction of the probed module's widths the module keeps."""
        return self.components / self.channels


def pca_signals(probe: ProbeResult, modules: Sequence[str], energy: float = ENERGY) -> dict[str, PcaSignal]:
    """Per module, the fewest principal components of its input's correlation that hold `energy`."""
    if not 0 < energy <= 1:
        raise HebbnasError(f"energy must be in (0, 1], got {energy!r}")
    out = {}
    for name in modules:
        corr = probe.modules[name].corr
        k, held = components_for_energy(corr, energy, probe.modules[name].dead)
        out[name] = PcaSignal(name, k, int(corr.shape[0]), held)
    return out


def module_redundancy(probe: ProbeResult, modules: Sequence[str]) -> dict[str, float]:
    """Per module, 1 - effective rank / channels of its input's correlation (dead channels count as redundant)."""
    return {name: redundancy(probe.modules[name].corr, probe.modules[name].dead) for name in modules}


@dataclass(frozen=True)
class Move:
    """What the redundancy ranking did to one module: `factor` times its starting widths.

    Attributes:
        rank: 1 = the most redundant input.
        macs_before, macs_after: the module's own MACs at the deploy shape (at its starting input width).
    """

    module: str
    redundancy: float
    rank: int
    factor: float
    macs_before: float
    macs_after: float

    @property
    def moved(self) -> float:
        """MACs gained (> 0) or given away (< 0)."""
        return self.macs_after - self.macs_before


def module_mac_terms(t: Topology, input_shape: tuple[int, int, int] = DEFAULT_INPUT) -> dict[str, tuple[float, float]]:
    """Per Inception module, (a, b) with its MACs = a f + b f**2 when all its widths are times f and
    its input width is kept: the convolutions reading the module's input grow with f, those behind a
    1x1 reduction with f**2."""
    terms: dict[str, list[float]] = {m.name: [0.0, 0.0] for m in t.modules}
    reduced = {f"{m.name}.branch{i}.1" for m in t.modules for i, red in ((2, m.b2_red), (3, m.b3_red)) if red}
    for lc in layer_costs(t, input_shape):
        block = lc.name.split(".")[0]
        if block in terms:
            terms[block][1 if lc.name in reduced else 0] += lc.macs
    return {k: (a, b) for k, (a, b) in terms.items()}


def _factor_for(a: float, b: float, target: float) -> float:
    """The f >= 0 with a f + b f**2 = target."""
    target = max(target, 0.0)
    if b > 0:
        return (-a + math.sqrt(a * a + 4 * b * target)) / (2 * b)
    return target / a if a > 0 else 1.0


def redundancy_moves(t: Topology, redundancies: Mapping[str, float], *, steps: int = STEPS,
                     step_share: float = STEP_SHARE, floor: float = FLOOR,
                     input_shape: tuple[int, int, int] = DEFAULT_INPUT) -> dict[str, Move]:
    """The redundancy policy's moves on `t` (the probed topology): per module, the factor its widths get.

    Move j takes `step_share` of the Inception MACs of `t` from the (j mod P)-th most redundant module
    (less when its floor is reached) and gives them to the (j mod P)-th least redundant; P = modules // 2.
    MACs are each module's own at `input_shape` with its input width kept (the fit rescales the whole).
    """
    if steps < 0 or not 0 < step_share < 1 or not 0 < floor <= 1:
        raise HebbnasError(f"steps must be >= 0, step_share in (0, 1), floor in (0, 1]; got {steps}, {step_share}, {floor}")
    names = [m.name for m in t.modules]
    missing = [n for n in names if n not in redundancies]
    if missing:
        raise HebbnasError(f"no redundancy for {', '.join(missing)}")
    bad = [n for n in names if not math.isfinite(redundancies[n])]
    if bad:
        raise HebbnasError(f"redundancy is not a number for {', '.join(bad)}")
    terms = module_mac_terms(t, input_shape)
    macs = {n: sum(terms[n]) for n in names}
    total = sum(macs.values())
    ranked = sorted(names, key=lambda n: (-redundancies[n], n))  # most redundant first
    factor = dict.fromkeys(names, 1.0)
    pairs = len(names) // 2

    def cost(n: str, f: float) -> float:
        a, b = terms[n]
        return a * f + b * f * f

    for j in range(steps if pairs else 0):
        donor, recipient = ranked[j % pairs], ranked[-1 - j % pairs]
        take = min(step_share * total, cost(donor, factor[donor]) - cost(donor, floor))
        if take <= 0:
            continue
        factor[donor] = _factor_for(*terms[donor], cost(donor, factor[donor]) - take)
        factor[recipient] = _factor_for(*terms[recipient], cost(recipient, factor[recipient]) + take)
    return {n: Move(n, float(redundancies[n]), ranked.index(n) + 1, factor[n], float(macs[n]), cost(n, factor[n]))
            for n in names}

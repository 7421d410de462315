"""reallocate: move multiply-adds from the most redundant Inception branches to the least redundant,
and keep a move only when validation accuracy does not drop.

Mechanism borrowed: greedy width moves checked against accuracy. AutoSlim slims, one step at a time,
the layer whose slimming costs the least validation accuracy; NetAdapt takes one move per step under a
measured budget and keeps the best by accuracy; Neural Rejuvenation hands the budget of dead and
redundant units to busy layers. Here the probe proposes the direction of a move (which branches'
units repeat each other: `hebbnas.redundancy`) and accuracy decides whether it stays. Starting point:
the paper's widths fitted to the budget. A step takes `share` of the Inception multiply-adds from the
`k` most redundant branches (never below half their starting widths) and gives them to the `k` least
redundant; the result is fitted to the budget again. Move option j uses the j-th group of k branches
from either end of the ranking, so a rejected move is followed by a different one, not the same again.

In a search each round trains moves of the incumbent (round 1: the start itself); the next round's
seed is the best network so far by the run folder's one rule (`hebbnas.trials.best_row`: ties keep
the earlier network), so a move that does not raise validation accuracy is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from hebbnas.strategies import Strategy, knobs, register
from hebbnas.topology import BRANCH_FIELDS, FIELD_INDEX, layer_costs

if TYPE_CHECKING:
    from hebbnas.probe import ProbeResult
    from hebbnas.redundancy import Branch
    from hebbnas.space import Distribution, Space
    from hebbnas.topology import InceptionSpec, Topology

SHARE = 0.1
"""Share of the Inception modules' multiply-adds one move takes from the donors (the default)."""
K = 2
"""Branches that give, and branches that receive, per move."""
FLOOR = 0.5
"""No branch below this fraction of its width in the starting topology (the zoo showed what starving a
branch costs)."""
OPTIONS = 4
"""Move options per step: option j moves between the j-th groups of K from either end of the ranking."""


@register
class Reallocate(Strategy):
    """Moves of the incumbent proposed by the probe, kept only when validation accuracy does not drop."""

    name = "reallocate"
    order = 30
    knob_prefix: ClassVar[str] = "move"
    multi_round = True
    keeps_incumbent = True

    def default_rounds(self, trials: int) -> int:
        """Round 1 trains the start; each later round tries up to `OPTIONS` moves of the incumbent (8 trials:
        3 rounds of 1, 4 and 3). One round would train the start `trials` times."""
        return min(trials, 1 + -(-(trials - 1) // OPTIONS))

    def distributions(self, space: Space) -> dict[str, Distribution]:
        from hebbnas.space import Distribution

        return {"move.option": Distribution("categorical", choices=tuple(range(OPTIONS))),
                "move.share": Distribution("categorical", choices=(SHARE,))}

    def topology(self, seed: Topology, probe: ProbeResult | None, config: Mapping[str, Any], *,
                 probed: Topology | None = None, start: Topology | None = None) -> Topology:
        """The incumbent itself in round 1 (no probe yet), else one move of it (the incumbent again when
        the option has no move left: the budget fit is the same, so the trial repeats it)."""
        from hebbnas.redundancy import branch_redundancy

        if probe is None:
            return seed
        move = knobs(config, self.knob_prefix)
        red = branch_redundancy(probed or seed, probe)
        new = propose(seed, start or seed, red, option=int(move.get("option", 0)),
                      share=float(move.get("share", SHARE)))
        return seed if new is None else new

    def initial_points(self, space: Space, round_: int, n_trials: int, *, seed: Topology | None = None,
                       probe: ProbeResult | None = None, probed: Topology | None = None) -> list[dict[str, Any]]:
        """Round r's trials try move options 0, 1, ... in turn (Optuna would repeat a categorical)."""
        return [{"move.option": j % OPTIONS, "move.share": SHARE} for j in range(n_trials)] if round_ > 1 else []


def branch_macs(t: Topology, input_shape: tuple[int, int, int]) -> dict[Branch, int]:
    """Each branch's own multiply-adds (its convolutions, reduction included) at `input_shape`."""
    out: dict[Branch, int] = {}
    for lc in layer_costs(t, input_shape):
        parts = lc.name.split(".")
        if parts[0].startswith("inception") and len(parts) > 1 and parts[1].startswith("branch"):
            key = (parts[0], f"b{parts[1][len('branch'):]}")
            out[key] = out.get(key, 0) + lc.macs
    return out


def propose(t: Topology, start: Topology, redundancy: Mapping[Branch, float], *, option: int = 0,
            share: float = SHARE, k: int = K, floor: float = FLOOR,
            input_shape: tuple[int, int, int] = (3, 224, 224)) -> Topology | None:
    """One move: `share` of the Inception MACs from the option's k most redundant branches to its k least
    redundant, each donor shrunk (never below `floor` of its width in `start`) and each recipient grown
    by a common factor per branch. None when the option has no distinct donors and recipients or
    nothing can be taken. The result is not fitted: the caller fits it to the budget."""
    ranked = sorted(redundancy, key=lambda b: (redundancy[b], b))  # least redundant first
    donors = ranked[::-1][option * k:(option + 1) * k]
    recipients = ranked[option * k:(option + 1) * k]
    if not donors or not recipients or set(donors) & set(recipients):
        return None
    macs = branch_macs(t, input_shape)
    total = sum(macs.values())
    specs = {m.name: m for m in t.modules}
    starts = {m.name: m for m in start.modules}
    widths = {m.name: list(m.widths) for m in t.modules}
    taken = 0.0
    for b in donors:
        target = max(macs[b] - share * total / k, 0.0)
        lo = max(floor * getattr(starts[b[0]], f) / max(getattr(specs[b[0]], f), 1) for f in BRANCH_FIELDS[b[1]])
        f = max(_factor(specs[b[0]], b[1], t, input_shape, target, macs[b]), min(lo, 1.0))
        taken += macs[b] - _scaled_macs(specs[b[0]], b[1], f, t, input_shape)
        _set(widths, specs[b[0]], b[1], f)
    if taken <= 0:
        return None
    for b in recipients:
        f = _factor(specs[b[0]], b[1], t, input_shape, macs[b] + taken / k, macs[b])
        _set(widths, specs[b[0]], b[1], f)
    new = t.with_widths({n: tuple(w) for n, w in widths.items()})
    return None if new == t else new


def _set(widths: dict[str, list[int]], m: InceptionSpec, branch: str, f: float) -> None:
    for field in BRANCH_FIELDS[branch]:
        w = getattr(m, field)
        if w:
            widths[m.name][FIELD_INDEX[field]] = max(1, int(round(w * f)))


def _scaled_macs(m: InceptionSpec, branch: str, f: float, t: Topology, input_shape: tuple[int, int, int]) -> float:
    """A branch's MACs with its widths times `f` (closed form, before rounding)."""
    cin = t.in_channels_of()[m.name]
    hw = _hw(t, m.name, input_shape)
    if branch in ("b1", "b4"):
        return hw * cin * getattr(m, branch) * f
    red, out, kk = (m.b2_red, m.b2, 9) if branch == "b2" else (m.b3_red, m.b3, m.b3_kernel ** 2)
    return hw * (cin * red * f + kk * red * out * f * f) if red else hw * kk * cin * out * f


def _hw(t: Topology, module: str, input_shape: tuple[int, int, int]) -> int:
    for lc in layer_costs(t, input_shape):
        if lc.name.startswith(module + "."):
            return lc.out_shape[1] * lc.out_shape[2]
    raise KeyError(module)


def _factor(m: InceptionSpec, branch: str, t: Topology, input_shape: tuple[int, int, int], target: float,
            current: float) -> float:
    """The width factor that brings a branch's MACs to `target` (bisection: MACs grow with the factor)."""
    lo, hi = 0.0, 1.0
    while _scaled_macs(m, branch, hi, t, input_shape) < target:
        hi *= 2
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _scaled_macs(m, branch, mid, t, input_shape) < target else (lo, mid)
    return hi

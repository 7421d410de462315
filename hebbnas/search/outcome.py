"""What a search hands back: a finished round, the final stage (and the units it trains), the whole
search, or the news that it was interrupted.

Values only; the rounds and the final stage produce them (`hebbnas.search.rounds`, `.final`), the sink
and the run folder consume them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hebbnas.probe import ProbeResult
    from hebbnas.search.select import Decision, NetworkResult
    from hebbnas.search.settings import FinalFidelity
    from hebbnas.topology import Topology


@dataclass(frozen=True)
class RoundOutcome:
    """A finished round: its rows (trials.csv), the best trial and what it seeds next.

    `probe` was taken on `probed`: the round's seed (hebbian: what the trials derived from) or, for the
    baselines, the round's best network (so every strategy leaves the same probe + cluster report).
    `report_knobs` are the derivation knobs its cluster-to-branch report uses (the strategy's first report
    derivation, else the best trial's `derive.*` knobs); `probes_seed` says whether the strategy derives from
    the probe (the report's title says whose network it reads).
    """

    round: int
    rows: tuple[dict[str, Any], ...]
    best: dict[str, Any] | None
    best_checkpoint: dict[str, Any] | None  # the export dict of the best trial (topology, state_dict, metrics)
    probe: ProbeResult | None
    probed: Topology
    experiment_path: str
    report_knobs: dict[str, Any] = field(default_factory=dict)
    report_derivations: tuple[tuple[str, dict[str, Any]], ...] = ()  # (label, knobs): every derivation reported
    probes_seed: bool = False


@dataclass(frozen=True)
class FinalUnit:
    """One network on one seed."""

    network: str  # CONTROL or the search trial id it retrains
    topology: Topology  # full width, fitted to the budget (what the budget counts)
    seed: int
    control: bool
    rank: int  # 0 for the control, else its place in the search by validation accuracy (1 = best)


@dataclass(frozen=True)
class FinalSpec:
    """Everything a final-stage trial needs, shared by all (travels through Ray's object store)."""

    units: tuple[FinalUnit, ...]
    train: dict[str, Any]  # TrainConfig fields but epochs and seed: the one recipe
    fidelity: FinalFidelity
    budget: float
    deploy_input: tuple[int, int, int]
    threads: int
    strategy: str
    dataset: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class FinalOutcome:
    """The final stage's rows (trials.csv), its decision, and the chosen network's weights."""

    rows: tuple[dict[str, Any], ...]
    networks: tuple[NetworkResult, ...]
    decision: Decision
    chosen_row: dict[str, Any]  # the unit whose weights best/ holds
    chosen_checkpoint: dict[str, Any]
    fidelity: FinalFidelity
    seeds: tuple[int, ...]


class SearchInterrupted(Exception):
    """The search stopped before its trials finished (Ctrl-C); the run folder can be resumed."""


@dataclass(frozen=True)
class SearchOutcome:
    """All rounds, the answer (the search's best trial, or the final stage's choice) and its test accuracy."""

    rounds: tuple[RoundOutcome, ...]
    best: dict[str, Any]
    best_checkpoint: dict[str, Any]
    test_acc: float
    seconds: float
    final: FinalOutcome | None = None  # the final stage, when the search ran one (then `best` is its choice)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [r for o in self.rounds for r in o.rows]

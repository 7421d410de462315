"""Objectives: what a search may optimise (``--objectives``) or bound (a budget), one module each.

An objective names the trial result it reads and whether more is better; one that is measured before a
trial trains (latency) says which result keys its measurement adds (trials.csv, best/metrics.json,
best/pareto.csv), and a budgeted one names the search setting holding its budget (``latency_budget``,
``--latency-budget``): a candidate over it never trains, and Optuna learns the boundary as a constraint.
Adding one is one new module here that subclasses `Objective` and decorates it with `register`:
`OBJECTIVES` (hebbnas.registry) finds it, and ``--objectives``, the trial, Optuna and the run folder ask it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from hebbnas.errors import HebbnasError
from hebbnas.registry import Registry

if TYPE_CHECKING:
    from hebbnas.topology import Topology


class Objective:
    """One thing a search optimises or bounds.

    Attributes:
        name: its name in ``--objectives``.
        order: where ``--objectives`` lists it (accuracy, the one every search ranks by, first).
        key: the trial result (and trials.csv column) it reads.
        direction: ``max`` (more is better) or ``min``.
        unit: the unit of its value, for the line that rejects a candidate over its budget.
        columns: the result keys its `measure` adds (the key first); none when training reports it.
        budget_setting: the search setting that holds its budget (None: it has none).
    """

    name: ClassVar[str] = ""
    order: ClassVar[int] = 1000
    key: ClassVar[str] = ""
    direction: ClassVar[str] = "min"
    unit: ClassVar[str] = ""
    columns: ClassVar[tuple[str, ...]] = ()
    budget_setting: ClassVar[str | None] = None

    def measure(self, topology: Topology, deploy_input: tuple[int, int, int], threads: int,
                cache: str | None) -> dict[str, Any]:
        """Its result keys for a candidate before it trains, measured where the trial runs (`cache`: a
        folder where measurements may be kept). Nothing by default: training or the topology reports it."""
        return {}

    def over_budget(self, values: Mapping[str, Any], budget: float) -> str | None:
        """Why the candidate must not train (one line), or None when it is within `budget`."""
        v = values.get(self.key)
        if v is None or (v <= budget if self.direction == "min" else v >= budget):
            return None
        sign, unit = (">" if self.direction == "min" else "<"), (f" {self.unit}" if self.unit else "")
        return f"{self.name} {v:.2f}{unit} {sign} budget {budget:g}{unit}"

    def constraint(self, values: Mapping[str, Any], budget: float) -> float | None:
        """Optuna's constraint value for a finished trial (feasible when <= 0), or None when it has no value."""
        v = values.get(self.key)
        if v is None:
            return None
        return float(v) - budget if self.direction == "min" else budget - float(v)


OBJECTIVES: Registry[type[Objective]] = Registry("objective", "--objectives", __name__)
"""Every objective: the modules of this package, and any other module that calls `register`."""
register = OBJECTIVES.register


def names() -> tuple[str, ...]:
    """Every registered objective (accuracy first)."""
    return OBJECTIVES.names()


def get_objective(name: str) -> Objective:
    """The objective called `name`; an unknown name is a one-line error naming --objectives and the known ones."""
    return OBJECTIVES.get(name)()


def goals(objectives: Iterable[str]) -> dict[str, str]:
    """{result key: "max" or "min"} of the named objectives, in their order (what Optuna and the front rank)."""
    return {o.key: o.direction for o in map(get_objective, objectives)}


def measured_columns() -> tuple[str, ...]:
    """Every result key an objective measures before training (the trials.csv and metrics columns)."""
    return tuple(dict.fromkeys(c for cls in OBJECTIVES.classes() for c in cls.columns))


def budgets(settings: Any) -> dict[str, float]:
    """{objective: budget} for every budgeted objective whose setting is given in `settings`."""
    out = {}
    for cls in OBJECTIVES.classes():
        value = getattr(settings, cls.budget_setting, None) if cls.budget_setting else None
        if value is not None:
            out[cls.name] = float(value)
    return out


def to_measure(settings: Any) -> tuple[str, ...]:
    """The objectives each candidate is measured for before it trains: those searched or budgeted that measure."""
    wanted = set(getattr(settings, "objectives", ())) | set(budgets(settings))
    return tuple(n for n in names() if n in wanted and OBJECTIVES.get(n).columns)


def measure(objectives: Iterable[str], topology: Topology, deploy_input: tuple[int, int, int], threads: int,
            cache: str | None) -> dict[str, Any]:
    """The named objectives' measurements of one candidate, in one dict."""
    out: dict[str, Any] = {}
    for name in objectives:
        out.update(get_objective(name).measure(topology, deploy_input, threads, cache))
    return out


def over_budget(budgets_: Mapping[str, float], values: Mapping[str, Any]) -> str | None:
    """The first budget the measured `values` break (one line), or None."""
    for name, budget in budgets_.items():
        reason = get_objective(name).over_budget(values, budget)
        if reason:
            return reason
    return None


def parse_objectives(value: Any, where: str) -> tuple[str, ...]:
    """``--objectives``: accuracy, optionally followed by other objectives, each once (a list or comma text)."""
    given = tuple(x.strip() for x in (value.split(",") if isinstance(value, str) else value) if str(x).strip())
    known = names()
    if any(n not in known for n in given) or not given or given[0] != known[0] or len(set(given)) != len(given):
        others = ", ".join(known[1:])
        raise HebbnasError(f"{where} must be {known[0]}, optionally followed by any of {others} "
                           f"(comma-separated, each once), got {value!r}")
    return given

"""Strategies: how a trial's widths are chosen, behind one small interface and a registry.

A strategy names the knobs Optuna samples for it (define-by-run, sampling only) and turns a sampled
configuration into a topology before the budget fit. Adding one is one new module here that subclasses
`Strategy` and decorates it with `register`: the module is found by `STRATEGIES` (hebbnas.registry), and
the class declares everything the rest asks about it (its knob prefix, its YAML section, whether it
probes or runs several rounds). The search, the run folder and the report ask the registry, never
branch on a strategy's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from hebbnas.errors import HebbnasError
from hebbnas.registry import Registry

if TYPE_CHECKING:
    from hebbnas.probe import ProbeResult
    from hebbnas.space import Distribution, Space
    from hebbnas.topology import Topology

TRAIN_SECTION = "train"
"""The space section and knob prefix every strategy shares: the searched training knobs (``train.<knob>``)."""


class Strategy:
    """How one search chooses widths.

    Attributes:
        name: the value of ``--strategy`` and of the ``strategy`` column of trials.csv.
        order: where ``--strategy`` lists it (the default, tpe, is `DEFAULTS["strategy"]` in
            hebbnas/search/settings.py).
        knob_prefix: the namespace of the knobs it samples (``derive`` for ``derive.<knob>``): trials.csv
            orders those columns with the knobs and the report's trials table shows them. None: no knobs.
        yaml_section: the section of a space's YAML it owns (``derive:``), read with ``space.section``.
        probes_seed: the round's seed network is probed before the trials, which derive from it.
        multi_round: ``--rounds > 1`` makes sense (the best network of a round seeds the next).
        keeps_incumbent: the next round's seed is the best network so far (the run folder's rule), not
            the round's best, and the trials of rounds after the first get its probe (a round whose
            moves all lose changes nothing); round 1 trains the seed itself, once.
    """

    name: ClassVar[str] = ""
    order: ClassVar[int] = 1000
    knob_prefix: ClassVar[str | None] = None
    yaml_section: ClassVar[str | None] = None
    probes_seed: ClassVar[bool] = False
    multi_round: ClassVar[bool] = False
    keeps_incumbent: ClassVar[bool] = False

    def validate(self, space: Space) -> None:
        """Raise HebbnasError when the space lacks what this strategy samples (before any folder exists)."""

    def default_rounds(self, trials: int) -> int:
        """Rounds when neither `--rounds` nor the space sets them: one, unless the strategy needs more to
        do anything (a strategy that keeps an incumbent trains only its start in round 1)."""
        return 1

    def distributions(self, space: Space) -> dict[str, Distribution]:
        """Knobs to sample, keyed by their namespaced Optuna name (``derive.<knob>``, ``width.<key>``)."""
        return {}

    def topology(self, seed: Topology, probe: ProbeResult | None, config: Mapping[str, Any], *,
                 probed: Topology | None = None, start: Topology | None = None) -> Topology:
        """The trial's topology before the budget fit, from the round's seed and the sampled config.

        `probed` is the network `probe` was taken on (the seed's width-proxy copy), `start` round 1's
        seed (the space's base fitted to the budget)."""
        return seed

    def sampler(self, seed: int, n_trials: int, n_enqueued: int) -> tuple[Any, int | None]:
        """Optuna's sampler for a round and its start-up count (None: every draw is random).

        TPE by default. Enqueued trials are not random draws, so the start-up count is the enqueued ones
        plus random draws on half of the rest (at least 2, at most 10): with no enqueued trial, as before.
        """
        import optuna

        startup = n_enqueued + max(2, min(10, (n_trials - n_enqueued) // 2))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup), startup

    def report_derivations(self, space: Space, best: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """What the round's cluster-to-branch report shows: (label, derivation knobs) per derivation, the
        first in report/round-K/, the others beside it. By default the derivation's central knobs."""
        return [("the derivation's default knobs", {n: d.default() for n, d in space.section("derive").items()})]

    def initial_points(self, space: Space, round_: int, n_trials: int, *, seed: Topology | None = None,
                       probe: ProbeResult | None = None, probed: Topology | None = None) -> list[dict[str, Any]]:
        """Configurations Optuna runs first in a round (`enqueue_trial`), before it samples; `seed`,
        `probe` and `probed` as for `topology`."""
        return []


STRATEGIES: Registry[type[Strategy]] = Registry("strategy", "--strategy", __name__)
"""Every strategy: the modules of this package, and any other module that calls `register`."""
register = STRATEGIES.register


def names() -> tuple[str, ...]:
    """Every registered strategy (the shipped ones first, in their `order`)."""
    return STRATEGIES.names()


def get_strategy(name: str) -> Strategy:
    """The strategy called `name`; an unknown name is a one-line error naming --strategy and the known ones."""
    return STRATEGIES.get(name)()


def knob_prefixes() -> tuple[str, ...]:
    """The knob namespaces of trials.csv: the shared training knobs', then each strategy's (once)."""
    own = (c.knob_prefix for c in STRATEGIES.classes() if c.knob_prefix)
    return tuple(dict.fromkeys([TRAIN_SECTION, *own]))


def space_sections() -> tuple[str, ...]:
    """The knob sections a space's YAML may hold: the training knobs' and each strategy's own."""
    own = (c.yaml_section for c in STRATEGIES.classes() if c.yaml_section)
    return tuple(dict.fromkeys([TRAIN_SECTION, *own]))


def check_sections(space: Space) -> None:
    """Refuse a space whose YAML has a knob section no strategy owns (a typo must not be ignored)."""
    extra = sorted(set(space.sections) - set(space_sections()))
    if extra:
        raise HebbnasError(f"{space.source}: unknown keys {extra} (knob sections: {', '.join(space_sections())})")


def knobs(config: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The sampled values of one namespace, without the prefix (``derive.threshold`` -> ``threshold``)."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in config.items() if k.startswith(p)}

"""Strategies: how a trial's widths are chosen, behind one small interface and a registry.

A strategy names the knobs Optuna samples for it (define-by-run, sampling only) and turns a sampled
configuration into a topology before the budget fit. Adding one is one new module here that subclasses
`Strategy` and calls `register`; the search, the run folder and the report ask the registry, never
branch on a strategy's name.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from hebbnas.errors import HebbnasError

if TYPE_CHECKING:
    from hebbnas.probe import ProbeResult
    from hebbnas.space import Distribution, Space
    from hebbnas.topology import Topology

BUILTIN: tuple[str, ...] = ("hebbian", "random", "paper", "reallocate", "slim", "tpe")
"""The shipped strategies, in the order the CLI lists them (the default, tpe, is `DEFAULTS["strategy"]` in
hebbnas/search/settings.py)."""
_REGISTRY: dict[str, type[Strategy]] = {}


class Strategy:
    """How one search chooses widths.

    Attributes:
        name: the value of ``--strategy`` and of the ``strategy`` column of trials.csv.
        probes_seed: the round's seed network is probed before the trials, which derive from it.
        multi_round: ``--rounds > 1`` makes sense (the best network of a round seeds the next).
        keeps_incumbent: the next round's seed is the best network so far (the run folder's rule), not
            the round's best, and the trials of rounds after the first get its probe (a round whose
            moves all lose changes nothing); round 1 trains the seed itself, once.
    """

    name: ClassVar[str] = ""
    probes_seed: ClassVar[bool] = False
    multi_round: ClassVar[bool] = False
    keeps_incumbent: ClassVar[bool] = False

    def validate(self, space: Space) -> None:
        """Raise HebbnasError when the space lacks what this strategy samples (before any folder exists)."""

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
        return [("the derivation's default knobs", {n: d.default() for n, d in space.derive.items()})]

    def initial_points(self, space: Space, round_: int, n_trials: int, *, seed: Topology | None = None,
                       probe: ProbeResult | None = None, probed: Topology | None = None) -> list[dict[str, Any]]:
        """Configurations Optuna runs first in a round (`enqueue_trial`), before it samples; `seed`,
        `probe` and `probed` as for `topology`."""
        return []


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make a strategy available under its name."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> tuple[str, ...]:
    """Every registered strategy (the shipped ones first)."""
    _load_builtin()
    return tuple(dict.fromkeys([*BUILTIN, *_REGISTRY]))


def get_strategy(name: str) -> Strategy:
    """The strategy called `name`; an unknown name is a one-line error listing the known ones."""
    _load_builtin()
    if name not in _REGISTRY:
        raise HebbnasError(f"unknown strategy {name!r} (known: {', '.join(names())})")
    return _REGISTRY[name]()


def knobs(config: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The sampled values of one namespace, without the prefix (``derive.threshold`` -> ``threshold``)."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in config.items() if k.startswith(p)}


def _load_builtin() -> None:
    for mod in BUILTIN:
        if mod not in _REGISTRY:
            importlib.import_module(f"hebbnas.strategies.{mod}")

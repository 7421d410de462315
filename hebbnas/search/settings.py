"""Search settings: defaults < the space's `proxy:`/`search:` sections < `--smoke` < the command line.

The resolved `SearchSettings` is written to config.yaml and read back by `--resume`, so a resumed
search is the same search. Validation happens here, before any folder exists or Ray starts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hebbnas.errors import HebbnasError
from hebbnas.space import PROXY_KEYS, SEARCH_KEYS, Space
from hebbnas.strategies import get_strategy, names
from hebbnas.topology import min_input_size
from hebbnas.trials import OBJECTIVES

# Settings every search has; the space's `proxy:`/`search:` sections override the code defaults,
# `--smoke` overrides those, and explicit command-line options override everything.
DEFAULTS: dict[str, Any] = {
    "strategy": "tpe",  # the best mean test accuracy at 8 trained units (analysis/results/strategies.md)
    "dataset": "digits",
    "data_dir": None,
    "resolution": 32,
    "probe_resolution": 64,
    "train_subset": None,
    "seed_epochs": 3,
    "probe_images": 600,
    "width": 1.0,
    "trials": 8,
    "max_epochs": 5,
    "rounds": 1,
    "grace_period": 2,
    "reduction_factor": 2,
    "seed": 0,
    "cpus_per_trial": 1.0,
    "gpus_per_trial": 0.0,
    "concurrency": 2,
    "prescreen": 0,
    "prescreen_score": "naswot_k",  # the best untrained score on the zoo, also among randoms (analysis/results/scores.md)
    "compile": False,
    "latency_budget": None,
    "objectives": ("accuracy",),
    "final_top": 2,  # finalists retrained beside the control in the final stage (0: no final stage)
    "final_seeds": 2,  # paired seeds of the final stage
}

SMOKE: dict[str, Any] = {
    "trials": 3,
    "max_epochs": 2,
    "grace_period": 1,
    "train_subset": 160,
    "resolution": 32,
    "probe_resolution": 32,
    "seed_epochs": 1,
    "probe_images": 64,
    "final_top": 1,
    "final_seeds": 2,
}
"""`--smoke`: a tiny train subset, few epochs, a small probe; for tests and a first look at a cluster. Its
train subset is a ceiling: a smaller data set (your own folder of 120 images) is used whole."""
SMOKE_FINAL: dict[str, Any] = {"epochs": 1, "train_subset": 160, "val_images": None, "resolution": 32, "width": None}
"""`--smoke`'s final stage: one epoch on the smoke subset (so the tests exercise the stage in seconds)."""
FLAGS: dict[str, str] = {"max_epochs": "--trial-epochs", "width": "--proxy-width"}
"""Settings whose command-line option is not ``--<key with dashes>`` (in `hebbnas search`)."""


@dataclass(frozen=True)
class ProxySettings:
    """What the networks of a search (and `hebbnas probe`) train and are probed on: the proxy."""

    dataset: str
    data_dir: str | None
    resolution: int
    probe_resolution: int
    train_subset: int | None
    seed_epochs: int
    probe_images: int
    width: float  # the width proxy: the seed and trials train topology.narrowed(width)
    seed: int
    smoke: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FinalFidelity:
    """How the final stage retrains its networks: one recipe for all (the space's `fixed:`, no sampled
    knobs), on the proxy's data set, at this length, subset, validation size, augmentation, width and
    resolution; and the margin (points) a finalist's paired interval must clear against the control."""

    epochs: int
    train_subset: int | None
    val_images: int | None
    augment: bool
    width: float
    resolution: int
    margin: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def val_fraction(self) -> float | None:
        """The validation share that gives `val_images` beside `train_subset` (None: the data set's default)."""
        if self.val_images is None or self.train_subset is None:
            return None
        return self.val_images / (self.train_subset + self.val_images)


@dataclass(frozen=True)
class Origins:
    """Where each merged value came from, so a bad one is named as the user wrote it: the flag as typed,
    the space file and key, `--smoke`, or the default."""

    of: dict[str, str]

    def where(self, key: str) -> str:
        return self.of.get(key, f"the default {key}")


@dataclass(frozen=True)
class SearchSettings:
    """Everything that defines a search, resolved from defaults, the space, `--smoke` and the command line.

    Written to ``config.yaml`` and read back by ``--resume``, so a resumed search is the same search.
    """

    budget: float
    space: str
    strategy: str
    dataset: str
    data_dir: str | None
    resolution: int
    probe_resolution: int
    train_subset: int | None
    seed_epochs: int
    probe_images: int
    trials: int
    max_epochs: int
    rounds: int
    grace_period: int
    reduction_factor: int
    seed: int
    cpus_per_trial: float
    gpus_per_trial: float
    concurrency: int
    smoke: bool = False
    fixed: dict[str, Any] = field(default_factory=dict)
    width: float = 1.0  # the width proxy: trials and the seed train topology.narrowed(width)
    prescreen: int = 0  # > 1: each trial scores this many candidates without training and trains the best
    prescreen_score: str = "naswot_k"  # the training-free score (hebbnas.score.SCORES) the prescreen ranks by
    compile: bool = False  # torch.compile every training forward (seed and trials): opt-in, pays only for long runs
    latency_budget: float | None = None  # ms per image at the deploy shape (batch 1), measured before a trial trains
    objectives: tuple[str, ...] = ("accuracy",)  # more than one: Optuna's multi-objective search, best/pareto.csv
    final_top: int = 0  # finalists of the final stage (0: none; the search's best trial is the answer)
    final_seeds: int = 2  # paired seeds every final-stage network trains on
    final: dict[str, Any] = field(default_factory=dict)  # FinalFidelity fields, resolved

    @property
    def final_fidelity(self) -> FinalFidelity | None:
        """The final stage's fidelity, or None when the search has no final stage."""
        return FinalFidelity(**self.final) if self.final_top > 0 and self.final else None

    @property
    def measures_latency(self) -> bool:
        return self.latency_budget is not None or "latency" in self.objectives

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - known
        if extra:
            raise HebbnasError(f"unknown search settings {sorted(extra)}")
        d = dict(d)
        if "objectives" in d:  # YAML keeps a list
            d["objectives"] = tuple(d["objectives"])
        try:
            return cls(**d)
        except TypeError as e:
            raise HebbnasError(f"incomplete search settings: {e}") from None

    @property
    def proxy(self) -> ProxySettings:
        """The proxy part (what `hebbnas probe` resolves too)."""
        return ProxySettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ProxySettings)})

    def trials_in_round(self, k: int) -> int:
        """`trials` is the total; rounds share it evenly (earlier rounds get the remainder). A strategy
        that keeps an incumbent trains its start once in round 1 and shares the rest over the others."""
        trials, rounds = self.trials, self.rounds
        if rounds > 1 and get_strategy(self.strategy).keeps_incumbent:
            if k == 1:
                return 1
            trials, rounds, k = trials - 1, rounds - 1, k - 1
        base, extra = divmod(trials, rounds)
        return base + (1 if k <= extra else 0)


def merge(space: Space, options: Mapping[str, Any], smoke: bool = False,
          flags: Mapping[str, str] | None = None) -> tuple[dict[str, Any], Origins]:
    """defaults < the space's sections < smoke < explicit options (None means not given), and where each
    value came from. `flags` maps an option's key to the flag the user typed (default `flag(key)`)."""
    merged: dict[str, Any] = dict(DEFAULTS)
    origin: dict[str, str] = {}
    for sec, keys, section in (("proxy", PROXY_KEYS, space.proxy), ("search", SEARCH_KEYS, space.search)):
        for key in keys:
            if key in section:
                merged[key] = section[key]
                origin[key] = f"{space.source}: {sec}.{key}"
    if smoke:
        merged.update(SMOKE)
        origin.update({k: f"--smoke's {k}" for k in SMOKE})
    for k, v in options.items():
        if v is not None and k != "budget":
            merged[k] = v
            origin[k] = (flags or {}).get(k, flag(k))
    return merged, Origins(origin)


def resolve_proxy(space: Space, options: Mapping[str, Any], smoke: bool = False,
                  flags: Mapping[str, str] | None = None) -> ProxySettings:
    """The proxy settings of `hebbnas probe` (and of a search): merged as a search merges them, validated."""
    merged, origins = merge(space, options, smoke, flags)
    proxy = _proxy(merged, origins, smoke)
    _check_resolutions(proxy, space, origins)
    return proxy


def _proxy(merged: Mapping[str, Any], o: Origins, smoke: bool) -> ProxySettings:
    return ProxySettings(
        dataset=str(merged["dataset"]),
        data_dir=None if merged["data_dir"] is None else str(merged["data_dir"]),
        resolution=_int(merged, "resolution", o),
        probe_resolution=_int(merged, "probe_resolution", o),
        train_subset=None if merged["train_subset"] is None else _int(merged, "train_subset", o),
        seed_epochs=_int(merged, "seed_epochs", o),
        probe_images=_int(merged, "probe_images", o),
        width=_width(merged, o),
        seed=_int(merged, "seed", o, minimum=0),
        smoke=bool(smoke),
    )


def resolve_settings(space: Space, space_name: str, options: Mapping[str, Any], smoke: bool = False,
                     flags: Mapping[str, str] | None = None) -> SearchSettings:
    """Merge defaults < space sections < smoke < explicit options (None means not given) and validate.

    Raises:
        HebbnasError: an unknown strategy, a non-positive budget or count, an impossible combination;
            the message names the value as the user gave it (the flag typed, or the space file and key).
    """
    merged, o = merge(space, options, smoke, flags)
    proxy = _proxy(merged, o, smoke)
    settings = SearchSettings(
        budget=parse_budget(options.get("budget")),
        space=space_name,
        strategy=str(merged["strategy"]),
        dataset=proxy.dataset,
        data_dir=proxy.data_dir,
        resolution=proxy.resolution,
        probe_resolution=proxy.probe_resolution,
        train_subset=proxy.train_subset,
        seed_epochs=proxy.seed_epochs,
        probe_images=proxy.probe_images,
        trials=_int(merged, "trials", o),
        max_epochs=_int(merged, "max_epochs", o),
        rounds=_int(merged, "rounds", o),
        grace_period=_int(merged, "grace_period", o),
        reduction_factor=_int(merged, "reduction_factor", o, minimum=2),
        seed=proxy.seed,
        cpus_per_trial=_float(merged, "cpus_per_trial", o, positive=True),
        gpus_per_trial=_float(merged, "gpus_per_trial", o, positive=False),
        concurrency=_int(merged, "concurrency", o),
        smoke=bool(smoke),
        width=proxy.width,
        prescreen=_int(merged, "prescreen", o, minimum=0),
        prescreen_score=str(merged["prescreen_score"]),
        compile=bool(merged["compile"]),
        latency_budget=None if merged["latency_budget"] is None else _float(merged, "latency_budget", o, positive=True),
        objectives=_objectives(merged, o),
        fixed=dict(space.fixed),
        final_top=_int(merged, "final_top", o, minimum=0),
        final_seeds=_int(merged, "final_seeds", o),
    )
    settings = dataclasses.replace(settings, final=_final(space, settings, smoke).to_dict())
    validate_settings(settings, space, o)
    return settings


def _final(space: Space, s: SearchSettings, smoke: bool) -> FinalFidelity:
    """The space's `final:` block over the proxy's values (epochs: a trial's + 2), `--smoke`'s over both."""
    where = f"{space.source}: final"
    given = {**space.final, **({k: v for k, v in SMOKE_FINAL.items()} if smoke else {})}
    defaults = {"epochs": s.max_epochs + 2, "train_subset": s.train_subset, "val_images": None, "augment": False,
                "width": s.width, "resolution": s.resolution, "margin": 0.0}
    v = {k: defaults[k] if given.get(k) is None else given[k] for k in defaults}
    o = Origins({k: f"{where}.{k}" for k in given})
    f = FinalFidelity(
        epochs=_int(v, "epochs", o), augment=bool(v["augment"]), width=_width(v, o),
        train_subset=None if v["train_subset"] is None else _int(v, "train_subset", o),
        val_images=None if v["val_images"] is None else _int(v, "val_images", o),
        resolution=_int(v, "resolution", o), margin=_float(v, "margin", o, positive=False))
    if f.val_images is not None and f.train_subset is None:
        raise HebbnasError(f"{where}.val_images needs {where}.train_subset (the validation share is taken beside it)")
    floor = min_input_size(space.base)
    if f.resolution < floor:
        raise HebbnasError(f"{o.where('resolution')} {f.resolution} is below the {floor} px the stem needs")
    return f


def parse_budget(v: Any, name: str = "--budget") -> float:
    """The one parser of a MAC budget ('1.5e9' or a number): a positive finite number, else one line."""
    try:
        b = float(v)
    except (TypeError, ValueError):
        raise HebbnasError(f"{name} must be a positive number of MACs (e.g. 1.5e9), got {v!r}") from None
    if not math.isfinite(b) or b <= 0:
        raise HebbnasError(f"{name} must be a positive number of MACs (e.g. 1.5e9), got {v!r}")
    return b


def flag(key: str) -> str:
    """The command-line spelling of a setting, so messages name what the user typed."""
    return FLAGS.get(key, "--" + key.replace("_", "-"))


def _int(d: Mapping[str, Any], key: str, o: Origins, minimum: int = 1) -> int:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or int(v) < minimum:
        raise HebbnasError(f"{o.where(key)} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _float(d: Mapping[str, Any], key: str, o: Origins, positive: bool) -> float:
    v = d[key]
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 if positive else v >= 0)
    if not ok:
        raise HebbnasError(f"{o.where(key)} must be a {'positive' if positive else 'non-negative'} number, got {v!r}")
    return float(v)


def _objectives(d: Mapping[str, Any], o: Origins) -> tuple[str, ...]:
    v = d["objectives"]
    names = tuple(x.strip() for x in (v.split(",") if isinstance(v, str) else v) if str(x).strip())
    bad = [n for n in names if n not in OBJECTIVES]
    if bad or not names or names[0] != "accuracy" or len(set(names)) != len(names):
        raise HebbnasError(f"{o.where('objectives')} must be accuracy, optionally followed by any of latency, macs, "
                           f"params (comma-separated, each once), got {v!r}")
    return names


def _width(d: Mapping[str, Any], o: Origins) -> float:
    v = d["width"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v <= 1:
        raise HebbnasError(f"{o.where('width')} must be a number in (0, 1] (the trained copy's share of every "
                           f"width), got {v!r}")
    return float(v)


def _check_resolutions(s: Any, space: Space, o: Origins) -> None:
    floor = min_input_size(space.base)
    for key in ("resolution", "probe_resolution"):
        if getattr(s, key) < floor:
            raise HebbnasError(f"{o.where(key)} {getattr(s, key)} is below the {floor} px the stem needs")


def validate_settings(s: SearchSettings, space: Space, o: Origins | None = None) -> None:
    """Reject combinations that cannot run, before any folder is created or Ray is started."""
    from hebbnas.train import TrainConfig

    o = o or Origins({})
    strategy = get_strategy(s.strategy)
    if s.rounds > 1 and not strategy.multi_round:
        multi = [n for n in names() if get_strategy(n).multi_round]
        raise HebbnasError(f"--rounds {s.rounds} needs --strategy {' or '.join(multi)} (rounds re-probe the best network)")
    if s.trials < s.rounds:
        raise HebbnasError(f"--trials {s.trials} is fewer than --rounds {s.rounds} (each round needs a trial)")
    if s.grace_period > s.max_epochs:
        raise HebbnasError(f"ASHA grace period {s.grace_period} ({o.where('grace_period')}) exceeds "
                           f"{o.where('max_epochs')} {s.max_epochs}")
    _check_resolutions(s, space, o)
    knobs = set(space.train) | set(s.fixed)
    fields_ = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(knobs - (fields_ - {"epochs", "seed", "device"}))
    if bad:
        raise HebbnasError(f"{space.source}: unknown or reserved training knobs {bad}")
    strategy.validate(space)
    from hebbnas.score import SCORES

    if s.prescreen_score not in SCORES:
        raise HebbnasError(f"{o.where('prescreen_score')} {s.prescreen_score!r} is not a score "
                           f"(known: {', '.join(SCORES)})")


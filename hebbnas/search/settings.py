"""Search settings: defaults < the space's `proxy:`/`search:` sections < `--smoke` < the command line.

The resolved `SearchSettings` is written to config.yaml and read back by `--resume`, so a resumed
search is the same search (older layouts, with the proxy's fields flat and the old names `width` and
`max_epochs`, are read too). Validation happens here, before any folder exists or Ray starts. The proxy
part (`hebbnas.proxy.ProxySettings`) is resolved by `hebbnas.proxy`, as `hebbnas probe` resolves it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hebbnas.errors import HebbnasError
from hebbnas.objectives import parse_objectives
from hebbnas.proxy import (
    PROXY_DEFAULTS,
    PROXY_SMOKE,
    Origins,
    ProxySettings,
    check_float,
    check_int,
    check_proxy_width,
    check_resolutions,
    merge,
    parse_budget,
    proxy_from,
)
from hebbnas.renames import KEYS, say_renamed
from hebbnas.space import PROXY_KEYS, SEARCH_KEYS, Space
from hebbnas.strategies import check_sections, get_strategy, names
from hebbnas.topology import min_input_size

# Settings every search has; the space's `proxy:`/`search:` sections override the code defaults,
# `--smoke` overrides those, and explicit command-line options override everything.
DEFAULTS: dict[str, Any] = {
    **PROXY_DEFAULTS,
    "strategy": "reallocate",  # chosen by confirmed winners (analysis/results/finals.md): every strategy's
    # final stage kept the paper's widths, so the plan's tie-break, the fewest trained units, decided
    "trials": 8,
    "trial_epochs": 5,
    "rounds": 1,
    "grace_period": 2,
    "reduction_factor": 2,
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
    **PROXY_SMOKE,
    "trials": 3,
    "trial_epochs": 2,
    "grace_period": 1,
    "final_top": 1,
    "final_seeds": 2,
}
"""`--smoke`: a tiny train subset, few epochs, a small probe; for tests and a first look at a cluster. Its
train subset is a ceiling: a smaller data set (your own folder of 120 images) is used whole."""
SMOKE_FINAL: dict[str, Any] = {"epochs": 1, "train_subset": 160, "val_images": None, "resolution": 32,
                               "proxy_width": None}
"""`--smoke`'s final stage: one epoch on the smoke subset (so the tests exercise the stage in seconds)."""


@dataclass(frozen=True)
class FinalFidelity:
    """How the final stage retrains its networks: one recipe for all (the space's `fixed:`, no sampled
    knobs), on the proxy's data set, at this length, subset, validation size, augmentation, width proxy and
    resolution; and the margin (points) a finalist's paired interval must clear against the control."""

    epochs: int
    train_subset: int | None
    val_images: int | None
    augment: bool
    proxy_width: float
    resolution: int
    margin: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def val_fraction(self) -> float | None:
        """The validation share that gives `val_images` beside `train_subset` (None: the data set's default)."""
        if self.val_images is None or self.train_subset is None:
            return None
        return self.val_images / (self.train_subset + self.val_images)


SEARCH_FIELDS = ("strategy", "trials", "trial_epochs", "rounds", "grace_period", "reduction_factor",
                 "cpus_per_trial", "gpus_per_trial", "concurrency", "prescreen", "prescreen_score", "compile",
                 "latency_budget", "objectives", "final_top", "final_seeds")
"""Options of a search beyond the budget, the space and the proxy (keyword arguments of `hebbnas.search`)."""


@dataclass(frozen=True)
class SearchSettings:
    """Everything that defines a search, resolved from defaults, the space, `--smoke` and the command line.

    Written to ``config.yaml`` and read back by ``--resume``, so a resumed search is the same search.
    """

    budget: float
    space: str
    strategy: str
    proxy: ProxySettings  # what the seed and the trials train and are probed on (`hebbnas probe` resolves the same)
    trials: int
    trial_epochs: int  # epochs per search trial (ASHA may stop a trial earlier)
    rounds: int
    grace_period: int
    reduction_factor: int
    cpus_per_trial: float
    gpus_per_trial: float
    concurrency: int
    fixed: dict[str, Any] = field(default_factory=dict)
    prescreen: int = 0  # > 1: each trial scores this many candidates without training and trains the best
    prescreen_score: str = "naswot_k"  # the training-free score (hebbnas.score.SCORES) the prescreen ranks by
    compile: bool = False  # torch.compile every training forward (seed and trials): opt-in, pays only for long runs
    latency_budget: float | None = None  # ms per image at the deploy shape (batch 1), measured before a trial trains
    objectives: tuple[str, ...] = ("accuracy",)  # more than one: Optuna's multi-objective search, best/pareto.csv
    final_top: int = 0  # finalists of the final stage (0: none; the search's best trial is the answer)
    final_seeds: int = 2  # paired seeds every final-stage network trains on
    final: dict[str, Any] = field(default_factory=dict)  # FinalFidelity fields, resolved

    @property
    def seed(self) -> int:
        """The search's one seed (the proxy's): data split, initialisation, the sampler of round 1."""
        return self.proxy.seed

    @property
    def smoke(self) -> bool:
        return self.proxy.smoke

    @property
    def final_fidelity(self) -> FinalFidelity | None:
        """The final stage's fidelity, or None when the search has no final stage."""
        return FinalFidelity(**self.final) if self.final_top > 0 and self.final else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "") -> SearchSettings:
        """From `to_dict` (config.yaml's `settings`), or an older layout: the proxy's fields flat beside the
        others, `width` for `proxy.proxy_width`, `max_epochs` for `trial_epochs` (each old name one line,
        naming `source`, the file)."""
        d = _current_layout(d, source)
        known = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - known
        if extra:
            raise HebbnasError(f"unknown search settings {sorted(extra)}")
        if "objectives" in d:  # YAML keeps a list
            d["objectives"] = tuple(d["objectives"])
        if not isinstance(d.get("proxy"), ProxySettings):
            if not isinstance(d.get("proxy"), Mapping):
                raise HebbnasError("incomplete search settings: no proxy")
            d["proxy"] = ProxySettings.from_dict(d["proxy"], source, "settings.proxy")
        try:
            return cls(**d)
        except TypeError as e:
            raise HebbnasError(f"incomplete search settings: {e}") from None

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


def _current_layout(d: Mapping[str, Any], source: str) -> dict[str, Any]:
    """config.yaml's settings as this version writes them. Before the proxy had its own field, its values sat
    flat among the search's (`width` for `proxy_width`), and `trial_epochs` was `max_epochs`."""
    d = dict(d)
    for old, new in KEYS["search"].items():
        if old in d and new not in d:
            say_renamed(source, f"settings.{old}", f"settings.{new}")
            d[new] = d.pop(old)
    if "proxy" not in d:
        names_ = [f.name for f in dataclasses.fields(ProxySettings)]
        proxy = {k: d.pop(k) for k in names_ if k in d}
        if "width" in d:
            say_renamed(source, "settings.width", "settings.proxy.proxy_width")
            proxy["proxy_width"] = d.pop("width")
        proxy.setdefault("proxy_width", 1.0)  # before the width proxy existed
        d["proxy"] = proxy
    if isinstance(d.get("final"), Mapping) and "width" in d["final"] and "proxy_width" not in d["final"]:
        say_renamed(source, "settings.final.width", "settings.final.proxy_width")
        d["final"] = {("proxy_width" if k == "width" else k): v for k, v in d["final"].items()}
    return d


def resolve_settings(space: Space, space_name: str, options: Mapping[str, Any], smoke: bool = False,
                     flags: Mapping[str, str] | None = None) -> SearchSettings:
    """Merge defaults < space sections < smoke < explicit options (None means not given) and validate.

    `options` are keyed by setting: the proxy's (`hebbnas.proxy.ProxySettings` fields), `SEARCH_FIELDS`
    and `budget`; an unknown key is refused.

    Raises:
        HebbnasError: an unknown strategy, a non-positive budget or count, an impossible combination;
            the message names the value as the user gave it (the flag typed, or the space file and key).
    """
    unknown = set(options) - set(DEFAULTS) - {"budget"}
    if unknown:
        raise HebbnasError(f"unknown search settings {sorted(unknown)} (known: budget, {', '.join(DEFAULTS)})")
    merged, o = merge(space, options, smoke, flags, defaults=DEFAULTS, smoke_values=SMOKE,
                      sections=(("proxy", PROXY_KEYS), ("search", SEARCH_KEYS)))
    if "rounds" not in o.of and str(merged["strategy"]) in names():  # nobody chose: the strategy's own
        merged["rounds"] = get_strategy(str(merged["strategy"])).default_rounds(check_int(merged, "trials", o))
    settings = SearchSettings(
        budget=parse_budget(options.get("budget")),
        space=space_name,
        strategy=str(merged["strategy"]),
        proxy=proxy_from(merged, o, space, smoke),
        trials=check_int(merged, "trials", o),
        trial_epochs=check_int(merged, "trial_epochs", o),
        rounds=check_int(merged, "rounds", o),
        grace_period=check_int(merged, "grace_period", o),
        reduction_factor=check_int(merged, "reduction_factor", o, minimum=2),
        cpus_per_trial=check_float(merged, "cpus_per_trial", o, positive=True),
        gpus_per_trial=check_float(merged, "gpus_per_trial", o, positive=False),
        concurrency=check_int(merged, "concurrency", o),
        prescreen=check_int(merged, "prescreen", o, minimum=0),
        prescreen_score=str(merged["prescreen_score"]),
        compile=bool(merged["compile"]),
        latency_budget=None if merged["latency_budget"] is None else check_float(merged, "latency_budget", o,
                                                                                  positive=True),
        objectives=_objectives(merged, o),
        fixed=dict(space.fixed),
        final_top=check_int(merged, "final_top", o, minimum=0),
        final_seeds=check_int(merged, "final_seeds", o),
    )
    settings = dataclasses.replace(settings, final=_final(space, settings, smoke).to_dict())
    validate_settings(settings, space, o)
    return settings


def _final(space: Space, s: SearchSettings, smoke: bool) -> FinalFidelity:
    """The space's `final:` block over the proxy's values (epochs: a trial's + 2), `--smoke`'s over both."""
    where = f"{space.source}: final"
    given = {**space.final, **({k: v for k, v in SMOKE_FINAL.items()} if smoke else {})}
    p = s.proxy
    defaults = {"epochs": s.trial_epochs + 2, "train_subset": p.train_subset, "val_images": None, "augment": False,
                "proxy_width": p.proxy_width, "resolution": p.resolution, "margin": 0.0}
    v = {k: defaults[k] if given.get(k) is None else given[k] for k in defaults}
    o = Origins({k: f"{where}.{k}" for k in given})
    f = FinalFidelity(
        epochs=check_int(v, "epochs", o), augment=bool(v["augment"]), proxy_width=check_proxy_width(v, o),
        train_subset=None if v["train_subset"] is None else check_int(v, "train_subset", o),
        val_images=None if v["val_images"] is None else check_int(v, "val_images", o),
        resolution=check_int(v, "resolution", o), margin=check_float(v, "margin", o, positive=False))
    if f.val_images is not None and f.train_subset is None:
        raise HebbnasError(f"{where}.val_images needs {where}.train_subset (the validation share is taken beside it)")
    floor = min_input_size(space.base)
    if f.resolution < floor:
        raise HebbnasError(f"{o.where('resolution')} {f.resolution} is below the {floor} px the stem needs")
    return f


def _objectives(d: Mapping[str, Any], o: Origins) -> tuple[str, ...]:
    return parse_objectives(d["objectives"], o.where("objectives"))


def validate_settings(s: SearchSettings, space: Space, o: Origins | None = None) -> None:
    """Reject combinations that cannot run, before any folder is created or Ray is started."""
    from hebbnas.train import TrainConfig

    o = o or Origins({})
    strategy = get_strategy(s.strategy)
    if s.rounds > 1 and not strategy.multi_round:
        multi = [n for n in names() if get_strategy(n).multi_round]
        raise HebbnasError(f"--rounds {s.rounds} needs --strategy {' or '.join(multi)} (rounds re-probe the best network)")
    if s.rounds == 1 and s.trials > 1 and strategy.keeps_incumbent:
        raise HebbnasError(f"{o.where('rounds')} 1 with --strategy {s.strategy} would train its start {s.trials} "
                           f"times (round 1 trains the start, later rounds its moves): give --rounds 2 or more, or "
                           f"leave --rounds out ({strategy.default_rounds(s.trials)} rounds for {s.trials} trials)")
    if s.trials < s.rounds:
        raise HebbnasError(f"--trials {s.trials} is fewer than --rounds {s.rounds} (each round needs a trial)")
    if s.grace_period > s.trial_epochs:
        raise HebbnasError(f"ASHA grace period {s.grace_period} ({o.where('grace_period')}) exceeds "
                           f"{o.where('trial_epochs')} {s.trial_epochs}")
    check_resolutions(s.proxy, space, o)
    knobs = set(space.train) | set(s.fixed)
    fields_ = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(knobs - (fields_ - {"epochs", "seed", "device"}))
    if bad:
        raise HebbnasError(f"{space.source}: unknown or reserved training knobs {bad}")
    check_sections(space)
    strategy.validate(space)
    from hebbnas.score import SCORES

    if s.prescreen_score not in SCORES:
        raise HebbnasError(f"{o.where('prescreen_score')} {s.prescreen_score!r} is not a score "
                           f"(known: {', '.join(SCORES)})")

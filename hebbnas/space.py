"""Search spaces: declarative YAML files in `search_spaces/`, loaded into frozen values.

A space names the base topology, the deployment input shape the budget is counted at, the proxy the
trials train on (`proxy:`), the defaults of `hebbnas search` (`search:`), the training options every
trial shares unchanged (`fixed:`, `TrainConfig` fields), how the final stage retrains its networks
(`final:`), and knob sections: the distributions Optuna samples from (`train:` training knobs, an
opt-in: architecture comparisons share one recipe; and the section a strategy declares as its own,
such as hebbian's `derive:` derivation knobs or random's `random:` width multipliers). Which knob
sections exist is the strategies' business (`hebbnas.strategies.check_sections`): here every other
mapping is parsed as one. Sampling only reads these values, so a trial's space function stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hebbnas.errors import HebbnasError, first_line
from hebbnas.renames import renamed_section
from hebbnas.topology import Topology, load_topology, parse_input_shape



def _spaces_dir() -> Path:
    """search_spaces/ of a source checkout (the folder users edit), else the copy shipped in the wheel."""
    here = Path(__file__).resolve().parent
    checkout = here.parent / "search_spaces"
    return checkout if checkout.is_dir() else here / "search_spaces"


SPACES_DIR = _spaces_dir()
FIXED_KEYS = ("name", "base", "deploy_input", "width_multiple", "proxy", "search", "fixed", "final", "description")
"""The top-level keys that are not knob sections."""
PROXY_KEYS = ("dataset", "data_dir", "resolution", "probe_resolution", "train_subset", "seed_epochs", "probe_images",
              "proxy_width")
"""Keys of the `proxy:` section: what trials train on and how the seed network is probed. `proxy_width` < 1
makes them train a uniformly narrowed copy of each candidate (the width proxy); the budget still counts the
full-width topology at the deploy shape. (`width` is the old name of `proxy_width`: still read.)"""
SEARCH_KEYS = ("strategy", "trials", "trial_epochs", "rounds", "grace_period", "reduction_factor", "concurrency",
               "cpus_per_trial", "gpus_per_trial", "prescreen", "prescreen_score", "final_top", "final_seeds")
"""Keys of the `search:` section: defaults of `hebbnas search` (the command line overrides them).
(`max_epochs` is the old name of `trial_epochs`: still read.)"""
FINAL_KEYS = ("epochs", "train_subset", "val_images", "augment", "proxy_width", "resolution", "margin")
"""Keys of the `final:` section: the final stage's fidelity (how its networks retrain) and the margin a
finalist must clear against the control. Missing keys fall back to the proxy's (epochs: a trial's + 2)."""


@dataclass(frozen=True)
class Distribution:
    """One searched knob: a float/int range (optionally log-uniform) or a list of choices."""

    kind: str  # "float" | "int" | "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    @classmethod
    def parse(cls, where: str, spec: Any) -> Distribution:
        if isinstance(spec, list):
            spec = {"choices": spec}
        if not isinstance(spec, Mapping):
            raise HebbnasError(f"{where}: expected a mapping with low/high or choices, got {spec!r}")
        if "choices" in spec:
            choices = tuple(spec["choices"])
            if not choices:
                raise HebbnasError(f"{where}: empty choices")
            return cls("categorical", choices=choices)
        try:
            low, high = float(spec["low"]), float(spec["high"])
        except (KeyError, TypeError, ValueError):
            raise HebbnasError(f"{where}: needs numeric low and high") from None
        kind = str(spec.get("type", "int" if isinstance(spec["low"], int) and isinstance(spec["high"], int) else "float"))
        if kind not in ("int", "float"):
            raise HebbnasError(f"{where}: type must be int or float, got {kind!r}")
        log = bool(spec.get("log", False))
        if not low <= high or (log and low <= 0) or not (math.isfinite(low) and math.isfinite(high)):
            raise HebbnasError(f"{where}: invalid range [{low}, {high}]{' (log needs low > 0)' if log else ''}")
        step = spec.get("step")
        return cls(kind, low, high, log, None if step is None else float(step))

    def suggest(self, trial: Any, name: str) -> Any:
        """Sample with an Optuna trial (define-by-run)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)

    def default(self) -> Any:
        """A central value, used when a knob is not searched (e.g. `--smoke` or the seed network)."""
        if self.kind == "categorical":
            return self.choices[0]
        mid = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
        return int(round(mid)) if self.kind == "int" else mid


@dataclass(frozen=True)
class Space:
    """A loaded, validated search space."""

    name: str
    base: Topology
    deploy_input: tuple[int, int, int]
    width_multiple: int
    proxy: dict[str, Any]
    search: dict[str, Any]
    sections: dict[str, dict[str, Distribution]] = field(default_factory=dict)
    """Knob sections by name (``train`` and the strategies' own), each knob's distribution by name."""
    fixed: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)  # the final stage's fidelity (FINAL_KEYS)
    source: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The parsed YAML as given, so a run can record its space and a resume rebuild the same one."""

    def section(self, name: str) -> dict[str, Distribution]:
        """One knob section (empty when the YAML has none)."""
        return self.sections.get(name, {})

    @property
    def train(self) -> dict[str, Distribution]:
        """The searched training knobs (every strategy's)."""
        return self.section("train")


def load_space(spec: str | Path) -> Space:
    """A space by name (a file in search_spaces/) or by path to a YAML file."""
    p = Path(str(spec))
    if not p.suffix:
        p = SPACES_DIR / f"{spec}.yaml"
    if not p.is_file():
        known = sorted(f.stem for f in SPACES_DIR.glob("*.yaml")) if SPACES_DIR.is_dir() else []
        raise HebbnasError(f"unknown search space {str(spec)!r} (known: {', '.join(known) or 'none'})")
    try:
        raw = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise HebbnasError(f"cannot read search space {p}: {first_line(e)}") from None
    return parse_space(raw, source=str(p))


def parse_space(raw: Any, source: str = "<dict>") -> Space:
    """Validate a space given as a dict (the parsed YAML)."""
    if not isinstance(raw, Mapping):
        raise HebbnasError(f"{source}: a search space must be a YAML mapping")
    extra = {k for k, v in raw.items() if k not in FIXED_KEYS and not isinstance(v, Mapping | None)}
    if extra:
        raise HebbnasError(f"{source}: unknown keys {sorted(extra)}")
    for key in ("name", "base"):
        if key not in raw:
            raise HebbnasError(f"{source}: missing key {key!r}")
    base = load_topology(str(raw["base"]))
    deploy = parse_input_shape(str(raw.get("deploy_input", "3x224x224")))
    if deploy[0] != base.in_channels:
        raise HebbnasError(f"{source}: deploy_input has {deploy[0]} channels, base expects {base.in_channels}")
    base.macs(deploy)  # raises if the deploy shape is too small for the stem
    wm = raw.get("width_multiple", 8)
    if not isinstance(wm, int) or wm < 1:
        raise HebbnasError(f"{source}: width_multiple must be a positive integer")
    sections: dict[str, dict[str, Distribution]] = {}
    for sec in (k for k in raw if k not in FIXED_KEYS):
        sections[str(sec)] = {str(k): Distribution.parse(f"{source}: {sec}.{k}", v)
                              for k, v in (raw[sec] or {}).items()}
    for sec in ("proxy", "search", "fixed", "final"):
        if not isinstance(raw.get(sec) or {}, Mapping):
            raise HebbnasError(f"{source}: section {sec!r} must be a mapping")
    raw = {**raw, **{sec: renamed_section(raw[sec], sec, source) for sec in ("proxy", "search", "final")
                     if raw.get(sec)}}  # old keys (width, max_epochs) under their new names, one line each
    for sec, keys in (("proxy", PROXY_KEYS), ("search", SEARCH_KEYS), ("final", FINAL_KEYS)):
        extra = set(raw.get(sec) or {}) - set(keys)
        if extra:
            raise HebbnasError(f"{source}: unknown keys in {sec}: {sorted(extra)} (known: {', '.join(keys)})")
    return Space(
        name=str(raw["name"]),
        base=base,
        deploy_input=deploy,
        width_multiple=wm,
        proxy=dict(raw.get("proxy") or {}),
        search=dict(raw.get("search") or {}),
        fixed=dict(raw.get("fixed") or {}),
        final=dict(raw.get("final") or {}),
        source=source,
        raw=dict(raw),
        sections=sections,
    )

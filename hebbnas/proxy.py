"""The proxy: what the networks of a search and of `hebbnas probe` train and are probed on.

The data set, the training and probe resolutions, the training subset, the seed network's epochs, the
probe's images, the width proxy and the seed: defaults < the space's `proxy:` section < `--smoke` < the
command line (or the keyword arguments of `hebbnas.search` / `hebbnas.probe`). `hebbnas probe`, the
pipeline and the search all read one `ProxySettings`; `SearchSettings` holds one, never repeats it.

Also here, because every command that takes a budget or a proxy needs them: the one budget parser, and
the merge and checks of settings values whose messages name a value as the user wrote it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hebbnas.errors import HebbnasError
from hebbnas.renames import say_renamed
from hebbnas.space import PROXY_KEYS, Space
from hebbnas.topology import min_input_size

PROXY_DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "data_dir": None,
    "resolution": 32,
    "probe_resolution": 64,
    "train_subset": None,
    "seed_epochs": 3,
    "probe_images": 600,
    "proxy_width": 1.0,
    "seed": 0,
}
"""The proxy of a space that says nothing (the space's `proxy:` section overrides these)."""
PROXY_SMOKE: dict[str, Any] = {
    "train_subset": 160,
    "resolution": 32,
    "probe_resolution": 32,
    "seed_epochs": 1,
    "probe_images": 64,
}
"""`--smoke`'s proxy: a tiny train subset (a ceiling: a smaller data set is used whole), one seed epoch, a
small probe."""


@dataclass(frozen=True)
class ProxySettings:
    """What the networks of a search (and `hebbnas probe`) train and are probed on: the proxy."""

    dataset: str
    data_dir: str | None
    resolution: int  # training resolution (px)
    probe_resolution: int  # the trained seed is probed at this resolution (larger: spatial offsets mean more)
    train_subset: int | None  # use only this many training images (None: all)
    seed_epochs: int  # epochs the seed network trains before it is probed
    probe_images: int  # images the probe records
    proxy_width: float  # the width proxy: the seed and trials train topology.narrowed(proxy_width)
    seed: int  # seeds the data split, initialisation and order (and a search's sampler)
    smoke: bool = False  # `--smoke`: the train subset is a ceiling, not a demand

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "", key: str = "proxy") -> ProxySettings:
        """From `to_dict` (config.yaml's `settings.proxy`, probe.json's `settings`); the old `width` is read as
        `proxy_width`, in one line naming `source` (the file) and `key` (where in it)."""
        d = dict(d)
        if "width" in d and "proxy_width" not in d:
            say_renamed(source, f"{key}.width", f"{key}.proxy_width")
            d["proxy_width"] = d.pop("width")
        known = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - known
        if extra:
            raise HebbnasError(f"unknown proxy settings {sorted(extra)} in {source or key}")
        try:
            return cls(**d)
        except TypeError as e:
            raise HebbnasError(f"incomplete proxy settings in {source or key}: {e}") from None


@dataclass(frozen=True)
class Origins:
    """Where each merged value came from, so a bad one is named as the user wrote it: the flag as typed,
    the space file and key, `--smoke`, or the default."""

    of: dict[str, str]

    def where(self, key: str) -> str:
        return self.of.get(key, f"the default {key}")


def flag(key: str) -> str:
    """The command-line spelling of a setting (``proxy_width`` -> ``--proxy-width``), so messages name what
    the user typed; every setting's flag is its name with dashes."""
    return "--" + key.replace("_", "-")


def merge(space: Space, options: Mapping[str, Any], smoke: bool = False, flags: Mapping[str, str] | None = None,
          *, defaults: Mapping[str, Any] = PROXY_DEFAULTS, smoke_values: Mapping[str, Any] = PROXY_SMOKE,
          sections: Sequence[tuple[str, Sequence[str]]] = (("proxy", PROXY_KEYS),)) -> tuple[dict[str, Any], Origins]:
    """defaults < the space's sections < smoke < explicit options (None means not given; `budget` is not a
    setting to merge), and where each value came from. `flags` maps an option's key to the flag the user
    typed (default `flag(key)`)."""
    merged: dict[str, Any] = dict(defaults)
    origin: dict[str, str] = {}
    for sec, keys in sections:
        section = getattr(space, sec)
        for key in keys:
            if key in section:
                merged[key] = section[key]
                origin[key] = f"{space.source}: {sec}.{key}"
    if smoke:
        merged.update(smoke_values)
        origin.update({k: f"--smoke's {k}" for k in smoke_values})
    for k, v in options.items():
        if v is not None and k != "budget":
            merged[k] = v
            origin[k] = (flags or {}).get(k, flag(k))
    return merged, Origins(origin)


def resolve_proxy(space: Space, options: Mapping[str, Any], smoke: bool = False,
                  flags: Mapping[str, str] | None = None) -> ProxySettings:
    """The proxy settings of `hebbnas probe` (and of a search): merged as a search merges them, validated.

    `options` are keyword values (None: not given), keyed by `ProxySettings` field; unknown keys are refused.
    """
    unknown = set(options) - set(PROXY_DEFAULTS) - {"budget"}
    if unknown:
        raise HebbnasError(f"unknown proxy settings {sorted(unknown)} (known: {', '.join(PROXY_DEFAULTS)})")
    merged, origins = merge(space, options, smoke, flags)
    return proxy_from(merged, origins, space, smoke)


def proxy_from(merged: Mapping[str, Any], o: Origins, space: Space, smoke: bool) -> ProxySettings:
    """The proxy part of merged settings, each value checked (its message names where it came from)."""
    proxy = ProxySettings(
        dataset=str(merged["dataset"]),
        data_dir=None if merged["data_dir"] is None else str(merged["data_dir"]),
        resolution=check_int(merged, "resolution", o),
        probe_resolution=check_int(merged, "probe_resolution", o),
        train_subset=None if merged["train_subset"] is None else check_int(merged, "train_subset", o),
        seed_epochs=check_int(merged, "seed_epochs", o),
        probe_images=check_int(merged, "probe_images", o),
        proxy_width=check_proxy_width(merged, o),
        seed=check_int(merged, "seed", o, minimum=0),
        smoke=bool(smoke),
    )
    check_resolutions(proxy, space, o)
    return proxy


def parse_budget(v: Any, name: str = "--budget") -> float:
    """The one parser of a MAC budget ('1.5e9' or a number): a positive finite number, else one line."""
    try:
        b = float(v)
    except (TypeError, ValueError):
        raise HebbnasError(f"{name} must be a positive number of MACs (e.g. 1.5e9), got {v!r}") from None
    if not math.isfinite(b) or b <= 0:
        raise HebbnasError(f"{name} must be a positive number of MACs (e.g. 1.5e9), got {v!r}")
    return b


def check_int(d: Mapping[str, Any], key: str, o: Origins, minimum: int = 1) -> int:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or int(v) < minimum:
        raise HebbnasError(f"{o.where(key)} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def check_float(d: Mapping[str, Any], key: str, o: Origins, positive: bool) -> float:
    v = d[key]
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 if positive else v >= 0)
    if not ok:
        raise HebbnasError(f"{o.where(key)} must be a {'positive' if positive else 'non-negative'} number, got {v!r}")
    return float(v)


def check_proxy_width(d: Mapping[str, Any], o: Origins) -> float:
    v = d["proxy_width"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v <= 1:
        raise HebbnasError(f"{o.where('proxy_width')} must be a number in (0, 1] (the trained copy's share of every "
                           f"width), got {v!r}")
    return float(v)


def check_resolutions(s: Any, space: Space, o: Origins) -> None:
    """The training and probe resolutions are at least what the space's stem needs."""
    floor = min_input_size(space.base)
    for key in ("resolution", "probe_resolution"):
        if getattr(s, key) < floor:
            raise HebbnasError(f"{o.where(key)} {getattr(s, key)} is below the {floor} px the stem needs")

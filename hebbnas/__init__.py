"""hebbnas: GoogLeNet Inception widths derived from activation correlations, under a MAC budget.

The Python front door (`hebbnas.api`): ``hebbnas.search(budget=1.5e9, ...)`` runs the search of
`hebbnas search` and returns a `SearchResult`; ``hebbnas.probe(budget=..., out=...)`` runs `hebbnas probe`
and returns a `ProbeRun`. Both names are also those of modules (`hebbnas/search/`, `hebbnas/probe/`): the
modules are callable, so ``hebbnas.search(...)`` works whichever was imported first, and
``from hebbnas.probe import ProbeResult`` keeps working.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from typing import Any

from hebbnas.errors import HebbnasError
from hebbnas.topology import InceptionSpec, Topology, get_topology, load_topology

__version__ = "0.1.0"
__all__ = [
    "HebbnasError",
    "InceptionSpec",
    "ProbeRun",
    "SearchResult",
    "Topology",
    "build",
    "cluster_correlation",
    "get_topology",
    "load",
    "load_topology",
    "probe",
    "search",
]

_LAZY = {"build": "hebbnas.model", "cluster_correlation": "hebbnas.cluster", "load": "hebbnas.export",
         "SearchResult": "hebbnas.api", "ProbeRun": "hebbnas.api"}
"""Heavier pieces load on first use, so `import hebbnas` stays quick."""


class _Door(types.ModuleType):
    """A module that is also a front-door function (`_DOOR`, in hebbnas.api): calling it runs that."""

    _DOOR = ""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module("hebbnas.api"), self._DOOR)(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(getattr(importlib.import_module("hebbnas.api"), self._DOOR))


class _SearchModule(_Door):
    _DOOR = "search"


class _ProbeModule(_Door):
    _DOOR = "probe"


_DOORS: dict[str, type[_Door]] = {"search": _SearchModule, "probe": _ProbeModule}


class _Package(types.ModuleType):
    """hebbnas itself: when the import system binds `hebbnas.search` or `hebbnas.probe` (the modules), they
    become callable, so the name stays the front door."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _DOORS and isinstance(value, types.ModuleType) and not isinstance(value, _Door):
            value.__class__ = _DOORS[name]
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
for _name in _DOORS:  # already imported (a submodule imported before the package finished): bind them now
    if f"{__name__}.{_name}" in sys.modules:
        setattr(sys.modules[__name__], _name, sys.modules[f"{__name__}.{_name}"])


def __getattr__(name: str) -> Any:
    if name in _DOORS:  # the module, made callable as it is bound
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hebbnas' has no attribute {name!r}")

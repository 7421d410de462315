"""One small registry for every kind of plug-in: strategies, export formats, datasets, objectives.

A plug-in is a class with a `name` (what the user types) and an `order` (where it is listed; the
built-ins are 0, 10, 20, ...; a newcomer without one comes last). A kind's built-ins are the modules
of one package: asking the registry for a name imports them (with pkgutil), and each module's
``@REGISTRY.register`` puts its class in. So adding one is one new module in that package (or any
module that calls `register` before the name is asked for), never an edit of a list elsewhere.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from hebbnas.errors import HebbnasError

T = TypeVar("T", bound=type)

LAST = 1000
"""The `order` of a plug-in that does not say where it goes: after every built-in."""


class Registry(Generic[T]):
    """Classes of one kind by name, the built-ins discovered from the modules of `package`.

    `kind` ("strategy") and `flag` ("--strategy") make the error an unknown name gets: one line that
    names the flag and every valid name.
    """

    def __init__(self, kind: str, flag: str, package: str) -> None:
        self.kind, self.flag, self.package = kind, flag, package
        self._classes: dict[str, T] = {}
        self._loaded = False

    def register(self, cls: T) -> T:
        """Class decorator: make `cls` available under its `name` (a later class of the same name wins)."""
        name = getattr(cls, "name", "")
        if not name:
            raise ValueError(f"{cls.__name__} has no name")
        self._classes[name] = cls
        return cls

    def unregister(self, name: str) -> None:
        """Forget `name` (a plug-in registered for a while, e.g. by a test)."""
        self._classes.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """Every registered name, built-ins first in their declared `order`, then newcomers as registered."""
        self._discover()
        ranked = sorted(enumerate(self._classes.items()), key=lambda e: (getattr(e[1][1], "order", LAST), e[0]))
        return tuple(name for _, (name, _cls) in ranked)

    def get(self, name: str) -> T:
        """The class called `name`; an unknown name is a one-line error naming the flag and the valid names."""
        self._discover()
        if name not in self._classes:
            raise HebbnasError(f"unknown {self.kind} {name!r} for {self.flag} (known: {', '.join(self.names())})")
        return self._classes[name]

    def classes(self) -> tuple[T, ...]:
        """Every registered class, in the order of `names`."""
        return tuple(self._classes[n] for n in self.names())

    def find(self, test: Callable[[T], Any]) -> T | None:
        """The first class (in `names` order) for which `test` is true, else None."""
        return next((c for c in self.classes() if test(c)), None)

    def _discover(self) -> None:
        """Import every module of the package once: each built-in registers itself on import."""
        if self._loaded:
            return
        self._loaded = True
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")

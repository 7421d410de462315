"""Load a plug-in the way a user adds one: a single new module, imported, registering itself.

The module is written to a temporary folder put on sys.path; leaving the block forgets the module and
takes its name out of the registry again, so no other test sees it.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any


@contextmanager
def plugged(folder: Path, module: str, source: str, registry: Any, name: str) -> Iterator[ModuleType]:
    """Write `source` as `folder/<module>.py`, import it (it registers `name` in `registry`), yield it."""
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(folder))
    try:
        assert name not in registry.names(), f"{name} is registered before its module is imported"
        yield importlib.import_module(module)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(module, None)
        registry.unregister(name)

"""Progress bars for the long steps (seed training, probing, test evaluation, decoding an image folder).

The core takes a plain ``progress: bool`` (default False: quiet, as in a Ray trial or a test); the CLI
decides with `wanted()`: a bar on a terminal, nothing extra when stdout is a file, a pipe or CI.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def wanted(stream: Any = None) -> bool:
    """True when `stream` (default stderr, where bars go) is a terminal and not under CI/``NO_PROGRESS``."""
    stream = sys.stderr if stream is None else stream
    if os.environ.get("CI") or os.environ.get("HEBBNAS_NO_PROGRESS") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def bar(iterable: Iterable[T], *, enabled: bool, total: int | None = None, desc: str = "",
        unit: str = "it") -> Iterator[T]:
    """`iterable` wrapped in a tqdm bar on stderr when `enabled`, else unchanged."""
    if not enabled:
        return iter(iterable)
    from tqdm import tqdm

    return iter(tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, file=sys.stderr))

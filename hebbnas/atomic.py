"""Files written whole or not at all: write beside the target, then move it into place.

A reader (a resume, `hebbnas report` while a search runs, another process sharing a cache) never sees half
a file, and a failed write leaves the old file as it was.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `path` (hidden, one per process) to write to; moved over `path` when the block
    ends without an error, removed when it raises."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike[str], text: str, encoding: str | None = None) -> None:
    """Write `text` to `path` atomically (`replacing`)."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding=encoding)

"""Names that changed, in one table: an old key of a space YAML or config.yaml, or an old flag, is still
read, with one line on stderr naming the new one (once per process and place).

One concept has one name from flag to file: ``--proxy-width`` / ``proxy_width`` (the width proxy, once
``width``), ``--trial-epochs`` / ``trial_epochs`` (epochs per search trial, once ``max_epochs``),
``--seed-epochs`` / ``seed_epochs`` (epochs of the seed network before it is probed).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

KEYS: dict[str, dict[str, str]] = {
    "proxy": {"width": "proxy_width"},
    "search": {"max_epochs": "trial_epochs"},
    "final": {"width": "proxy_width"},
}
"""Per section of a space (and of config.yaml's settings): old key -> new key."""
FLAGS: dict[str, dict[str, str]] = {
    "search": {"--epochs": "--trial-epochs", "--width": "--proxy-width"},
    "probe": {"--epochs": "--seed-epochs", "--width": "--proxy-width"},
}
"""Per command: old flag -> new flag (hidden; each use prints one line)."""

_SAID: set[str] = set()


def say_renamed(where: str, old: str, new: str) -> None:
    """One line on stderr, ``<where>: <old> is now <new>`` (``<old> is now <new>`` without a place), once."""
    line = f"{where}: {old} is now {new}" if where else f"{old} is now {new}"
    if line not in _SAID:
        _SAID.add(line)
        print(line, file=sys.stderr, flush=True)


def renamed_section(section: Mapping[str, Any], name: str, where: str, prefix: str | None = None) -> dict[str, Any]:
    """A section (`proxy`, `search`, `final`) with its old keys under their new names, each old key named in
    one line. `prefix` is how the section is spelled in messages (default its name). Both spellings at
    once is an error of the file, left to the caller's unknown-key check (the old key is kept as is)."""
    out = dict(section)
    for old, new in KEYS.get(name, {}).items():
        if old in out and new not in out:
            say_renamed(where, f"{prefix or name}.{old}", f"{prefix or name}.{new}")
            out = {new if k == old else k: v for k, v in out.items()}
    return out

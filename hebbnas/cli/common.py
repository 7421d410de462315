"""Options several commands share, spelled and explained once."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hebbnas.errors import HebbnasError

STARTED = time.perf_counter()
"""About when the command started (its parser is built right after), for the search's wall-time breakdown."""


def add_data_options(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """--dataset and --data-dir."""
    from hebbnas.data import DATASETS

    p.add_argument("--dataset", default=default, metavar="NAME",
                   help=f"proxy data set: {', '.join(DATASETS)}" + (f" (default {default})" if default else
                                                                     " (default: the space's)"))
    p.add_argument("--data-dir", default=None,
                   help="directory of the data set's files (not needed for digits; fashion-mnist defaults to "
                   "/usr/share/datasets/fashion-mnist); for --dataset folder: class subfolders of PNG/JPEG "
                   "images, or train/ val/ test/ holding them")


def add_out_option(p: argparse.ArgumentParser, help: str, required: bool = False) -> None:
    """One spelling of the output option for every command: --out (-o; --output kept as an alias)."""
    p.add_argument("-o", "--out", "--output", dest="out", default=None, required=required, metavar="PATH", help=help)


def typed_flags(argv: Sequence[str], spellings: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """For each setting, the spelling of its flag the user typed (the last one given), so an error names
    what they wrote: {"max_epochs": ("--trial-epochs", "--epochs")} and argv [..., "--epochs", "0"] give
    {"max_epochs": "--epochs"}."""
    out: dict[str, str] = {}
    for key, names in spellings.items():
        for word in argv:
            name = word.split("=", 1)[0]
            if name in names:
                out[key] = name
    return out


def add_alias(p: argparse.ArgumentParser, old: str, dest: str, type_: Any = None) -> None:
    """An old spelling kept for one release: it still works, and --help does not show it."""
    p.add_argument(old, dest=dest, type=type_, default=None, help=argparse.SUPPRESS)


def check_out_folder(out: Path, flag: str = "--out") -> None:
    """Fail before any work when the output folder cannot be written: a file in its place, a non-empty
    folder, or no permission to create it."""
    if out.exists() and not out.is_dir():
        raise HebbnasError(f"{flag} {out} is a file; give a folder to create")
    if out.is_dir() and any(out.iterdir()):
        raise HebbnasError(f"{flag} {out} exists and is not empty; choose another")
    parent = out if out.is_dir() else next((a for a in out.absolute().parents if a.exists()), Path("/"))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise HebbnasError(f"{flag} {out} cannot be written ({parent} is not a writable folder)")


def check_threads(n: int) -> int:
    """--threads: 0 is torch's choice, otherwise at least 1."""
    if n < 0:
        raise HebbnasError(f"--threads must be 0 (torch's choice) or a positive number of CPU threads, got {n}")
    return n

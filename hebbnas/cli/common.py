"""Options several commands share, spelled and explained once."""

from __future__ import annotations

import argparse
import time

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


def parse_budget(text: str | None) -> float:
    """'1.5e9' -> 1.5e9; anything else is a one-line error naming the flag."""
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise HebbnasError(f"--budget must be a positive number of MACs (e.g. 1.5e9), got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise HebbnasError(f"--budget must be a positive number of MACs (e.g. 1.5e9), got {text!r}")
    return value

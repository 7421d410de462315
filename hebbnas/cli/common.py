"""Options several commands share, spelled and explained once."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

STARTED = time.perf_counter()
"""About when the command started (its parser is built right after), for the search's wall-time breakdown."""


def add_data_options(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """--dataset and --data-dir."""
    from hebbnas.datasets import names

    p.add_argument("--dataset", default=default, metavar="NAME",
                   help=f"proxy data set: {', '.join(names())}" + (f" (default {default})" if default else
                                                                     " (default: the space's)"))
    p.add_argument("--data-dir", default=None,
                   help="directory of the data set's files (not needed for digits; fashion-mnist defaults to "
                   "/usr/share/datasets/fashion-mnist); for --dataset folder: class subfolders of PNG/JPEG "
                   "images, or train/ val/ test/ holding them")


def add_out_option(p: argparse.ArgumentParser, help: str, required: bool = False) -> None:
    """One spelling of the output option for every command: --out (-o; --output kept as an alias)."""
    p.add_argument("-o", "--out", "--output", dest="out", default=None, required=required, metavar="PATH", help=help)


def add_proxy_options(p: argparse.ArgumentParser, command: str) -> None:
    """The proxy's options, the same in `hebbnas probe` and `hebbnas search` (one per
    `hebbnas.proxy.ProxySettings` field: what the seed and the trials train and are probed on), and the
    old spellings of this command (`hebbnas.renames.FLAGS`), hidden, each use one line on stderr."""
    from hebbnas.renames import FLAGS

    add_data_options(p)
    p.add_argument("--resolution", type=int, default=None,
                   help="training resolution in px of the seed and the trials (default: the space's proxy.resolution)")
    p.add_argument("--probe-resolution", type=int, default=None,
                   help="resolution in px the trained seed is probed at (default: the space's proxy.probe_resolution)")
    p.add_argument("--probe-images", type=int, default=None, help="images probed (default: the space's proxy.probe_images)")
    p.add_argument("--train-subset", type=int, default=None,
                   help="use only this many training images (default: the space's proxy.train_subset, else all)")
    p.add_argument("--seed-epochs", type=int, default=None,
                   help="epochs the seed network trains before it is probed (default: the space's proxy.seed_epochs)")
    p.add_argument("--proxy-width", type=float, default=None,
                   help="width proxy: the seed (and a search's trials) train each network's narrowed copy, e.g. 0.25; "
                   "the budget still counts the full-width topology (default: the space's proxy.proxy_width, 1)")
    p.add_argument("--seed", type=int, default=None,
                   help="seeds the data split, initialisation and order (and a search's sampler; default 0)")
    for old, new in FLAGS.get(command, {}).items():
        add_alias(p, old, new)


def proxy_options(args: argparse.Namespace) -> dict[str, Any]:
    """The proxy's options as given (None: not given), keyed by `ProxySettings` field."""
    from hebbnas.proxy import PROXY_DEFAULTS

    return {k: getattr(args, k) for k in PROXY_DEFAULTS}


class _Renamed(argparse.Action):
    """An old flag: sets the new one's value, says `<old> is now <new>` on stderr once, and remembers the
    spelling typed (`typed_flags`), so an error about its value names what the user wrote."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str = "", **kw: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from hebbnas.renames import say_renamed

        say_renamed("", str(option_string), self.new)
        setattr(namespace, self.dest, values)
        typed = dict(getattr(namespace, "typed_flags", None) or {})
        typed[self.dest] = str(option_string)
        setattr(namespace, "typed_flags", typed)


def add_alias(p: argparse.ArgumentParser, old: str, new: str) -> None:
    """An old spelling of `new` (an option already added): hidden from --help, it still works and says
    it is now `new` in one line."""
    target = next(a for a in p._actions if new in a.option_strings)
    p.add_argument(old, dest=target.dest, type=target.type, default=None, help=argparse.SUPPRESS,
                   action=_Renamed, new=new)


def typed_flags(args: argparse.Namespace) -> dict[str, str]:
    """Setting -> the old flag the user typed for it (errors name it as typed); empty when none was."""
    return dict(getattr(args, "typed_flags", None) or {})

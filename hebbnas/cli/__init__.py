"""The `hebbnas` command: parse, call the core, print. One module per subcommand.

Every user mistake, argparse's own included, surfaces as one line on stderr,
``hebbnas <command>: error: <message>``, with exit code 2; nothing below this layer prints.
Subcommand modules are imported when the parser is built, but they import torch, Ray and pandas only
inside their handlers, so `hebbnas show` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from hebbnas.errors import HebbnasError

COMMANDS = ("show", "train", "probe", "report", "search", "export")


class Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error form instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    p = Parser(prog="hebbnas", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"hebbnas.cli.{name}").register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage mistake, already printed as one line (2)
        return e.code if isinstance(e.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except HebbnasError as e:
        print(f"hebbnas {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `hebbnas report RUN | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"hebbnas {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

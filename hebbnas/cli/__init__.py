"""The `hebbnas` command: parse, call the core, print. One module per subcommand.

Every user mistake, argparse's own included, surfaces as one line on stderr,
``hebbnas <command>: error: <message>``, with exit code 2; nothing below this layer prints.
Only the command being run registers its options (some defaults and choices come from the core); the
others are listed by name and one-line help, so `hebbnas show` never imports torch, Ray or pandas.
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


def build_parser(only: str | None = None, full: bool = False) -> argparse.ArgumentParser:
    """One command's options (`only`) and the others' names; without a command, every command's name and
    one-line help only, so `hebbnas --help` imports no command's dependencies (torch, Ray, pandas).
    `full` registers every command's options (the tests read them)."""
    import importlib

    p = Parser(prog="hebbnas", description="GoogLeNet Inception widths derived from activation correlations, "
               "under a hard multiply-add budget.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        mod = importlib.import_module(f"hebbnas.cli.{name}")
        if full or only == name:
            mod.register(sub)
        else:
            sub.add_parser(name, help=mod.HELP, add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        words = list(sys.argv[1:] if argv is None else argv)
        only = words[0] if words and words[0] in COMMANDS else None
        args = build_parser(only).parse_args(words)
        args.argv = words  # what the user typed: errors name the flag as typed (old spellings included)
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

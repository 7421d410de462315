"""`hebbnas report`: print the cluster-to-branch report of a probe folder or a search run again."""

from __future__ import annotations

import argparse


HELP = "print the cluster-to-branch report of a probe folder or a search run"


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "report", help=HELP,
                       description="Print the cluster-to-branch report of a `hebbnas probe` folder, a run folder "
                       "(every round) or a report folder.")
    r.add_argument("run", help="a `hebbnas probe --out` folder, a run folder, or a report folder")
    r.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from hebbnas.report import read_report

    print(read_report(args.run))
    return 0

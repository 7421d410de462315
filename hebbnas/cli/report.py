"""`hebbnas report`: print the cluster-to-branch report of a probe folder or a search run again, or
write the run's report page (`--html`)."""

from __future__ import annotations

import argparse

from hebbnas.cli.common import add_out_option

HELP = "print the cluster-to-branch report of a probe folder or a search run, or write its report page"


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "report", help=HELP,
                       description="Print the cluster-to-branch report of a `hebbnas probe` folder, a run folder "
                       "(every round) or a report folder; with --html, write one self-contained page instead.")
    r.add_argument("run", help="a `hebbnas probe --out` folder, a run folder, or a report folder")
    r.add_argument("--html", action="store_true",
                   help="write RUN/report.html: settings, trials, accuracy vs MACs and params with the Pareto front, "
                   "and each round's cluster-to-branch tables and plots, images embedded (one file to share)")
    add_out_option(r, "with --html: the page to write (default RUN/report.html)")
    r.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from hebbnas.errors import HebbnasError

    if args.html:
        from hebbnas.report import write_html_report

        path = write_html_report(args.run, args.out)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB, self-contained: open it in a browser)")
        return 0
    if args.out:
        raise HebbnasError("--out goes with --html (the printed report has no file)")
    from hebbnas.report import read_report

    print(read_report(args.run))
    return 0

"""`hebbnas probe`: seed -> train -> probe -> cluster -> derive -> fit, written as a report.

The proxy (data set, resolutions, probe images, seed epochs, recipe) comes from the space exactly as a
search takes it, and the seed -> train -> probe step is the search's own (`hebbnas.pipeline`), so this
command shows what a search's first round would probe. The work is `hebbnas.probe(...)` (`hebbnas.api`);
this module parses and prints.
"""

from __future__ import annotations

import argparse

from hebbnas.cli.common import add_out_option, add_proxy_options, proxy_options, typed_flags
from hebbnas.layout import PROBE_REPORT, PROBE_STATS, PROBE_TOPOLOGY


HELP = "train a seed, probe it, derive and fit widths, write the cluster-to-branch report"


def register(sub: argparse._SubParsersAction) -> None:
    from hebbnas.derive import ALLOCATIONS, Policy
    from hebbnas.policies import ENERGIES

    d = Policy()
    p = sub.add_parser(
        "probe", help=HELP,
                       description="Train the space's base (fitted to the budget) briefly, probe every Inception "
                       "input, cluster, derive the widths and fit them to the budget. Proxy settings default "
                       "to the space's, as in a search (the same options as `hebbnas search`).")
    p.add_argument("--budget", required=True, help="MACs per image at the space's deploy shape, e.g. 1.5e9")
    add_out_option(p, "output folder (created; must not exist or be empty)", required=True)
    p.add_argument("--space", default="googlenet", help="search space name or YAML path (default googlenet)")
    add_proxy_options(p, "probe")
    p.add_argument("--policy", default=d.allocation, choices=ALLOCATIONS,
                   help=f"derivation policy (default {d.allocation}): clusters decide module widths and branch "
                   "split; split: the branch split only; pca: principal components of each module's input decide "
                   "its width, clusters the split; redundancy: MACs move from the modules with the most redundant "
                   "input to the least, from the seed's widths")
    p.add_argument("--energy", type=float, default=d.energy,
                   help=f"pca: variance share the counted components hold (default {d.energy:g}; "
                   f"offered {' and '.join(f'{e:g}' for e in ENERGIES)})")
    p.add_argument("--steps", type=int, default=d.steps,
                   help=f"redundancy: moves of --step-share of the Inception MACs each (default {d.steps})")
    p.add_argument("--step-share", type=float, default=d.step_share,
                   help=f"redundancy: share of the Inception MACs one move takes (default {d.step_share:g})")
    p.add_argument("--method", default=d.method, choices=("average", "complete", "spectral"),
                   help=f"clustering method (default {d.method})")
    p.add_argument("--threshold", type=float, default=d.threshold,
                   help=f"linkage cut of 1-|r| in (0, 1) (default {d.threshold})")
    p.add_argument("--partial", action="store_true", help="remove the common activity level before clustering")
    p.add_argument("--scale-cut", type=float, default=d.scale_cut,
                   help=f"ring/centre correlation above which a cluster is spatial (default {d.scale_cut})")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice; a search "
                   "gives each trial --cpus-per-trial threads)")
    p.add_argument("--smoke", action="store_true", help="tiny and quick, as `hebbnas search --smoke` probes")
    p.set_defaults(func=cmd_probe)


def cmd_probe(args: argparse.Namespace) -> int:
    """`hebbnas.probe(...)` with the command's options (`hebbnas.api.run_probe`), then the report and a summary."""
    from hebbnas.api import run_probe
    from hebbnas.report import read_report

    r = run_probe(args.budget, args.out, args.space, args.smoke, method=args.method, threshold=args.threshold,
                  partial=args.partial, scale_cut=args.scale_cut, threads=args.threads, options=proxy_options(args),
                  flags=typed_flags(args), policy=args.policy, energy=args.energy, steps=args.steps,
                  step_share=args.step_share)
    s = r.summary
    print(read_report(r.report))
    print(f"derived topology: MACs {s['macs']:,} ({s['macs'] / s['budget']:.1%} of the budget), "
          f"params {s['params']:,}; seed val acc {s['seed_val_accuracy']:.3f}; "
          f"train {s['train_seconds']}s, probe {s['probe_seconds']}s, "
          f"derive+fit {s['derive_fit_seconds']}s")
    print(f"wrote {r.out}/{PROBE_TOPOLOGY}, {r.out}/{PROBE_STATS}, {r.out}/{PROBE_REPORT}/")
    return 0

"""`hebbnas probe`: seed -> train -> probe -> cluster -> derive -> fit, written as a report.

The proxy (data set, resolutions, probe images, seed epochs, recipe) comes from the space exactly as a
search takes it, and the seed -> train -> probe step is the search's own (`hebbnas.pipeline`), so this
command shows what a search's first round would probe.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from hebbnas.cli.common import add_alias, add_data_options, add_out_option, check_out_folder, check_threads, typed_flags


HELP = "train a seed, probe it, derive and fit widths, write the cluster-to-branch report"


def register(sub: argparse._SubParsersAction) -> None:
    from hebbnas.derive import ALLOCATIONS, Policy
    from hebbnas.policies import ENERGIES

    d = Policy()
    p = sub.add_parser(
        "probe", help=HELP,
                       description="Train the space's base (fitted to the budget) briefly, probe every Inception "
                       "input, cluster, derive the widths and fit them to the budget. Proxy settings default "
                       "to the space's, as in a search.")
    p.add_argument("--budget", required=True, help="MACs per image at the space's deploy shape, e.g. 1.5e9")
    add_out_option(p, "output folder (created; must not exist or be empty)", required=True)
    p.add_argument("--space", default="googlenet", help="search space name or YAML path (default googlenet)")
    add_data_options(p)
    p.add_argument("--resolution", type=int, default=None, help="seed training resolution in px (default: the space's)")
    p.add_argument("--probe-resolution", type=int, default=None, help="probe resolution in px (default: the space's)")
    p.add_argument("--probe-images", type=int, default=None, help="images probed (default: the space's)")
    p.add_argument("--train-subset", type=int, default=None, help="use only this many training images")
    p.add_argument("--seed-epochs", type=int, default=None,
                   help="seed training epochs (default: the space's proxy.seed_epochs)")
    add_alias(p, "--epochs", "seed_epochs", int)
    p.add_argument("--proxy-width", dest="width", type=float, default=None,
                   help="width proxy: train and probe the seed's narrowed copy, e.g. 0.25 (default: the space's, 1)")
    add_alias(p, "--width", "width", float)
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
    p.add_argument("--seed", type=int, default=None, help="seeds data split, initialisation and order (default 0)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--smoke", action="store_true", help="tiny and quick, as `hebbnas search --smoke` probes")
    p.set_defaults(func=cmd_probe)


def cmd_probe(args: argparse.Namespace) -> int:
    from hebbnas.derive import Policy, derive, fit
    from hebbnas.pipeline import check_budget, load_data, recipe, seed_and_probe, seed_topology
    from hebbnas.topology import proxy_network
    from hebbnas.probe import save_probe
    from hebbnas.progress_bar import wanted
    from hebbnas.report import read_report, write_report
    from hebbnas.search.settings import parse_budget, resolve_proxy
    from hebbnas.space import load_space

    budget = parse_budget(args.budget)
    check_threads(args.threads)
    out = Path(args.out)
    check_out_folder(out)
    space = load_space(args.space)
    options = {"dataset": args.dataset, "data_dir": args.data_dir, "resolution": args.resolution,
               "probe_resolution": args.probe_resolution, "probe_images": args.probe_images,
               "train_subset": args.train_subset, "seed_epochs": args.seed_epochs, "seed": args.seed,
               "width": args.width}
    flags = {"width": "--proxy-width", **typed_flags(getattr(args, "argv", sys.argv[1:]), {"seed_epochs": ("--seed-epochs", "--epochs"),
                                                                   "width": ("--proxy-width", "--width")})}
    s = resolve_proxy(space, options, smoke=args.smoke, flags=flags)
    check_budget(budget, space, s.dataset)  # a budget below the irreducible cost fails before the data loads
    policy = Policy(method=args.method, threshold=args.threshold, partial=args.partial, scale_cut=args.scale_cut,
                    allocation=args.policy, energy=args.energy, steps=args.steps, step_share=args.step_share)
    progress = wanted()  # bars on a terminal; plain lines in a log, a pipe or CI
    data, probe_data = load_data(s, space, progress=progress)
    seed = seed_topology(budget, space, data.num_classes)
    deploy = space.deploy_input
    proxy = f" as its {s.width:g}-width copy" if s.width < 1 else ""
    print(f"seed {seed.name}: MACs {seed.macs(deploy):.4g} at {'x'.join(map(str, deploy))}, training{proxy} "
          f"{s.seed_epochs} epoch(s) on {data.name} at {s.resolution}px, probing {s.probe_images} images at "
          f"{s.probe_resolution}px", flush=True)
    t0 = time.perf_counter()
    probe_x = probe_data.train.x[: s.probe_images].contiguous()
    train = {**recipe(space), "epochs": s.seed_epochs, "seed": s.seed}
    probed = proxy_network(seed, s.width)  # with a width proxy, its narrowed copy trains and is probed
    probe, info = seed_and_probe(probed, data, probe_x, train=train, state_dict=None, threads=args.threads,
                                 seed=s.seed, progress=progress)
    t1 = time.perf_counter()
    derivation = derive(probed, probe, policy, name=f"{space.base.name}-{_suffix(policy.allocation)}")
    fitted = fit(derivation.topology, budget, deploy, multiple=space.width_multiple, name=derivation.topology.name)
    t2 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    save_probe(probe, out / "probe.npz")
    (out / "topology.json").write_text(fitted.to_json())
    (out / "seed_topology.json").write_text(probed.to_json())
    correlations = {m.name: probe.modules[m.name].correlation(remove_common=policy.partial) for m in probed.modules}
    write_report(out / "report", derivation, fitted, correlations, deploy, budget,
                 title=f"cluster-to-branch report: {data.name}, budget {budget:.4g} MACs")
    summary = {"train_seconds": round(info.get("seed_seconds", 0.0), 2),
               "probe_seconds": round(info["probe_seconds"], 2), "derive_fit_seconds": round(t2 - t1, 3),
               "total_seconds": round(time.perf_counter() - t0, 2), "seed_val_accuracy": info.get("seed_val_acc"),
               "resolution": s.resolution, "probe_resolution": s.probe_resolution,
               "probe_images": info["probe_images"], "seed_epochs": s.seed_epochs, "width": s.width, "budget": budget,
               "input": list(deploy), "macs": fitted.macs(deploy), "params": fitted.params(),
               "policy": dataclasses.asdict(policy), "settings": s.to_dict()}
    (out / "probe.json").write_text(json.dumps(summary, indent=2))
    print(read_report(out / "report"))
    print(f"derived topology: MACs {summary['macs']:,} ({summary['macs'] / budget:.1%} of the budget), "
          f"params {summary['params']:,}; seed val acc {summary['seed_val_accuracy']:.3f}; "
          f"train {summary['train_seconds']}s, probe {summary['probe_seconds']}s, "
          f"derive+fit {summary['derive_fit_seconds']}s")
    print(f"wrote {out}/topology.json, {out}/probe.npz, {out}/report/")
    return 0


def _suffix(allocation: str) -> str:
    """The derived topology's name: `<base>-hebbian` for the cluster policies (as before), else the policy's."""
    return "hebbian" if allocation in ("clusters", "split") else allocation

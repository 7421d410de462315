"""`hebbnas probe` and `hebbnas report`: seed -> train -> probe -> cluster -> derive -> fit -> report."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hebbnas.errors import HebbnasError


def parse_budget(text: str) -> float:
    """'1.5e9' -> 1.5e9; anything else is a one-line error, not an argparse traceback."""
    try:
        value = float(text)
    except ValueError:
        raise HebbnasError(f"--budget must be a positive number of MACs, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise HebbnasError(f"--budget must be a positive number of MACs, got {text!r}")
    return value


def cmd_probe(args: argparse.Namespace) -> int:
    import torch

    from hebbnas.data import load_dataset
    from hebbnas.derive import Policy, fit
    from hebbnas.pipeline import derive_and_fit, train_and_probe
    from hebbnas.probe import save_probe
    from hebbnas.report import write_report
    from hebbnas.space import load_space
    from hebbnas.train import TrainConfig

    budget = parse_budget(args.budget)
    policy = Policy(method=args.method, threshold=args.threshold, partial=args.partial, scale_cut=args.scale_cut)
    space = load_space(args.space)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise HebbnasError(f"output folder {out} exists and is not empty; choose another --out")
    if args.threads:
        torch.set_num_threads(args.threads)
    proxy = space.proxy
    dataset = args.dataset or proxy.get("dataset", "digits")
    seed_topology = fit(space.base, budget, space.deploy_input, multiple=space.width_multiple,
                        name=f"{space.base.name}-seed")  # raises on a budget below the irreducible cost
    data = load_dataset(dataset, data_dir=args.data_dir, resolution=args.resolution, channels=space.base.in_channels,
                        seed=args.seed, train_subset=args.train_subset)
    probe_res = args.probe_resolution or int(proxy.get("probe_scale", 2) * data.resolution)
    epochs = args.epochs if args.epochs is not None else int(proxy.get("seed_epochs", 3))
    cfg = TrainConfig(epochs=epochs, seed=args.seed)
    print(f"seed {seed_topology.name}: MACs {seed_topology.macs(space.deploy_input):.4g} at "
          f"{'x'.join(map(str, space.deploy_input))}, training {epochs} epochs on {data.name} at {data.resolution}px")
    t0 = time.perf_counter()
    outcome = train_and_probe(seed_topology, data, cfg, probe_resolution=probe_res,
                              probe_images_count=args.probe_images)
    t1 = time.perf_counter()
    derivation, fitted = derive_and_fit(outcome.topology, outcome.probe, policy, budget, space.deploy_input,
                                        multiple=space.width_multiple, name=f"{space.base.name}-hebbian")
    t2 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    save_probe(outcome.probe, out / "probe.npz")
    (out / "topology.json").write_text(fitted.to_json())
    (out / "seed_topology.json").write_text(outcome.topology.to_json())
    correlations = {m.name: outcome.probe.modules[m.name].correlation(remove_common=policy.partial)
                    for m in outcome.topology.modules}
    write_report(out / "report", derivation, fitted, correlations, space.deploy_input, budget,
                 title=f"cluster-to-branch report: {dataset}, budget {budget:.4g} MACs")
    timing = {"train_seconds": round(outcome.train_seconds, 2), "probe_seconds": round(outcome.probe_seconds, 2),
              "derive_fit_seconds": round(t2 - t1, 3), "total_seconds": round(time.perf_counter() - t0, 2),
              "seed_val_accuracy": outcome.train_result.best_val_accuracy, "probe_resolution": probe_res,
              "probe_images": min(args.probe_images, len(data.train.y)), "budget": budget,
              "macs": fitted.macs(space.deploy_input), "params": fitted.params()}
    (out / "probe.json").write_text(json.dumps(timing, indent=2))
    from hebbnas.report import read_report

    print(read_report(out / "report"))
    print(f"derived topology: MACs {timing['macs']:,} ({timing['macs'] / budget:.1%} of the budget), "
          f"params {timing['params']:,}; seed val acc {timing['seed_val_accuracy']:.3f}; "
          f"train {timing['train_seconds']}s, probe {timing['probe_seconds']}s, derive+fit {timing['derive_fit_seconds']}s")
    print(f"wrote {out}/topology.json, {out}/probe.npz, {out}/report/")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from hebbnas.report import read_report

    print(read_report(args.run))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from hebbnas.derive import Policy

    d = Policy()
    p = sub.add_parser("probe", help="train a seed, probe it, derive and fit widths, write the cluster-to-branch report")
    p.add_argument("--space", default="googlenet", help="search space name or YAML path (base topology, deploy shape)")
    p.add_argument("--dataset", default=None, help="proxy data set (default: the space's, digits)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--resolution", type=int, default=None, help="training resolution (default: the data set's)")
    p.add_argument("--probe-resolution", type=int, default=None, help="default: 2x the training resolution")
    p.add_argument("--probe-images", type=int, default=600)
    p.add_argument("--train-subset", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None, help="seed training epochs (default: the space's seed_epochs)")
    p.add_argument("--budget", required=True, help="MACs per image at the deploy shape, e.g. 1.5e9")
    p.add_argument("--method", default=d.method, choices=("average", "complete", "spectral"))
    p.add_argument("--threshold", type=float, default=d.threshold, help="cut of 1-|r| in (0, 1)")
    p.add_argument("--partial", action="store_true", help="remove the common activity level before clustering")
    p.add_argument("--scale-cut", type=float, default=d.scale_cut)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    p.set_defaults(func=cmd_probe)

    r = sub.add_parser("report", help="print the cluster-to-branch report of a probe folder or a search run")
    r.add_argument("run", help="a `hebbnas probe --out` folder, a run folder, or a report folder")
    r.set_defaults(func=cmd_report)

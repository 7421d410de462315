"""Probe + cluster + derive of a full GoogLeNet vs one training epoch on the same images, in one run.

    python analysis/bench_probe_epoch.py [--images 2000] [--resolution 64] [--dataset fashion-mnist]

Prints both wall times and their ratio (the probe should cost less than one epoch).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from hebbnas.data import Split, load_dataset
from hebbnas.derive import Policy, derive, fit
from hebbnas.model import build
from hebbnas.pipeline import probe_network
from hebbnas.topology import get_topology
from hebbnas.train import TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--budget", type=float, default=1.5e9)
    args = p.parse_args()
    data = load_dataset(args.dataset, resolution=args.resolution, train_subset=args.images + args.images // 8)
    x, y = data.train.x[: args.images], data.train.y[: args.images]
    data = dataclasses.replace(data, train=Split(x, y))
    topo = fit(get_topology("googlenet"), args.budget).with_classes(data.num_classes)
    model = build(topo)
    t0 = time.perf_counter()
    train(model, data, TrainConfig(epochs=1))
    t_epoch = time.perf_counter() - t0
    t0 = time.perf_counter()
    probe = probe_network(topo, model, data.train.x[: args.images])
    t_probe = time.perf_counter() - t0
    t0 = time.perf_counter()
    d = derive(topo, probe, Policy())
    fit(d.topology, args.budget)
    t_derive = time.perf_counter() - t0
    print(f"{args.dataset}, {len(y)} images at {args.resolution}px, GoogLeNet fitted to {args.budget:.3g} MACs, "
          f"{torch.get_num_threads()} threads")
    print(f"one training epoch (incl. validation): {t_epoch:7.1f} s")
    print(f"probe (rings 0-2, 9 modules):          {t_probe:7.1f} s")
    print(f"cluster + derive + fit:                {t_derive:7.1f} s")
    print(f"probe+cluster+derive / epoch:          {(t_probe + t_derive) / t_epoch:7.2f}x")


if __name__ == "__main__":
    main()

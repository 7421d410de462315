"""The hebbian steps shared by `hebbnas probe` and the search: seed, train, probe, derive, fit.

Pure values in, values out; the CLI and the search decide what gets written where.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hebbnas.data import Dataset
from hebbnas.derive import Derivation, Policy, derive, fit
from hebbnas.model import build
from hebbnas.probe import ProbeResult, probe_model
from hebbnas.topology import Topology
from hebbnas.train import TrainConfig, TrainResult, train


@dataclass(frozen=True)
class ProbeOutcome:
    """A trained network and what its probe said."""

    topology: Topology
    model: nn.Module
    train_result: TrainResult
    probe: ProbeResult
    probe_resolution: int
    train_seconds: float
    probe_seconds: float


def probe_images(x: torch.Tensor, resolution: int, batch_size: int = 100) -> Iterator[torch.Tensor]:
    """Batches of `x` (N, C, R, R) resized to the probe resolution (bilinear), for `probe_model`."""
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size]
        if xb.shape[-1] != resolution or xb.shape[-2] != resolution:
            xb = F.interpolate(xb, size=(resolution, resolution), mode="bilinear", align_corners=False)
        yield xb


def probe_network(
    topology: Topology,
    model: nn.Module,
    data: Dataset,
    *,
    resolution: int,
    images: int = 600,
    batch_size: int = 100,
) -> ProbeResult:
    """Probe every Inception input of a trained model on the first `images` training images.

    The model is fully convolutional, so it can be probed at a larger resolution than it was trained
    at: that gives the deep modules maps large enough for spatial offsets to mean something.
    """
    x = data.train.x[:images]
    dev = next(model.parameters()).device
    batches = (xb.to(dev) for xb in probe_images(x, resolution, batch_size))
    return probe_model(model, batches, topology.module_names, topology_hash=topology.hash())


def train_and_probe(
    topology: Topology,
    data: Dataset,
    config: TrainConfig,
    *,
    probe_resolution: int,
    probe_images_count: int = 600,
) -> ProbeOutcome:
    """Train `topology` briefly on the proxy and probe it (the seed of a hebbian round)."""
    model = build(topology.with_classes(data.num_classes))
    t0 = time.perf_counter()
    result = train(model, data, config)
    t1 = time.perf_counter()
    probe = probe_network(topology.with_classes(data.num_classes), model, data, resolution=probe_resolution,
                          images=probe_images_count)
    t2 = time.perf_counter()
    return ProbeOutcome(topology.with_classes(data.num_classes), model, result, probe, probe_resolution, t1 - t0, t2 - t1)


def derive_and_fit(
    probed: Topology,
    probe: ProbeResult,
    policy: Policy,
    budget: float,
    deploy_input: tuple[int, int, int],
    *,
    multiple: int = 8,
    name: str | None = None,
) -> tuple[Derivation, Topology]:
    """Derive widths from the probe and fit them to the budget at the deploy shape."""
    d = derive(probed, probe, policy, name=name)
    return d, fit(d.topology, budget, deploy_input, multiple=multiple, name=d.topology.name)

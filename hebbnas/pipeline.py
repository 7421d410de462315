"""The one seed -> train -> probe path, shared by `hebbnas probe` and every hebbian round of a search.

Pure values in, values out: the caller decides where it runs (in-process for `hebbnas probe`, as a Ray
task for a search) and what gets written where. Given the same settings, both give the same probe.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from hebbnas.errors import HebbnasError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hebbnas.data import Dataset
    from hebbnas.probe import ProbeResult
    from hebbnas.proxy import ProxySettings
    from hebbnas.space import Space
    from hebbnas.topology import Topology

PROBE_BATCH = 64


def load_data(proxy: ProxySettings, space: Space, progress: bool = False) -> tuple[Dataset, Dataset]:
    """The proxy at the training resolution and at the probe resolution (same images, same split)."""
    from hebbnas.data import load_dataset

    kw = dict(data_dir=proxy.data_dir, channels=space.base.in_channels, seed=proxy.seed,
              train_subset=proxy.train_subset, progress=progress, subset_at_most=proxy.smoke)
    data = load_dataset(proxy.dataset, resolution=proxy.resolution, **kw)
    probe_data = data if proxy.probe_resolution == proxy.resolution else load_dataset(
        proxy.dataset, resolution=proxy.probe_resolution, **kw)
    return data, probe_data


def load_final_data(p: ProxySettings, f: Any, space: Space, proxy_data: Dataset | None = None,
                    progress: bool = False) -> Dataset:
    """The final stage's data: the proxy's data set and split seed at the final fidelity's resolution,
    training subset and validation size (`f`, a search's `final_fidelity`; `proxy_data` itself when those
    are the proxy's)."""
    from hebbnas.data import load_dataset

    same = (proxy_data is not None and f.resolution == p.resolution and f.train_subset == p.train_subset
            and f.val_images is None)
    if same:
        return proxy_data
    return load_dataset(p.dataset, data_dir=p.data_dir, resolution=f.resolution,
                        channels=space.base.in_channels, seed=p.seed, train_subset=f.train_subset,
                        val_fraction=f.val_fraction(), progress=progress, subset_at_most=p.smoke)


def seed_topology(budget: float, space: Space, num_classes: int) -> Topology:
    """Round 1's seed: the space's base with the data set's head, fitted to the budget.

    Also the random baseline's reference and the paper baseline; `hebbnas probe` probes the same network.
    Raises HebbnasError (one line) when the budget is below the base's irreducible cost.
    """
    from hebbnas.derive import fit

    return fit(space.base.with_classes(num_classes), budget, space.deploy_input,
               multiple=space.width_multiple, name=f"{space.base.name}-fit")


def check_budget(budget: float, space: Space, dataset: str) -> None:
    """Refuse a budget below the base's irreducible cost before any data loads: with the class count of a
    built-in data set, or one class (the cheapest head) when only the files can tell."""
    from hebbnas.datasets import get_source

    try:
        known = get_source(dataset).classes
    except HebbnasError:  # a name the loader will refuse in its own words
        known = None
    seed_topology(budget, space, len(known) if known else 1)  # your own folder: only its files can tell


def check_threads(n: int) -> int:
    """--threads: 0 is torch's choice, otherwise at least 1."""
    if n < 0:
        raise HebbnasError(f"--threads must be 0 (torch's choice) or a positive number of CPU threads, got {n}")
    return n


def recipe(space: Space, compile_: bool = False, smoke: bool = False) -> dict[str, Any]:
    """The training recipe every network of a search shares (TrainConfig fields but epochs and seed):
    the space's `fixed:` options, the central value of every `train:` knob, and `--compile`. Under `--smoke`
    the memory format is contiguous unless the space fixes one: no timing passes (seconds per unit when a unit
    trains for one), and a smoke run's numbers do not depend on what else the machine is doing."""
    return {**({"channels_last": False} if smoke else {}), **{n: d.default() for n, d in space.train.items()},
            **space.fixed, **({"compile": True} if compile_ else {})}


def probe_batches(x: torch.Tensor, batch_size: int = PROBE_BATCH) -> Iterator[torch.Tensor]:
    """`x` (N, C, H, W) in batches, for `probe_model`."""
    for i in range(0, x.shape[0], batch_size):
        yield x[i:i + batch_size]


def probe_network(topology: Topology, model: nn.Module, x: torch.Tensor, progress: bool = False) -> ProbeResult:
    """Probe every Inception input of a trained model on the images `x`, on the model's device.

    The model is fully convolutional, so `x` may be larger than the training resolution: that gives the
    deep modules maps large enough for spatial offsets to mean something.
    """
    from hebbnas.probe import probe_model
    from hebbnas.progress_bar import bar

    dev = next(model.parameters()).device
    chunks = bar(probe_batches(x), enabled=progress, total=-(-int(x.shape[0]) // PROBE_BATCH), desc="probing",
                 unit="batch")
    return probe_model(model, (xb.to(dev) for xb in chunks), topology.module_names, device=dev,
                       topology_hash=topology.hash())


def seed_and_probe(topology: Topology, dataset: Dataset | None, probe_x: torch.Tensor, *,
                   train: Mapping[str, Any] | None, state_dict: Mapping[str, Any] | None,
                   threads: int, seed: int, progress: bool = False) -> tuple[ProbeResult, dict[str, Any]]:
    """Train `topology` per `train` (TrainConfig fields) or load `state_dict`, then probe it on `probe_x`.

    Returns the probe and what happened (seed accuracy, epochs, seconds), for the report and config.
    """
    import torch

    from hebbnas.model import build
    from hebbnas.train import TrainConfig, resolve_device
    from hebbnas.train import train as train_loop

    if threads:
        torch.set_num_threads(threads)
    info: dict[str, Any] = {}
    torch.manual_seed(seed)
    if state_dict is None:
        if dataset is None or train is None:
            raise HebbnasError("the seed network needs a dataset and a training recipe")
        model = build(topology)
        t0, c0 = time.perf_counter(), time.process_time()
        res = train_loop(model, dataset, TrainConfig.from_dict(dict(train)), progress=progress)
        info = {"seed_val_acc": res.val_accuracy, "seed_epochs": res.epochs_run,
                "seed_seconds": time.perf_counter() - t0, "seed_cpu_seconds": time.process_time() - c0}
    else:
        model = build(topology, aux=False)
        model.load_state_dict(dict(state_dict))
    model.to(resolve_device("auto"))
    t0 = time.perf_counter()
    probe = probe_network(topology, model, probe_x, progress=progress)
    info["probe_seconds"] = time.perf_counter() - t0
    info["probe_images"] = int(len(probe_x))
    return probe, info

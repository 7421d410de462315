"""Probing a network: forward pre-hooks feed one `CorrelationStats` per named module while the model runs
over the batches; the hooks and the training flag are restored afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from hebbnas.errors import HebbnasError
from hebbnas.probe.accumulator import CorrelationStats
from hebbnas.probe.stats import ModuleStats, ProbeResult


def _first_tensor(batch: object) -> torch.Tensor:
    """Inputs of a batch: the tensor itself, or the first element of an (inputs, labels) pair."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise HebbnasError(f"expected batches of tensors or (inputs, labels) pairs, got {type(batch).__name__}")


def probe_model(
    model: nn.Module,
    batches: Iterable[object],
    module_names: Sequence[str],
    device: torch.device | str | None = None,
    *,
    topology_hash: str = "",
    rings: bool = True,
    chunk_positions: int | None = None,
) -> ProbeResult:
    """Record the input statistics of the named submodules while ``model`` runs over ``batches``.

    The model runs in eval mode under ``torch.no_grad()``; its training flag and the hooks are
    restored/removed afterwards, also when a batch raises.

    Args:
        model: network whose submodules ``module_names`` receive (B, C, H, W) inputs.
        batches: iterable of input tensors or (inputs, labels) pairs.
        module_names: names for ``model.get_submodule`` (e.g. "inception4c").
        device: where the batches are sent; default the model's parameter device (CPU when it has
            none). The model itself must already be there.
        topology_hash: the caller's topology identity, stored in the result.
        rings: also measure the spatial-offset rings.
        chunk_positions: see :class:`CorrelationStats`.
    """
    if not module_names:
        raise HebbnasError("probe_model needs at least one module name")
    if len(set(module_names)) != len(module_names):
        raise HebbnasError(f"duplicate module names: {list(module_names)}")
    param = next(iter(model.parameters()), None)
    model_dev = param.device if param is not None else None
    dev = torch.device(device) if device is not None else (model_dev or torch.device("cpu"))
    if model_dev is not None and model_dev.type != dev.type:
        raise HebbnasError(f"model is on {model_dev} but device={dev}: move the model there first")
    modules: dict[str, nn.Module] = {}
    for name in module_names:
        try:
            modules[name] = model.get_submodule(name)
        except AttributeError:
            raise HebbnasError(f"model has no submodule named {name!r}") from None
    stats = {
        name: CorrelationStats(rings=rings, chunk_positions=chunk_positions, name=name) for name in module_names
    }

    def make_hook(name: str) -> Callable[[nn.Module, tuple], None]:
        def hook(module: nn.Module, args: tuple) -> None:
            if not args or not isinstance(args[0], torch.Tensor):
                raise HebbnasError(f"{name}: forward input is not a tensor")
            stats[name].update(args[0])

        return hook

    was_training = model.training
    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_pre_hook(make_hook(name)))
        model.eval()
        with torch.no_grad():
            for batch in batches:
                model(_first_tensor(batch).to(dev))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    out: dict[str, ModuleStats] = {}
    for name in module_names:
        if stats[name].n == 0:
            raise HebbnasError(f"{name}: received no activations (empty batches or module not used)")
        out[name] = stats[name].finalize()
    return ProbeResult(modules=out, topology_hash=topology_hash)

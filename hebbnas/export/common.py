"""What every export format shares: the model a file must reproduce, example inputs, quiet exporters,
the input sizes an export accepts."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hebbnas.errors import HebbnasError, one_line
from hebbnas.model import GoogLeNet, build, inference_state_dict
from hebbnas.topology import Topology, parse_input_shape


def inference_copy(model: nn.Module) -> GoogLeNet:
    """A fresh aux-free eval-mode copy, so the export carries no aux weights and the caller's model is untouched."""
    topology: Topology = model.topology  # type: ignore[assignment]
    return model_from(topology, inference_state_dict(model), "the model")


def model_from(topology: Topology, state_dict: Mapping[str, torch.Tensor], where: str) -> GoogLeNet:
    """The inference `GoogLeNet` (no aux heads, eval mode) of `topology` with these weights."""
    model = build(topology, aux=False)
    sd = {k: v for k, v in state_dict.items() if not k.startswith("aux")}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise HebbnasError(f"weights in {where} do not fit its topology: {one_line(e)}") from None
    return model.eval()


def topology_from(d: Any, where: Path) -> Topology:
    if isinstance(d, str):
        return Topology.from_json(d)
    try:
        return Topology.from_dict(d)
    except HebbnasError as e:
        raise HebbnasError(f"{where}: {e}") from None


def torch_load(path: Path) -> Any:
    """`torch.load` restricted to tensors and plain types: exports and checkpoints never need code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  # unpickling fails in many ways; all mean "unreadable"
        raise HebbnasError(f"cannot read {path}: {one_line(e)}") from None


def example(batch: int, shape: tuple[int, ...]) -> torch.Tensor:
    """A seeded random batch: the same inputs for the exported file and the eager model."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, *shape, generator=g)


def dynamic(min_hw: int, max_hw: int | None, multiple: int) -> dict[str, Any]:
    """The metadata's statement of which input sizes the export accepts."""
    hw = {"min": min_hw, "max": max_hw, "multiple_of": multiple}
    return {"batch": {"min": 1, "max": None}, "height": dict(hw), "width": dict(hw)}


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """torch logs sympy tracebacks it recovers from while solving shape constraints; keep the CLI clean."""
    logger = logging.getLogger("torch.fx.experimental.symbolic_shapes")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(old)


def shape_or_none(v: Any) -> tuple[int, int, int] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return parse_input_shape(v)
    try:
        shape = tuple(int(x) for x in v)
    except (TypeError, ValueError):
        return None
    return shape if len(shape) == 3 and min(shape) > 0 else None  # type: ignore[return-value]


"""Loading any export back: an inference module (`load`), a trainable GoogLeNet (`load_trainable`), or
the metadata it carries (`read_metadata`), for every registered format, a run checkpoint or a run folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from hebbnas.errors import HebbnasError, one_line
from hebbnas.export.common import topology_from
from hebbnas.export.formats import detect_format, get_format
from hebbnas.export.metadata import make_metadata
from hebbnas.export.source import find_source, source_from_checkpoint
from hebbnas.layout import METRICS
from hebbnas.model import GoogLeNet, build


def load(path: str | os.PathLike[str]) -> nn.Module:
    """An eval-mode inference module from any export, a run checkpoint (``best/model.pt``) or a run folder.

    pt2 gives `torch.export`'s module (its `train()` raises; the graph is inference only), TorchScript a
    `ScriptModule`, ONNX an onnxruntime session behind `nn.Module`, state_dict and checkpoints a
    `GoogLeNet` (no aux heads). For a trainable `GoogLeNet` from any format, use `load_trainable`.
    """
    p = Path(path)
    if not p.exists():
        raise HebbnasError(f"{p}: no such file")
    if p.is_dir():
        return find_source(p).model()
    return get_format(detect_format(p)).load(p)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of any export (or a state_dict's JSON), a checkpoint or a run folder."""
    p = Path(path)
    if not p.exists():
        raise HebbnasError(f"{p}: no such file")
    if p.is_dir():
        src = find_source(p)
        return make_metadata(src.topology, src.metrics, src.input_shape(), None, src)
    if p.suffix == ".json":
        try:
            obj = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise HebbnasError(f"cannot read {p}: {one_line(e)}") from None
        if not isinstance(obj, dict) or "topology" not in obj:
            raise HebbnasError(f"{p} is not hebbnas export metadata")
        return obj
    fmt = get_format(detect_format(p))
    try:
        return fmt.metadata(p)
    except HebbnasError:
        if fmt.name != "state_dict":
            raise
    src = source_from_checkpoint(p, run=None, metrics_json=p.parent / METRICS)  # a run checkpoint
    return make_metadata(src.topology, src.metrics, src.input_shape(), None, src)


def load_trainable(path: str | os.PathLike[str], aux: bool = False) -> GoogLeNet:
    """A `GoogLeNet` with the exported weights, for fine-tuning (aux heads, if asked, start untrained).

    Works for every format that keeps `hebbnas.build`'s module names (pt2, TorchScript, state_dict): the
    topology comes from the metadata, the weights from the file. Returned in eval mode.
    """
    p = Path(path)
    meta = read_metadata(p)
    topology = topology_from(meta["topology"], p)
    weights = p.with_suffix(".pt") if p.suffix == ".json" else p
    sd = get_format(detect_format(weights)).state_dict(weights)
    model = build(topology, aux=aux)
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:
        raise HebbnasError(f"weights of {p} do not fit its topology: {one_line(e)}") from None
    missing = [k for k in missing if not k.startswith("aux")]
    if missing or unexpected:
        raise HebbnasError(f"weights of {p} do not fit its topology (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()

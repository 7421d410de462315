"""The metadata every export carries: what a deployer needs to know, as plain JSON types."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from hebbnas.export.formats import get_format
from hebbnas.plain import plain
from hebbnas.topology import DEFAULT_INPUT, Topology, min_input_size

if TYPE_CHECKING:
    from hebbnas.export.source import Source


def make_metadata(
    topology: Topology,
    metrics: Mapping[str, Any] | None = None,
    input_shape: tuple[int, int, int] | None = None,
    fmt: str | None = None,
    source: Source | None = None,
) -> dict[str, Any]:
    """Everything a deployer needs to know about an export, as plain JSON types."""
    from hebbnas import __version__

    m = plain(dict(metrics or {}))
    cfg = (source.config if source else None) or {}
    settings = cfg.get("settings") if isinstance(cfg.get("settings"), Mapping) else {}
    proxy = next((p for p in (cfg.get("proxy"), settings.get("proxy")) if isinstance(p, Mapping)), {})
    shape = input_shape or (topology.in_channels, *DEFAULT_INPUT[1:])
    meta: dict[str, Any] = {
        "format": fmt,
        "load": get_format(fmt).load_hint if fmt else None,
        "hebbnas_version": __version__,
        "torch_version": str(torch.__version__),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "name": topology.name,
        "topology_hash": topology.hash(),
        "input": list(shape),
        "macs": topology.macs(shape),
        "params": topology.params(),
        "num_classes": topology.num_classes,
        "min_input_size": min_input_size(topology),
        "dynamic": None,
        "dataset": m.get("dataset", proxy.get("dataset")),
        "resolution": m.get("resolution", proxy.get("resolution")),
        "val_acc": m.get("val_acc"),
        "test_acc": m.get("test_acc"),
        "mean": m.get("mean"),
        "std": m.get("std"),
        "normalize": "x in [0, 1], NCHW float32, then (x - mean) / std per channel",
        "source": {
            "run": None if source is None or source.run is None else str(source.run),
            "checkpoint": None if source is None else str(source.checkpoint),
            "trial_id": m.get("trial_id", None if source is None else source.trial_id),
        },
        "metrics": m,
        "topology": topology.to_dict(),
    }
    return plain(meta)


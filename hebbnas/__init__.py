"""hebbnas: GoogLeNet Inception widths derived from activation correlations, under a MAC budget."""

from __future__ import annotations

from typing import Any

from hebbnas.errors import HebbnasError
from hebbnas.topology import InceptionSpec, Topology, get_topology, load_topology

__version__ = "0.1.0"
__all__ = [
    "HebbnasError",
    "InceptionSpec",
    "Topology",
    "build",
    "cluster_correlation",
    "get_topology",
    "load",
    "load_topology",
]


def __getattr__(name: str) -> Any:
    # heavier pieces load on first use, so `import hebbnas` stays quick
    if name == "build":
        from hebbnas.model import build

        return build
    if name == "cluster_correlation":
        from hebbnas.cluster import cluster_correlation

        return cluster_correlation
    if name == "load":
        from hebbnas.export import load

        return load
    raise AttributeError(f"module 'hebbnas' has no attribute {name!r}")

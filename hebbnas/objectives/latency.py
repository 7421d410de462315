"""latency: milliseconds per image (batch 1) of the full-width candidate at the deploy shape, measured where
the trial runs before it trains; budgeted by ``--latency-budget`` (a slower candidate never trains)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hebbnas import atomic
from hebbnas.objectives import Objective, register

if TYPE_CHECKING:
    from hebbnas.topology import Topology


@register
class Latency(Objective):
    name = "latency"
    order = 10
    key = "latency_ms"
    unit = "ms"
    columns = ("latency_ms", "latency_iqr_ms", "latency_runtime", "latency_threads", "latency_device")
    budget_setting = "latency_budget"

    def measure(self, topology: Topology, deploy_input: tuple[int, int, int], threads: int,
                cache: str | None) -> dict[str, Any]:
        """Median and IQR of `hebbnas.latency.measure`, and where it ran; cached per topology hash and
        machine in `cache` (the run's latency/) when that folder is reachable from here."""
        from hebbnas.latency import device_name, measure
        from hebbnas.train import resolve_device

        device = resolve_device("auto")
        key = f"{topology.hash()}-{zlib.crc32(f'{device_name(device)}-{threads}'.encode()):08x}.json"
        path = Path(cache) / key if cache else None
        if path is not None and path.is_file():
            return dict(json.loads(path.read_text()))
        lat = measure(topology, deploy_input, device=str(device))
        out = {"latency_ms": round(lat.median_ms, 4), "latency_iqr_ms": round(lat.iqr_ms, 4),
               "latency_runtime": lat.runtime, "latency_threads": lat.threads, "latency_device": lat.device}
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic.write_text(path, json.dumps(out))
            except OSError:  # another node's folder: measure again next time
                pass
        return out

"""The probe: which channels of each Inception input fire together, recorded while a network runs.

One package, one idea per module:

    stats.py        the values: `ModuleStats` (one module input's statistics) and `ProbeResult` (a network's)
    accumulator.py  `CorrelationStats`, the streaming mean / variance / correlation (rings 0, 1, 2) they come from
    hooks.py        `probe_model`: forward pre-hooks that feed an accumulator per named module
    fileformat.py   `save_probe` / `load_probe` (one ``.npz``, no pickle) and `check_probe_matches`

The probe answers one question per Inception input: which channels fire together, at the same
position (ring 0) and at neighbouring positions (rings 1 and 2, Chebyshev distance 1 and 2). Memory is
O(C^2) whatever the number of images, and the cost is dominated by float32 GEMMs on the activations'
own device (the numerics: `hebbnas.probe.accumulator`).
"""

from __future__ import annotations

from hebbnas.probe.accumulator import CorrelationStats
from hebbnas.probe.fileformat import check_probe_matches, load_probe, save_probe
from hebbnas.probe.hooks import probe_model
from hebbnas.probe.stats import RINGS, ModuleStats, ProbeResult

for _value_type in (ModuleStats, ProbeResult):
    # pickles of a probe (analysis/ caches it with torch.save) name these hebbnas.probe.X, as before the split,
    # so a cache written by this code still loads in older code and the other way round
    _value_type.__module__ = __name__

__all__ = [
    "RINGS",
    "CorrelationStats",
    "ModuleStats",
    "ProbeResult",
    "probe_model",
    "save_probe",
    "load_probe",
    "check_probe_matches",
]

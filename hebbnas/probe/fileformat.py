"""The probe file: one ``.npz`` without pickle (arrays under ``<module>/<field>``, JSON in ``__meta__``),
written atomically and read back with every shape checked; and the check that a probe belongs to a topology.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hebbnas import atomic
from hebbnas.errors import HebbnasError, first_line
from hebbnas.probe.stats import ModuleStats, ProbeResult, readonly

_FORMAT = "hebbnas-probe"
_VERSION = 1


def save_probe(result: ProbeResult, path: str | os.PathLike[str]) -> None:
    """Write a probe as one ``.npz`` (no pickle): arrays under ``<module>/<field>``, JSON in ``__meta__``."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    meta_modules = []
    for name, st in result.modules.items():
        if "/" in name or name == "__meta__":
            raise HebbnasError(f"cannot save module name {name!r}: '/' and '__meta__' are reserved")
        arrays[f"{name}/mean"] = np.asarray(st.mean, dtype=np.float64)
        arrays[f"{name}/var"] = np.asarray(st.var, dtype=np.float64)
        arrays[f"{name}/corr"] = np.asarray(st.corr, dtype=np.float64)
        arrays[f"{name}/dead"] = np.asarray(st.dead, dtype=bool)
        for r, m in st.corr_ring.items():
            if m is not None:
                arrays[f"{name}/corr_ring{r}"] = np.asarray(m, dtype=np.float64)
        meta_modules.append(
            {
                "name": name,
                "channels": st.channels,
                "n": int(st.n),
                "n_images": int(st.n_images),
                "map_size": [int(v) for v in st.map_size],
                "ring_pairs": {str(r): int(v) for r, v in st.ring_pairs.items()},
                "rings": [int(r) for r in st.corr_ring],
            }
        )
    meta = {"format": _FORMAT, "version": _VERSION, "topology_hash": result.topology_hash, "modules": meta_modules}
    arrays["__meta__"] = np.array(json.dumps(meta))
    try:
        with atomic.replacing(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    except OSError as e:
        raise HebbnasError(f"cannot write probe file {path}: {e.strerror or e}") from None


def load_probe(path: str | os.PathLike[str]) -> ProbeResult:
    """Read a probe written by :func:`save_probe`; a missing or corrupt file raises HebbnasError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise HebbnasError(f"cannot read probe file {path}: {e.strerror or e}") from None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(str(arrays.pop("__meta__")))
        if meta.get("format") != _FORMAT or meta.get("version") != _VERSION:
            raise ValueError(f"not a {_FORMAT} v{_VERSION} file")
        modules: dict[str, ModuleStats] = {}
        for m in meta["modules"]:
            name, c = m["name"], int(m["channels"])
            mean, var = arrays[f"{name}/mean"], arrays[f"{name}/var"]
            corr, dead = arrays[f"{name}/corr"], arrays[f"{name}/dead"]
            rings: dict[int, np.ndarray | None] = {}
            for r in m["rings"]:
                key = f"{name}/corr_ring{r}"
                rings[int(r)] = readonly(arrays[key]) if key in arrays else None
            shapes_ok = (
                mean.shape == (c,)
                and var.shape == (c,)
                and dead.shape == (c,)
                and dead.dtype == bool
                and corr.shape == (c, c)
                and all(v is None or v.shape == (c, c) for v in rings.values())
            )
            if not shapes_ok:
                raise ValueError(f"arrays of {name} do not match {c} channels")
            modules[name] = ModuleStats(
                n=int(m["n"]),
                n_images=int(m["n_images"]),
                map_size=(int(m["map_size"][0]), int(m["map_size"][1])),
                mean=readonly(mean),
                var=readonly(var),
                corr=readonly(corr),
                dead=readonly(dead),
                corr_ring=rings,
                ring_pairs={int(r): int(v) for r, v in m["ring_pairs"].items()},
            )
        return ProbeResult(modules=modules, topology_hash=str(meta["topology_hash"]))
    except HebbnasError:
        raise
    except Exception as e:  # zipfile.BadZipFile, KeyError, ValueError, JSON errors, ...
        raise HebbnasError(f"corrupt probe file {path}: {first_line(e)}") from None


def check_probe_matches(result: ProbeResult, topology_hash: str, expected_channels: Mapping[str, int]) -> None:
    """Raise HebbnasError unless the probe was taken on this topology (hash, modules, channel counts)."""
    if result.topology_hash != topology_hash:
        raise HebbnasError(
            f"probe file is from another topology: hash {result.topology_hash!r} != {topology_hash!r}"
        )
    missing = [n for n in expected_channels if n not in result.modules]
    if missing:
        raise HebbnasError(f"probe file is from another topology: modules {missing} were not probed")
    for name, c in expected_channels.items():
        got = result.modules[name].channels
        if got != int(c):
            raise HebbnasError(
                f"probe file is from another topology: {name} has {got} channels, expected {int(c)}"
            )

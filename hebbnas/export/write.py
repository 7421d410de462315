"""Exporting: a run's best model (or any hebbnas model) as one file in a registered format, with its
metadata, checked against the eager model before it is moved into place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from hebbnas.errors import HebbnasError
from hebbnas.export.common import inference_copy, shape_or_none
from hebbnas.export.files import publish, refuse_own_input, resolve_out, staging
from hebbnas.export.formats import get_format
from hebbnas.export.metadata import make_metadata
from hebbnas.export.source import find_source, trial_source
from hebbnas.export.verify import verify as check_file
from hebbnas.plain import plain
from hebbnas.topology import DEFAULT_INPUT, Topology, min_input_size


@dataclass(frozen=True)
class ExportResult:
    """What `export_run`/`export_model` wrote."""

    path: Path
    format: str
    size: int
    metadata: dict[str, Any]
    extra_paths: tuple[Path, ...] = ()
    note: str | None = None
    max_abs_diff: float | None = None
    """The largest |file - eager| over the checked inputs (None when not checked)."""


def export_run(run: str | os.PathLike[str], fmt: str = "pt2", out: str | os.PathLike[str] | None = None, *,
               verify: bool = True, trial: str | None = None) -> ExportResult:
    """Export a run's best model (or its best completed trial, or the trial `trial`) to ``out`` (default
    ``RUN/export/``)."""
    from hebbnas.layout import EXPORT_DIR

    f = get_format(fmt)
    target = resolve_out(Path(out), f.file_name, bool(f.extra_paths(Path("x")))) if out is not None else None
    src = trial_source(run, trial) if trial else find_source(run)
    if target is None:  # fail on a bad path before any work
        base = (src.run if src.run is not None else src.checkpoint.parent) / EXPORT_DIR
        try:
            base.mkdir(exist_ok=True)
        except OSError as e:
            raise HebbnasError(f"cannot create {base}: {e.strerror or e}") from None
        target = resolve_out(base / f.file_name, f.file_name, bool(f.extra_paths(Path("x"))))
    refuse_own_input([target, *f.extra_paths(target)], src.checkpoint)
    meta = make_metadata(src.topology, src.metrics, src.input_shape(), fmt, src)
    res = export_model(src.model(), target, fmt, meta, verify=verify)
    return ExportResult(res.path, res.format, res.size, res.metadata, res.extra_paths, src.note, res.max_abs_diff)


def export_model(model: nn.Module, out: str | os.PathLike[str], fmt: str = "pt2",
                 metadata: Mapping[str, Any] | None = None, *, verify: bool = True) -> ExportResult:
    """Export a hebbnas model (its inference graph) to one file in ``fmt``, atomically, with metadata.

    Args:
        model: a `GoogLeNet` from `hebbnas.build` (aux heads are dropped; the caller's model is untouched).
        out: target file (an existing directory gets the format's default file name).
        fmt: a registered format (`hebbnas.export.formats.names()`).
        metadata: from `make_metadata`; default: built from the model's topology at 3x224x224.
        verify: load the written file back and compare it with the eager model
            (`hebbnas.export.verify`) before it is moved into place; a format whose converter is the least
            proven (onnx: `always_verify`) is always checked.
    """
    f = get_format(fmt)
    target = resolve_out(Path(out), f.file_name, bool(f.extra_paths(Path("x"))))
    topology = getattr(model, "topology", None)
    if not isinstance(topology, Topology):
        raise HebbnasError("export needs a hebbnas model (built by hebbnas.build) so its topology is known")
    meta = dict(metadata) if metadata is not None else make_metadata(topology, fmt=fmt)
    meta["format"], meta["load"] = fmt, f.load_hint
    meta = plain(meta)
    shape = shape_or_none(meta.get("input")) or (topology.in_channels, *DEFAULT_INPUT[1:])
    eager = inference_copy(model)
    worst: float | None = None
    with staging(target) as tmp_dir:
        tmp = tmp_dir / target.name
        extra = f.write(eager, tmp, meta, shape, min_input_size(topology))
        if verify or f.always_verify:
            worst = check_file(eager, f.load(tmp), meta, shape, f.tolerance, what=f"{fmt} file")
        finals = [target.parent / p.name for p in extra]
        for p, final in zip(extra, finals):
            publish(p, final)
        publish(tmp, target)
    return ExportResult(target, fmt, target.stat().st_size, plain(meta), tuple(finals), max_abs_diff=worst)

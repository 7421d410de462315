"""Exports: the best model of a run as a file plain PyTorch (or onnxruntime) can run, and loading any
export back.

Every format writes an inference graph (eval mode, no aux heads) with the metadata a deployer needs
(topology, MACs and params at the deploy shape, proxy dataset and accuracy, input shape, normalisation):
pt2 (`torch.export`, dynamic batch, height and width), torchscript (`torch.jit.trace`), state_dict
(weights + JSON metadata, rebuilt by `hebbnas.load`) and onnx (the optional extra `hebbnas[onnx]`).

One module per idea:

    formats.py     the `Format` interface and its registry (`FORMATS`); detection asks each format
    pt2.py, torchscript.py, state_dict.py, onnx.py     one format each (found by module; add a file)
    source.py      what to export: a run's best, an interrupted run's best trial, a checkpoint
    metadata.py    what every export carries
    verify.py      the one check: the written file reproduces the eager model within its tolerance
    files.py       output paths checked first, atomic writes, never over the input
    write.py       export_run / export_model
    load.py        load / load_trainable / read_metadata

Only the writers and the CLI touch the filesystem. Every file is written in a temporary folder beside
the target, checked by loading it back, then moved into place with `os.replace`, so an error never
leaves a partial file.
"""

from __future__ import annotations

from hebbnas.export.files import format_size
from hebbnas.export.formats import FORMATS, Format, Tolerance, detect_format, get_format, register
from hebbnas.export.load import load, load_trainable, read_metadata
from hebbnas.export.metadata import make_metadata
from hebbnas.export.source import Source, find_source
from hebbnas.export.write import ExportResult, export_model, export_run

__all__ = [
    "FORMATS", "ExportResult", "Format", "Source", "Tolerance", "detect_format", "export_model", "export_run",
    "find_source", "format_size", "get_format", "load", "load_trainable", "make_metadata", "read_metadata", "register",
]

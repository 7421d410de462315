"""Exports: the best model of a run as a file plain PyTorch can run, and loading any export back.

Three formats, all inference graphs (eval mode, no aux heads) with the metadata a deployer needs
(topology, MACs and params at the deploy shape, proxy dataset and accuracy, input shape, normalisation):

- ``pt2``: `torch.export` program (`torch.export.load(path).module()`), dynamic batch, height and width
  (H and W declared as multiples of 32, see `_export_pt2`); metadata in the archive's
  ``extra/hebbnas.json`` (`torch.export.load(path, extra_files=...)`).
- ``torchscript``: `torch.jit.trace` (`torch.jit.load(path)`); the graph has no shape-dependent control
  flow, so one trace serves every batch size and resolution (verified after writing); metadata in
  ``extra/hebbnas.json`` (`torch.jit.load(path, _extra_files=...)`).
- ``state_dict``: a `torch.save`d dict of plain types and tensors (`torch.load(..., weights_only=True)`)
  rebuilt by `hebbnas.load`, plus the same metadata as plain JSON beside it (``model.pt`` + ``model.json``).
- ``onnx``: an ONNX model (opset 17; input ``images`` N x C x H x W, output ``logits``) with a dynamic
  batch, height and width (any H, W >= the stem's minimum), metadata as JSON in its ``metadata_props``
  under ``hebbnas.json``; checked in onnxruntime against the PyTorch model before it is moved into place.
  Needs the optional extra ``pip install 'hebbnas[onnx]'`` (onnx, onnxruntime).

Only this module and the CLI touch the filesystem. Every file is written to a temporary name in the
target directory, checked by loading it back, then moved into place with `os.replace`, so an error
never leaves a partial file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.util
import json
import logging
import math
import os
import tempfile
import types
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hebbnas.errors import HebbnasError
from hebbnas.model import GoogLeNet, build, inference_state_dict
from hebbnas.runfolder import EXPORT_DIR
from hebbnas.topology import DEFAULT_INPUT, Topology, min_input_size, parse_input_shape

TORCH_FORMATS: tuple[str, ...] = ("pt2", "torchscript", "state_dict")
"""The formats plain PyTorch loads (no optional dependency)."""
FORMATS: tuple[str, ...] = (*TORCH_FORMATS, "onnx")
DEFAULT_NAMES: dict[str, str] = {"pt2": "model.pt2", "torchscript": "model.torchscript.pt", "state_dict": "model.pt",
                                 "onnx": "model.onnx"}
ONNX_OPSET = 17
ONNX_TOLERANCE = 1e-4
"""Largest absolute difference allowed between onnxruntime's and PyTorch's logits on the same inputs."""
METADATA_NAME = "hebbnas.json"
"""Name of the metadata entry inside pt2/TorchScript archives (stored as ``<archive>/extra/hebbnas.json``)."""
STATE_DICT_KIND = "hebbnas.state_dict"
LOAD_HINTS: dict[str, str] = {
    "pt2": "torch.export.load(path).module()",
    "torchscript": "torch.jit.load(path)",
    "state_dict": "hebbnas.load(path)  (plain: torch.load(path, weights_only=True)['state_dict'])",
    "onnx": "onnxruntime.InferenceSession(path).run(None, {'images': x})[0]",
}


@dataclass(frozen=True)
class Source:
    """A trained model to export and where it came from (a run's best, a trial, or a checkpoint file)."""

    topology: Topology
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, Any]
    checkpoint: Path
    run: Path | None = None
    trial_id: str | None = None
    note: str | None = None
    config: dict[str, Any] | None = None

    def input_shape(self) -> tuple[int, int, int]:
        """Deploy shape: metrics' ``input``, else the run config's ``deploy_input``, else 3x224x224."""
        shape = _shape_or_none(self.metrics.get("input"))
        if shape is None and self.config:
            shape = _shape_or_none(self.config.get("deploy_input") or self.config.get("input"))
        return shape or (self.topology.in_channels, *DEFAULT_INPUT[1:])

    def model(self) -> GoogLeNet:
        """The inference model (no aux heads), eval mode, weights loaded."""
        return _model_from(self.topology, self.state_dict, str(self.checkpoint))


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
    """ONNX: the largest |onnxruntime - PyTorch| over the checked inputs (None when not checked)."""


# ---------------------------------------------------------------------------------------------
# finding what to export


def find_source(path: str | os.PathLike[str]) -> Source:
    """Resolve a run folder (its ``best/``, else its best trial), a `hebbnas train --out` folder, or a
    checkpoint file."""
    from hebbnas import runfolder as rf

    p = Path(path)
    if not p.exists():
        raise HebbnasError(f"{p}: no such run folder or checkpoint")
    if p.is_file():
        return _source_from_checkpoint(p, run=None, metrics_json=p.parent / "metrics.json")
    best = p / rf.BEST_MODEL
    markers = (best, p / rf.BEST_DIR, p / rf.TRIALS_CSV, p / rf.CONFIG, p / rf.TRIALS_DIR)
    if not any(m.exists() for m in markers):
        if (p / "model.pt").is_file():  # hebbnas train --out DIR
            return _source_from_checkpoint(p / "model.pt", run=p, metrics_json=p / "metrics.json")
        raise HebbnasError(f"{p} is not a hebbnas run folder (no best/model.pt, trials.csv or config.yaml)")
    config = _read_config(p / rf.CONFIG)
    if best.is_file():
        src = _source_from_checkpoint(best, run=p, metrics_json=p / rf.BEST_METRICS)
        _refuse_proxy(src, p)
        return dataclasses.replace(src, config=config)
    return _best_trial(p, config)


def _best_trial(run: Path, config: dict[str, Any]) -> Source:
    """An interrupted search: the best trial by the run folder's one rule whose checkpoint exists.

    The accuracy reported is the one of the exported weights (the checkpoint's last epoch).
    """
    from hebbnas import runfolder as rf
    from hebbnas.trials import METRIC, best_row

    try:
        rows = rf.read_run_rows(run)
    except Exception as e:  # noqa: BLE001  # pandas raises many types for a bad CSV; all mean "unreadable"
        raise HebbnasError(f"cannot read {run / rf.TRIALS_CSV}: {_one_line(e)}") from None
    if rows and any(c not in rows[0] for c in ("trial_id", "status", METRIC)):
        missing = [c for c in ("trial_id", "status", METRIC) if c not in rows[0]]
        raise HebbnasError(f"{run / rf.TRIALS_CSV} lacks column(s) {', '.join(missing)}")
    usable = [r for r in rows if _usable(r)]
    best = best_row(rows, has_checkpoint=lambda tid: rf.trial_checkpoint_path(run, tid).is_file())
    if best is None:
        if usable:
            raise HebbnasError(f"no completed trial of {run} has a checkpoint (trials/<trial_id>/checkpoint.pt); "
                               "nothing to export")
        raise HebbnasError(f"no trial of {run} completed; nothing to export")
    tid = str(best["trial_id"])
    ckpt = rf.trial_checkpoint_path(run, tid)
    src = _source_from_checkpoint(ckpt, run=run, metrics_json=None)
    _refuse_proxy(src, run)
    metrics = dict(src.metrics)
    metrics.setdefault(METRIC, float(best[METRIC]))
    metrics["trial_id"] = tid
    note = (f"{run} has no best/ (search interrupted?): exporting trial {tid}, val acc "
            f"{float(metrics[METRIC]):.4f} (its last epoch, the weights exported) of {len(usable)} completed trial(s)")
    return Source(src.topology, src.state_dict, metrics, ckpt, run, tid, note, config)


def _refuse_proxy(src: Source, run: Path) -> None:
    """A width-proxy run's weights belong to a narrowed copy, not to the topology it found."""
    from hebbnas.runfolder import BEST_TOPOLOGY

    width = float(src.metrics.get("proxy_width") or 1.0)
    if width < 1:
        raise HebbnasError(
            f"{run} trained {width:g}-width proxies, whose weights are not the deployed model; train the full-width "
            f"topology first (hebbnas train {run / BEST_TOPOLOGY} --out DIR), then export DIR")


def _usable(row: Mapping[str, Any]) -> bool:
    from hebbnas.trials import TrialStatus

    try:
        return TrialStatus.parse(row.get("status")).usable
    except HebbnasError:
        return False


def _source_from_checkpoint(path: Path, run: Path | None, metrics_json: Path | None) -> Source:
    obj = _torch_load(path)
    if not (isinstance(obj, Mapping) and "topology" in obj and "state_dict" in obj):
        raise HebbnasError(f"{path} is not a hebbnas checkpoint (expected a dict with topology and state_dict)")
    topology = _topology_from(obj["topology"], path)
    metrics = dict(obj.get("metrics") or {})
    if "metadata" in obj and isinstance(obj["metadata"], Mapping):  # a state_dict export
        meta = obj["metadata"]
        metrics = {**{k: meta.get(k) for k in ("input", "dataset", "resolution", "val_acc", "test_acc", "mean",
                                                 "std", "trial_id") if meta.get(k) is not None}, **metrics}
    if metrics_json is not None and metrics_json.is_file():
        try:
            metrics.update(json.loads(metrics_json.read_text()))
        except (OSError, ValueError) as e:
            raise HebbnasError(f"cannot read {metrics_json}: {_one_line(e)}") from None
    trial = metrics.get("trial_id")
    return Source(topology, dict(obj["state_dict"]), metrics, path, run, None if trial is None else str(trial))


def _read_config(path: Path) -> dict[str, Any]:
    """The run's config.yaml, only as a fallback for deploy shape and proxy; unreadable means empty."""
    if not path.is_file():
        return {}
    try:
        import yaml

        obj = yaml.safe_load(path.read_text())
    except Exception:  # noqa: BLE001  # optional defaults only: a broken config must not block an export
        return {}
    return dict(obj) if isinstance(obj, Mapping) else {}


# ---------------------------------------------------------------------------------------------
# metadata


def make_metadata(
    topology: Topology,
    metrics: Mapping[str, Any] | None = None,
    input_shape: tuple[int, int, int] | None = None,
    fmt: str | None = None,
    source: Source | None = None,
) -> dict[str, Any]:
    """Everything a deployer needs to know about an export, as plain JSON types."""
    from hebbnas import __version__

    m = _plain(dict(metrics or {}))
    cfg = (source.config if source else None) or {}
    proxy = cfg.get("proxy") if isinstance(cfg.get("proxy"), Mapping) else {}
    shape = input_shape or (topology.in_channels, *DEFAULT_INPUT[1:])
    meta: dict[str, Any] = {
        "format": fmt,
        "load": LOAD_HINTS.get(fmt or "", None),
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
    return _plain(meta)


def _plain(obj: Any) -> Any:
    """JSON-safe copy: numpy/tensor scalars to Python numbers, NaN/inf to None, tuples to lists."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, str):
        return str(obj)  # str subclasses (torch.__version__) would not survive torch.load(weights_only=True)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return _plain(obj.item())
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        try:
            return _plain(obj.item())
        except (TypeError, ValueError):
            pass
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return _plain(obj.tolist())
    return str(obj)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of any export (pt2, TorchScript, state_dict or its JSON), a checkpoint or a run folder."""
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
            raise HebbnasError(f"cannot read {p}: {_one_line(e)}") from None
        if not isinstance(obj, dict) or "topology" not in obj:
            raise HebbnasError(f"{p} is not hebbnas export metadata")
        return obj
    fmt = detect_format(p)
    if fmt == "onnx":
        return _onnx_metadata(p)
    if fmt in ("pt2", "torchscript"):
        with zipfile.ZipFile(p) as z:
            names = [n for n in z.namelist() if n.endswith(f"/extra/{METADATA_NAME}")]
            if not names:
                raise HebbnasError(f"{p} has no hebbnas metadata (a {fmt} file not written by hebbnas export)")
            return json.loads(z.read(names[0]))
    obj = _torch_load(p)
    if isinstance(obj, Mapping) and isinstance(obj.get("metadata"), Mapping):
        return dict(obj["metadata"])
    src = _source_from_checkpoint(p, run=None, metrics_json=p.parent / "metrics.json")
    return make_metadata(src.topology, src.metrics, src.input_shape(), None, src)


def _onnx_metadata(p: Path) -> dict[str, Any]:
    """metadata_props['hebbnas.json'] of an ONNX file (through onnx, else onnxruntime)."""
    try:
        try:
            import onnx

            props = {e.key: e.value for e in onnx.load(str(p), load_external_data=False).metadata_props}
        except ImportError:
            import onnxruntime as ort

            props = dict(ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                         .get_modelmeta().custom_metadata_map)
    except ImportError:
        raise HebbnasError("reading ONNX metadata needs onnx or onnxruntime: pip install 'hebbnas[onnx]'") from None
    except Exception as e:  # noqa: BLE001
        raise HebbnasError(f"{p} is not a readable ONNX model ({_one_line(e)})") from None
    if METADATA_NAME not in props:
        raise HebbnasError(f"{p} has no hebbnas metadata (an ONNX file not written by hebbnas export)")
    return json.loads(props[METADATA_NAME])


# ---------------------------------------------------------------------------------------------
# exporting


def export_run(
    run: str | os.PathLike[str],
    fmt: str = "pt2",
    out: str | os.PathLike[str] | None = None,
    *,
    verify: bool = True,
) -> ExportResult:
    """Export a run's best model (or its best completed trial) to ``out`` (default ``RUN/export/``)."""
    fmt = _check_format(fmt)
    if fmt == "onnx":
        require_onnx()
    target = _resolve_out(Path(out), fmt) if out is not None else None  # fail on a bad path before any work
    src = find_source(run)
    if target is None:
        base = (src.run if src.run is not None else src.checkpoint.parent) / EXPORT_DIR
        try:
            base.mkdir(exist_ok=True)
        except OSError as e:
            raise HebbnasError(f"cannot create {base}: {e.strerror or e}") from None
        target = _resolve_out(base / DEFAULT_NAMES[fmt], fmt)
    _refuse_own_input(target, src.checkpoint, fmt)
    meta = make_metadata(src.topology, src.metrics, src.input_shape(), fmt, src)
    res = export_model(src.model(), target, fmt, meta, verify=verify)
    return ExportResult(res.path, res.format, res.size, res.metadata, res.extra_paths, src.note, res.max_abs_diff)


def export_model(
    model: nn.Module,
    out: str | os.PathLike[str],
    fmt: str = "pt2",
    metadata: Mapping[str, Any] | None = None,
    *,
    verify: bool = True,
) -> ExportResult:
    """Export a hebbnas model (its inference graph) to one file in ``fmt``, atomically, with metadata.

    Args:
        model: a `GoogLeNet` from `hebbnas.build` (aux heads are dropped; train/eval mode is restored).
        out: target file (an existing directory gets the format's default file name).
        fmt: ``pt2``, ``torchscript``, ``state_dict`` or ``onnx``.
        metadata: from `make_metadata`; default: built from the model's topology at 3x224x224.
        verify: load the written file back and compare it with the eager model at two shapes (ONNX: run
            it in onnxruntime; an ONNX export is always checked, since its converter is the least proven).
    """
    fmt = _check_format(fmt)
    if fmt == "onnx":
        require_onnx()
    target = _resolve_out(Path(out), fmt)
    topology = getattr(model, "topology", None)
    if not isinstance(topology, Topology):
        raise HebbnasError("export needs a hebbnas model (built by hebbnas.build) so its topology is known")
    meta = dict(metadata) if metadata is not None else make_metadata(topology, fmt=fmt)
    meta["format"], meta["load"] = fmt, LOAD_HINTS[fmt]
    meta = _plain(meta)
    shape = _shape_or_none(meta.get("input")) or (topology.in_channels, *DEFAULT_INPUT[1:])
    eager = _inference_copy(model)
    min_size = min_input_size(topology)
    extra: tuple[Path, ...] = ()
    max_diff: float | None = None
    if fmt == "onnx":
        meta["dynamic"] = _dynamic(min_size, None, 1)
        data = _export_onnx(eager, shape, meta)
        max_diff = _verify_onnx(eager, data, meta, shape)
        with _atomic(target) as tmp:
            tmp.write_bytes(data)
    elif fmt == "pt2":
        res = meta.get("resolution")
        ep, meta["dynamic"] = _export_pt2(eager, shape, min_size, int(res) if isinstance(res, int) else None)
        with _atomic(target) as tmp:
            with open(tmp, "wb") as f:  # a file object: torch warns about paths not ending in .pt2
                torch.export.save(ep, f, extra_files={METADATA_NAME: json.dumps(meta)})
            if verify:
                _verify(eager, load(tmp), meta, shape)
    elif fmt == "torchscript":
        traced = _trace(eager, shape)
        meta["dynamic"] = _dynamic(min_size, None, 1)
        with _atomic(target) as tmp:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.jit.save(traced, str(tmp), _extra_files={METADATA_NAME: json.dumps(meta)})
            if verify:
                _verify(eager, load(tmp), meta, shape)
    else:
        meta["dynamic"] = _dynamic(min_size, None, 1)
        side = target.with_suffix(".json")
        obj = {
            "kind": STATE_DICT_KIND,
            "topology": topology.to_dict(),
            "state_dict": {k: v.detach().cpu().clone() for k, v in inference_state_dict(eager).items()},
            "metrics": meta.get("metrics") or {},
            "metadata": meta,
        }
        with _atomic(target) as tmp, _atomic(side) as tmp_json:
            torch.save(obj, tmp)
            tmp_json.write_text(json.dumps(meta, indent=2) + "\n")
            if verify:
                _verify(eager, load(tmp), meta, shape)
        extra = (side,)
    return ExportResult(target, fmt, target.stat().st_size, meta, extra, max_abs_diff=max_diff)


def require_onnx() -> None:
    """One line naming the extra to install when onnx or onnxruntime is missing."""
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise HebbnasError(f"the onnx format needs {' and '.join(missing)}: pip install 'hebbnas[onnx]'")


def _export_onnx(model: nn.Module, shape: tuple[int, int, int], meta: Mapping[str, Any]) -> bytes:
    """The ONNX model as bytes: dynamic batch, height and width, metadata in metadata_props.

    The TorchScript-based exporter traces one graph (as `torchscript` does: no shape-dependent control
    flow), which keeps H and W free at any size the stem accepts; `torch.onnx.export(dynamo=True)` would
    tie them to multiples of 32 like pt2 and take a minute. It is used only where the first is gone.
    """
    import io

    import onnx

    x = _example(2, shape)
    buf = io.BytesIO()
    try:
        with _quiet_export(), torch.no_grad():
            try:
                torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=ONNX_OPSET,
                                  input_names=["images"], output_names=["logits"],
                                  dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                                                "logits": {0: "batch"}})
            except (TypeError, NotImplementedError):  # a torch without the TorchScript-based exporter
                buf = io.BytesIO()
                ep, _ = _export_pt2(model, shape, min_input_size(model.topology), None)  # type: ignore[arg-type]
                torch.onnx.export(ep, (x,), dynamo=True).save(buf)
    except HebbnasError:
        raise
    except Exception as e:  # noqa: BLE001  # the exporter fails in many ways
        raise HebbnasError(f"ONNX export failed: {_one_line(e)}") from None
    proto = onnx.load_from_string(buf.getvalue())
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_NAME, json.dumps(meta)
    proto.producer_name = "hebbnas"
    proto.doc_string = f"hebbnas {meta.get('name')}: {meta.get('normalize')}"
    try:
        onnx.checker.check_model(proto)
    except Exception as e:  # noqa: BLE001
        raise HebbnasError(f"ONNX export failed the ONNX checker: {_one_line(e)}") from None
    return proto.SerializeToString()


def _verify_onnx(eager: nn.Module, data: bytes, meta: Mapping[str, Any], shape: tuple[int, int, int]) -> float:
    """Run the ONNX model in onnxruntime against the eager model on the same inputs: the deploy shape,
    the proxy resolution and an odd size; return the max abs difference, or raise above ONNX_TOLERANCE."""
    import onnxruntime as ort

    c, h, w = shape
    lo = int((meta.get("dynamic") or {}).get("height", {}).get("min") or 1)
    r = max(int(meta.get("resolution") or 0), lo)
    shapes = [(3, c, h, w), (1, c, r, r), (2, c, lo + 5, lo + 18)]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        raise HebbnasError(f"onnxruntime cannot load the exported model: {_one_line(e)}; nothing written") from None
    worst = 0.0
    with torch.no_grad():
        for s in shapes:
            x = _example(s[0], s[1:])
            ref = eager(x)
            try:
                got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
            except Exception as e:  # noqa: BLE001
                raise HebbnasError(f"the ONNX model fails in onnxruntime on input {tuple(s)}: {_one_line(e)}; "
                                   "nothing written") from None
            if got.shape != ref.shape:
                raise HebbnasError(f"the ONNX model gives shape {tuple(got.shape)} on input {tuple(s)}, PyTorch "
                                   f"{tuple(ref.shape)}; nothing written")
            worst = max(worst, float((got - ref).abs().max()))
    if not worst <= ONNX_TOLERANCE:
        raise HebbnasError(f"the ONNX model disagrees with PyTorch: max abs difference {worst:.3g} > "
                           f"{ONNX_TOLERANCE:g}; nothing written")
    return worst


class OnnxModule(nn.Module):
    """An ONNX export run by onnxruntime behind the `nn.Module` call convention (tensors in, tensors out)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().cpu().float().numpy()})[0]
        return torch.from_numpy(out).to(x.device)


def _inference_copy(model: nn.Module) -> GoogLeNet:
    """A fresh aux-free eval-mode copy, so the export carries no aux weights and the caller's model is untouched."""
    topology: Topology = model.topology  # type: ignore[assignment]
    sd = inference_state_dict(model)
    return _model_from(topology, sd, "the model")


def _export_pt2(
    model: nn.Module, shape: tuple[int, int, int], min_size: int, resolution: int | None
) -> tuple[Any, dict[str, Any]]:
    """`torch.export` with a dynamic batch and dynamic height/width.

    Two torch limits shape this. The ceil-mode max-pools make torch guard on whether the last feature
    map is 1x1, which would tie the program to one side of that line (224 but not 32); size-oblivious
    reasoning about the traced sizes drops that guard. And torch records a symbolic size for every
    intermediate tensor: with a free H the stride-2 stages nest five floor divisions, which
    `torch.export.load` then parses for tens of seconds. Declaring H = m*k and W = m*k' (m the largest
    power of two up to 32 dividing the deploy and proxy sizes, 32 for 224 and 32) makes those sizes
    linear and loading fast. If the dynamic export fails, fall back to a fixed H/W.
    """
    from torch.export import Dim

    _, h, w = shape
    x = _example(2, shape)
    batch = Dim("batch", min=1)
    m = _size_multiple(h, w, resolution)
    try:
        if m > 1:
            hdim = m * Dim("h_blocks", min=max(1, -(-min_size // m)))
            wdim = m * Dim("w_blocks", min=max(1, -(-min_size // m)))
        else:
            hdim = wdim = Dim.DYNAMIC(min=min_size)
        with _quiet_export(), _size_oblivious():
            ep = torch.export.export(model, (x,), dynamic_shapes=({0: batch, 2: hdim, 3: wdim},))
        lo = max(m, -(-min_size // m) * m)
        dyn = _dynamic(lo, None, m)
    except Exception:  # noqa: BLE001  # torch.export fails in many ways; a fixed-H/W program is still useful
        try:
            with _quiet_export():
                ep = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
        except Exception as e:  # noqa: BLE001
            raise HebbnasError(f"torch.export failed: {_one_line(e)}") from None
        dyn = {"batch": {"min": 1, "max": None}, "height": {"min": h, "max": h, "multiple_of": 1},
               "width": {"min": w, "max": w, "multiple_of": 1}}
    ep.example_inputs = None  # the file need not carry a 224x224 sample batch
    return ep, dyn


def _size_multiple(h: int, w: int, resolution: int | None) -> int:
    """Largest power of two <= 32 dividing every size the export must accept."""
    g = math.gcd(math.gcd(h, w), int(resolution or 0))
    m = 32
    while m > 1 and g % m:
        m //= 2
    return m


def _dynamic(min_hw: int, max_hw: int | None, multiple: int) -> dict[str, Any]:
    """The metadata's statement of which input sizes the export accepts."""
    hw = {"min": min_hw, "max": max_hw, "multiple_of": multiple}
    return {"batch": {"min": 1, "max": None}, "height": dict(hw), "width": dict(hw)}


@contextlib.contextmanager
def _size_oblivious() -> Iterator[None]:
    cfg = getattr(torch.fx.experimental, "_config", None)
    if cfg is not None and hasattr(cfg, "backed_size_oblivious"):
        with cfg.patch(backed_size_oblivious=True):
            yield
    else:
        yield


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
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


def _trace(model: nn.Module, shape: tuple[int, int, int]) -> torch.jit.ScriptModule:
    """TorchScript by tracing: `forward` iterates module names with getattr, which `torch.jit.script` rejects."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return torch.jit.trace(model, (_example(2, shape),), check_trace=False, _store_inputs=False)
        except Exception as e:  # noqa: BLE001
            raise HebbnasError(f"torch.jit.trace failed: {_one_line(e)}") from None


def _verify(eager: nn.Module, loaded: nn.Module, meta: Mapping[str, Any], shape: tuple[int, int, int]) -> None:
    """Compare the written file with the eager model at the deploy shape and the smallest accepted one."""
    c, h, w = shape
    hd = (meta.get("dynamic") or {}).get("height") or {}
    shapes = [(3, c, h, w)]
    if hd.get("max") is None:  # dynamic H/W: also the proxy resolution (or the smallest size accepted)
        m = int(hd.get("multiple_of") or 1)
        r = max(int(meta.get("resolution") or 0), int(hd.get("min") or 1))
        r = -(-r // m) * m
        shapes.append((1, c, r, r))
    else:
        shapes.append((1, c, h, w))
    with torch.no_grad():
        for s in shapes:
            x = _example(s[0], s[1:])
            ref = eager(x)
            try:
                got = loaded(x)
            except Exception as e:  # noqa: BLE001
                raise HebbnasError(f"exported model fails on input {tuple(s)}: {_one_line(e)}") from None
            tol = 1e-4 * max(1.0, float(ref.abs().max()))
            if got.shape != ref.shape or not torch.allclose(got, ref, rtol=1e-4, atol=tol):
                raise HebbnasError(f"exported model disagrees with the eager model on input {tuple(s)}; nothing written")


def _example(batch: int, shape: tuple[int, ...]) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, *shape, generator=g)


# ---------------------------------------------------------------------------------------------
# loading


def detect_format(path: str | os.PathLike[str]) -> str:
    """``pt2``, ``torchscript`` or ``state_dict`` (any `torch.save` file), from the archive's entries."""
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        return "onnx"
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
            fmt_entry = next((n for n in names if n.endswith("/archive_format")), None)
            if fmt_entry is not None:
                return "pt2"
    except (OSError, zipfile.BadZipFile) as e:
        raise HebbnasError(f"{p} is not a PyTorch model file ({_one_line(e)})") from None
    if any(n.endswith("/constants.pkl") for n in names) or any("/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("/data.pkl") for n in names):
        return "state_dict"
    raise HebbnasError(f"{p} is not a PyTorch model file")


def load(path: str | os.PathLike[str]) -> nn.Module:
    """An eval-mode inference module from any export, a run checkpoint (``best/model.pt``) or a run folder.

    pt2 gives `torch.export`'s module (its `train()`/`eval()` raise; the graph is inference only),
    TorchScript a `ScriptModule`, state_dict and checkpoints a `GoogLeNet` (no aux heads). For a
    trainable `GoogLeNet` from any format, use `load_trainable`.
    """
    p = Path(path)
    if not p.exists():
        raise HebbnasError(f"{p}: no such file")
    if p.is_dir():
        return find_source(p).model()
    fmt = detect_format(p)
    if fmt == "onnx":
        require_onnx()
        try:
            return OnnxModule(p)
        except Exception as e:  # noqa: BLE001
            raise HebbnasError(f"cannot load {p}: {_one_line(e)}") from None
    if fmt == "pt2":
        try:
            with _quiet_export(), open(p, "rb") as f:
                mod = torch.export.load(f).module()
        except Exception as e:  # noqa: BLE001
            raise HebbnasError(f"cannot load {p}: {_one_line(e)}") from None
        return _inference_only(mod)
    if fmt == "torchscript":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(str(p), map_location="cpu").eval()
        except Exception as e:  # noqa: BLE001
            raise HebbnasError(f"cannot load {p}: {_one_line(e)}") from None
    obj = _torch_load(p)
    if not (isinstance(obj, Mapping) and "topology" in obj and "state_dict" in obj):
        raise HebbnasError(f"{p} is not a hebbnas export or checkpoint (a dict with topology and state_dict)")
    return _model_from(_topology_from(obj["topology"], p), obj["state_dict"], str(p))


def _inference_only(mod: nn.Module) -> nn.Module:
    """Mark a `torch.export` module as what it is: an eval-mode graph, where `eval()` is a harmless no-op.

    torch makes both `train()` and `eval()` raise on exported modules; `model.eval()` is too common a
    habit to break, while asking for training mode deserves a pointer to `load_trainable`.
    """
    for m in mod.modules():
        m.training = False

    def _train(self: nn.Module, mode: bool = True) -> nn.Module:
        if mode:
            raise NotImplementedError("an exported pt2 graph is inference only; "
                                      "use hebbnas.export.load_trainable(path) to fine-tune")
        return self

    def _eval(self: nn.Module) -> nn.Module:
        return self

    mod.train = types.MethodType(_train, mod)  # type: ignore[method-assign]
    mod.eval = types.MethodType(_eval, mod)  # type: ignore[method-assign]
    return mod


def load_trainable(path: str | os.PathLike[str], aux: bool = False) -> GoogLeNet:
    """A `GoogLeNet` with the exported weights, for fine-tuning (aux heads, if asked, start untrained).

    Works for every format: the topology comes from the metadata, the weights from the file
    (pt2 and TorchScript keep the module names of `hebbnas.build`). Returned in eval mode.
    """
    p = Path(path)
    meta = read_metadata(p)
    topology = _topology_from(meta["topology"], p)
    fmt = detect_format(p) if p.is_file() and p.suffix != ".json" else "state_dict"
    if fmt == "onnx":
        raise HebbnasError(f"{p}: an ONNX export holds fused inference weights; fine-tune from the run's "
                           "best/model.pt or a pt2, TorchScript or state_dict export")
    if fmt == "pt2":
        with _quiet_export(), open(p, "rb") as f:
            sd = dict(torch.export.load(f).state_dict)
    elif fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            sd = dict(torch.jit.load(str(p), map_location="cpu").state_dict())
    else:
        sd = inference_state_dict(load(p.with_suffix(".pt") if p.suffix == ".json" else p))
    model = build(topology, aux=aux)
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:
        raise HebbnasError(f"weights of {p} do not fit its topology: {_one_line(e)}") from None
    missing = [k for k in missing if not k.startswith("aux")]
    if missing or unexpected:
        raise HebbnasError(f"weights of {p} do not fit its topology (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()


def _model_from(topology: Topology, state_dict: Mapping[str, torch.Tensor], where: str) -> GoogLeNet:
    model = build(topology, aux=False)
    sd = {k: v for k, v in state_dict.items() if not k.startswith("aux")}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise HebbnasError(f"weights in {where} do not fit its topology: {_one_line(e)}") from None
    return model.eval()


def _topology_from(d: Any, where: Path) -> Topology:
    if isinstance(d, str):
        return Topology.from_json(d)
    try:
        return Topology.from_dict(d)
    except HebbnasError as e:
        raise HebbnasError(f"{where}: {e}") from None


def _torch_load(path: Path) -> Any:
    """`torch.load` restricted to tensors and plain types: exports and checkpoints never need code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  # unpickling fails in many ways; all mean "unreadable"
        raise HebbnasError(f"cannot read {path}: {_one_line(e)}") from None


# ---------------------------------------------------------------------------------------------
# files


def _refuse_own_input(target: Path, source: Path, fmt: str) -> None:
    """An export never replaces the checkpoint it reads (``best/model.pt --format state_dict`` would)."""
    outs = [target] + ([target.with_suffix(".json")] if fmt == "state_dict" else [])
    for t in outs:
        if t.exists() and source.exists() and os.path.samefile(t, source):
            raise HebbnasError(f"--out {t} is the checkpoint being exported; choose another output")


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise HebbnasError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    return fmt


def _resolve_out(out: Path, fmt: str) -> Path:
    """The file to write (a directory gets the default name); fail now if it cannot be written."""
    if out.is_dir():
        out = out / DEFAULT_NAMES[fmt]
    targets = [out]
    if fmt == "state_dict":
        if out.suffix == ".json":
            raise HebbnasError(f"{out}: a state_dict export needs a non-.json name (its metadata goes to a .json beside it)")
        targets.append(out.with_suffix(".json"))
    parent = out.parent
    if not parent.is_dir():
        raise HebbnasError(f"cannot write {out}: directory {parent} does not exist")
    for t in targets:
        if t.is_dir():
            raise HebbnasError(f"cannot write {t}: it is a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".hebbnas-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise HebbnasError(f"cannot write {out}: {e.strerror or e}") from None
    return out


@contextlib.contextmanager
def _atomic(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place only if the block succeeds."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; an export is meant to be shared
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _shape_or_none(v: Any) -> tuple[int, int, int] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return parse_input_shape(v)
    try:
        shape = tuple(int(x) for x in v)
    except (TypeError, ValueError):
        return None
    return shape if len(shape) == 3 and min(shape) > 0 else None  # type: ignore[return-value]


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def format_size(n: int) -> str:
    """Human-readable byte count for CLI output."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"

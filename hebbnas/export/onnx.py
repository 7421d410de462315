"""onnx: an ONNX model (opset 17; input ``images`` N x C x H x W, output ``logits``) with a dynamic batch,
height and width (any H, W >= the stem's minimum), metadata as JSON in its ``metadata_props`` under
``hebbnas.json``. Loaded back in onnxruntime (`OnnxModule`) for the check against PyTorch. Needs the
optional extra ``pip install 'hebbnas[onnx]'`` (onnx, onnxruntime)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hebbnas.errors import HebbnasError, one_line
from hebbnas.export.common import dynamic, example, quiet_export
from hebbnas.export.formats import METADATA_NAME, Format, Tolerance, register
from hebbnas.topology import min_input_size

OPSET = 17
TOLERANCE = 1e-4
"""Largest absolute difference allowed between onnxruntime's and PyTorch's logits on the same inputs."""


@register
class Onnx(Format):
    name = "onnx"
    order = 30
    summary = "checked in onnxruntime; needs pip install 'hebbnas[onnx]'"
    file_name = "model.onnx"
    load_hint = "onnxruntime.InferenceSession(path).run(None, {'images': x})[0]"
    tolerance = Tolerance(rtol=0.0, atol=TOLERANCE, scaled=False)
    optional = ("onnx", "onnxruntime")
    always_verify = True

    def write(self, model: nn.Module, path: Path, meta: dict[str, Any], shape: tuple[int, int, int],
              min_size: int) -> tuple[Path, ...]:
        meta["dynamic"] = dynamic(min_size, None, 1)
        path.write_bytes(onnx_bytes(model, shape, meta))
        return ()

    @classmethod
    def recognises(cls, path: Path) -> bool:
        """By its suffix: an ONNX file is a protobuf with no signature to read without onnx itself."""
        return path.suffix.lower() == ".onnx"

    def load(self, path: Path) -> nn.Module:
        try:
            return OnnxModule(path)
        except Exception as e:  # noqa: BLE001
            raise HebbnasError(f"onnxruntime cannot load {path}: {one_line(e)}") from None

    def metadata(self, path: Path) -> dict[str, Any]:
        try:
            import onnx

            props = {e.key: e.value for e in onnx.load(str(path), load_external_data=False).metadata_props}
        except Exception as e:  # noqa: BLE001
            raise HebbnasError(f"{path} is not a readable ONNX model ({one_line(e)})") from None
        if METADATA_NAME not in props:
            raise HebbnasError(f"{path} has no hebbnas metadata (an ONNX file not written by hebbnas export)")
        return json.loads(props[METADATA_NAME])

    def state_dict(self, path: Path) -> dict[str, torch.Tensor]:
        raise HebbnasError(f"{path}: an ONNX export holds fused inference weights; fine-tune from the run's "
                           "best/model.pt or a pt2, TorchScript or state_dict export")


def onnx_bytes(model: nn.Module, shape: tuple[int, int, int], meta: dict[str, Any]) -> bytes:
    """The ONNX model as bytes: dynamic batch, height and width, metadata in metadata_props.

    The TorchScript-based exporter traces one graph (as `torchscript` does: no shape-dependent control
    flow), which keeps H and W free at any size the stem accepts; `torch.onnx.export(dynamo=True)` would
    tie them to multiples of 32 like pt2 and take a minute. It is used only where the first is gone.
    """
    import onnx

    x = example(2, shape)
    buf = io.BytesIO()
    try:
        with quiet_export(), torch.no_grad():
            try:
                torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=OPSET,
                                  input_names=["images"], output_names=["logits"],
                                  dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                                                "logits": {0: "batch"}})
            except (TypeError, NotImplementedError):  # a torch without the TorchScript-based exporter
                from hebbnas.export.pt2 import export_program

                buf = io.BytesIO()
                ep, _ = export_program(model, shape, min_input_size(model.topology), None)  # type: ignore[arg-type]
                torch.onnx.export(ep, (x,), dynamo=True).save(buf)
    except HebbnasError:
        raise
    except Exception as e:  # noqa: BLE001  # the exporter fails in many ways
        raise HebbnasError(f"ONNX export failed: {one_line(e)}") from None
    proto = onnx.load_from_string(buf.getvalue())
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_NAME, json.dumps(meta)
    proto.producer_name = "hebbnas"
    proto.doc_string = f"hebbnas {meta.get('name')}: {meta.get('normalize')}"
    try:
        onnx.checker.check_model(proto)
    except Exception as e:  # noqa: BLE001
        raise HebbnasError(f"ONNX export failed the ONNX checker: {one_line(e)}") from None
    return proto.SerializeToString()


class OnnxModule(nn.Module):
    """An ONNX export run by onnxruntime behind the `nn.Module` call convention (tensors in, tensors out)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().cpu().float().numpy()})[0]
        return torch.from_numpy(out).to(x.device)

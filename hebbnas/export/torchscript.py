"""torchscript: `torch.jit.trace` (`torch.jit.load(path)`); the graph has no shape-dependent control flow,
so one trace serves every batch size and resolution; metadata in ``extra/hebbnas.json``
(`torch.jit.load(path, _extra_files=...)`)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hebbnas.errors import HebbnasError, one_line
from hebbnas.export.common import dynamic, example
from hebbnas.export.formats import METADATA_NAME, Format, register, zip_names
from hebbnas.export.pt2 import archive_metadata


@register
class TorchScript(Format):
    name = "torchscript"
    order = 10
    summary = "torch.jit"
    file_name = "model.torchscript.pt"
    load_hint = "torch.jit.load(path)"

    def write(self, model: nn.Module, path: Path, meta: dict[str, Any], shape: tuple[int, int, int],
              min_size: int) -> tuple[Path, ...]:
        traced = trace(model, shape)
        meta["dynamic"] = dynamic(min_size, None, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(traced, str(path), _extra_files={METADATA_NAME: json.dumps(meta)})
        return ()

    @classmethod
    def recognises(cls, path: Path) -> bool:
        """A TorchScript archive holds its constants and code (checked after pt2, whose archive may too)."""
        names = zip_names(path)
        return any(n.endswith("/constants.pkl") for n in names) or any("/code/" in n for n in names)

    def load(self, path: Path) -> nn.Module:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as e:  # noqa: BLE001
            raise HebbnasError(f"cannot load {path}: {one_line(e)}") from None

    def metadata(self, path: Path) -> dict[str, Any]:
        return archive_metadata(path, self.name)

    def state_dict(self, path: Path) -> dict[str, torch.Tensor]:
        return dict(self.load(path).state_dict())


def trace(model: nn.Module, shape: tuple[int, int, int]) -> torch.jit.ScriptModule:
    """TorchScript by tracing: `forward` iterates module names with getattr, which `torch.jit.script` rejects."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return torch.jit.trace(model, (example(2, shape),), check_trace=False, _store_inputs=False)
        except Exception as e:  # noqa: BLE001
            raise HebbnasError(f"torch.jit.trace failed: {one_line(e)}") from None

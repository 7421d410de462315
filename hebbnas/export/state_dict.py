"""state_dict: a `torch.save`d dict of plain types and tensors (`torch.load(..., weights_only=True)`), rebuilt
by `hebbnas.load`, with the same metadata as plain JSON beside it (``model.pt`` + ``model.json``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hebbnas.errors import HebbnasError
from hebbnas.export.common import dynamic, model_from, topology_from, torch_load
from hebbnas.export.formats import Format, register, zip_names
from hebbnas.model import inference_state_dict

KIND = "hebbnas.state_dict"


@register
class StateDict(Format):
    name = "state_dict"
    order = 20
    summary = "weights + topology JSON"
    file_name = "model.pt"
    load_hint = "hebbnas.load(path)  (plain: torch.load(path, weights_only=True)['state_dict'])"

    def write(self, model: nn.Module, path: Path, meta: dict[str, Any], shape: tuple[int, int, int],
              min_size: int) -> tuple[Path, ...]:
        meta["dynamic"] = dynamic(min_size, None, 1)
        obj = {"kind": KIND, "topology": model.topology.to_dict(),  # type: ignore[union-attr]
               "state_dict": {k: v.detach().cpu().clone() for k, v in inference_state_dict(model).items()},
               "metrics": meta.get("metrics") or {}, "metadata": meta}
        torch.save(obj, path)
        side = path.with_suffix(".json")
        side.write_text(json.dumps(meta, indent=2) + "\n")
        return (side,)

    @classmethod
    def recognises(cls, path: Path) -> bool:
        """Any `torch.save` file (asked after pt2 and TorchScript, whose archives hold a data.pkl too)."""
        return any(n.endswith("/data.pkl") for n in zip_names(path))

    def load(self, path: Path) -> nn.Module:
        obj = torch_load(path)
        if not (isinstance(obj, Mapping) and "topology" in obj and "state_dict" in obj):
            raise HebbnasError(f"{path} is not a hebbnas export or checkpoint (a dict with topology and state_dict)")
        return model_from(topology_from(obj["topology"], path), obj["state_dict"], str(path))

    def metadata(self, path: Path) -> dict[str, Any]:
        obj = torch_load(path)
        if isinstance(obj, Mapping) and isinstance(obj.get("metadata"), Mapping):
            return dict(obj["metadata"])
        raise HebbnasError(f"{path} has no hebbnas metadata (a state_dict file not written by hebbnas export)")

    def state_dict(self, path: Path) -> dict[str, torch.Tensor]:
        return inference_state_dict(self.load(path))

    def extra_paths(self, path: Path) -> tuple[Path, ...]:
        return (path.with_suffix(".json"),)

"""pt2: a `torch.export` program (`torch.export.load(path).module()`) with a dynamic batch, height and width,
metadata in the archive's ``extra/hebbnas.json`` (`torch.export.load(path, extra_files=...)`)."""

from __future__ import annotations

import contextlib
import json
import math
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hebbnas.errors import HebbnasError, one_line
from hebbnas.export.common import dynamic, example, quiet_export
from hebbnas.export.formats import METADATA_NAME, Format, register, zip_names


@register
class Pt2(Format):
    name = "pt2"
    order = 0
    summary = "torch.export"
    file_name = "model.pt2"
    load_hint = "torch.export.load(path).module()"

    def write(self, model: nn.Module, path: Path, meta: dict[str, Any], shape: tuple[int, int, int],
              min_size: int) -> tuple[Path, ...]:
        res = meta.get("resolution")
        ep, meta["dynamic"] = export_program(model, shape, min_size, int(res) if isinstance(res, int) else None)
        with open(path, "wb") as f:  # a file object: torch warns about paths not ending in .pt2
            torch.export.save(ep, f, extra_files={METADATA_NAME: json.dumps(meta)})
        return ()

    @classmethod
    def recognises(cls, path: Path) -> bool:
        """A torch.export archive names its format in ``<archive>/archive_format``."""
        return any(n.endswith("/archive_format") for n in zip_names(path))

    def load(self, path: Path) -> nn.Module:
        try:
            with quiet_export(), open(path, "rb") as f:
                mod = torch.export.load(f).module()
        except Exception as e:  # noqa: BLE001
            raise HebbnasError(f"cannot load {path}: {one_line(e)}") from None
        return _inference_only(mod)

    def metadata(self, path: Path) -> dict[str, Any]:
        return archive_metadata(path, self.name)

    def state_dict(self, path: Path) -> dict[str, torch.Tensor]:
        with quiet_export(), open(path, "rb") as f:
            return dict(torch.export.load(f).state_dict)


def archive_metadata(path: Path, fmt: str) -> dict[str, Any]:
    """``extra/hebbnas.json`` of a pt2 or TorchScript archive."""
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.endswith(f"/extra/{METADATA_NAME}")]
        if not names:
            raise HebbnasError(f"{path} has no hebbnas metadata (a {fmt} file not written by hebbnas export)")
        return json.loads(z.read(names[0]))


def export_program(model: nn.Module, shape: tuple[int, int, int], min_size: int, resolution: int | None
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
    x = example(2, shape)
    batch = Dim("batch", min=1)
    m = _size_multiple(h, w, resolution)
    try:
        if m > 1:
            hdim = m * Dim("h_blocks", min=max(1, -(-min_size // m)))
            wdim = m * Dim("w_blocks", min=max(1, -(-min_size // m)))
        else:
            hdim = wdim = Dim.DYNAMIC(min=min_size)
        with quiet_export(), _size_oblivious():
            ep = torch.export.export(model, (x,), dynamic_shapes=({0: batch, 2: hdim, 3: wdim},))
        lo = max(m, -(-min_size // m) * m)
        dyn = dynamic(lo, None, m)
    except Exception:  # noqa: BLE001  # torch.export fails in many ways; a fixed-H/W program is still useful
        try:
            with quiet_export():
                ep = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
        except Exception as e:  # noqa: BLE001
            raise HebbnasError(f"torch.export failed: {one_line(e)}") from None
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


@contextlib.contextmanager
def _size_oblivious() -> Iterator[None]:
    cfg = getattr(torch.fx.experimental, "_config", None)
    if cfg is not None and hasattr(cfg, "backed_size_oblivious"):
        with cfg.patch(backed_size_oblivious=True):
            yield
    else:
        yield


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

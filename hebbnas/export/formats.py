"""The export formats behind one small interface and a registry, like the strategies'.

A format writes an inference model to a file, loads it back, reads the metadata it carries, recognises
its own files (`recognises`: `detect_format` asks each format in turn) and says how closely a loaded file
must agree with the eager model (`Tolerance`). Adding one is one new module in this package that
subclasses `Format` and decorates it with `register`: `FORMATS` (hebbnas.registry) finds it, and
``--format``, `hebbnas.load` and the verifier take it from there.
"""

from __future__ import annotations

import importlib.util
import zipfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from hebbnas.errors import HebbnasError, one_line
from hebbnas.registry import Registry

METADATA_NAME = "hebbnas.json"
"""Name of the metadata entry inside pt2/TorchScript archives (``<archive>/extra/hebbnas.json``) and ONNX
metadata_props."""


@dataclass(frozen=True)
class Tolerance:
    """How far a loaded export may be from the eager model: |got - ref| <= atol' + rtol * |ref|, with
    atol' = atol * max(1, max |ref|) when `scaled` (float32 kernels round relative to the logits' size)."""

    rtol: float
    atol: float
    scaled: bool = True


class Format(ABC):
    """One file format of an exported inference model.

    Attributes:
        name: the value of ``--format``.
        order: where ``--format`` lists it (the first is the default).
        summary: what it is, for ``--format``'s help.
        file_name: the default file name in ``RUN/export/``.
        load_hint: how plain Python loads it (recorded in the metadata).
        tolerance: how closely the file must reproduce the eager model.
        optional: the import names it needs beyond torch (checked before any work).
        always_verify: the file is checked against the eager model even when the caller skips checks.
    """

    name: ClassVar[str] = ""
    order: ClassVar[int] = 1000
    summary: ClassVar[str] = ""
    file_name: ClassVar[str] = ""
    load_hint: ClassVar[str] = ""
    tolerance: ClassVar[Tolerance] = Tolerance(rtol=1e-4, atol=1e-4)
    optional: ClassVar[tuple[str, ...]] = ()
    always_verify: ClassVar[bool] = False

    @abstractmethod
    def write(self, model: nn.Module, path: Path, meta: dict[str, Any], shape: tuple[int, int, int],
              min_size: int) -> tuple[Path, ...]:
        """Write `model` (an eval-mode inference copy) to `path` with `meta`, after filling meta["dynamic"]
        (the input sizes it accepts). Returns the extra files written beside it (their final paths)."""

    @abstractmethod
    def load(self, path: Path) -> nn.Module:
        """The file as an eval-mode inference module."""

    @abstractmethod
    def metadata(self, path: Path) -> dict[str, Any]:
        """The metadata the file carries."""

    def state_dict(self, path: Path) -> dict[str, torch.Tensor]:
        """The weights under `hebbnas.build`'s names (for `load_trainable`)."""
        raise HebbnasError(f"{path}: a {self.name} export cannot give its weights back for training")

    def extra_paths(self, path: Path) -> tuple[Path, ...]:
        """Files written beside `path` (a state_dict's JSON)."""
        return ()

    @classmethod
    @abstractmethod
    def recognises(cls, path: Path) -> bool:
        """The file at `path` is one of this format's (from its name or contents; no optional imports)."""


FORMATS: Registry[type[Format]] = Registry("export format", "--format", "hebbnas.export")
"""Every format: the modules of hebbnas/export/, and any other module that calls `register`."""
register = FORMATS.register


def names() -> tuple[str, ...]:
    """Every registered format, in its `order` (the first is the default)."""
    return FORMATS.names()


def get_format(name: str) -> Format:
    """The format called `name`; an unknown one is a one-line error naming --format and the known ones."""
    fmt = FORMATS.get(name)()
    missing = [m for m in fmt.optional if importlib.util.find_spec(m) is None]
    if missing:
        raise HebbnasError(f"the {name} format needs {' and '.join(missing)}: pip install 'hebbnas[{name}]'")
    return fmt


def format_help() -> str:
    """``--format``'s help: each format and its summary, the default first."""
    parts = [f"{n} ({FORMATS.get(n).summary}{', default' if i == 0 else ''})" for i, n in enumerate(names())]
    return ", ".join(parts[:-1]) + f" or {parts[-1]}" if len(parts) > 1 else parts[0]


def detect_format(path: str | Path) -> str:
    """The format whose `recognises` accepts the file (asked in `names` order): e.g. ``pt2``, ``torchscript``,
    ``state_dict`` (any `torch.save` file) or ``onnx``."""
    p = Path(path)
    found = FORMATS.find(lambda f: f.recognises(p))
    if found is not None:
        return found.name
    try:
        zipfile.ZipFile(p).close()
    except (OSError, zipfile.BadZipFile) as e:
        raise HebbnasError(f"{p} is not a PyTorch model file ({one_line(e)})") from None
    raise HebbnasError(f"{p} is not a PyTorch model file")


def zip_names(path: Path) -> list[str]:
    """The entries of a zip archive (what torch.save, torch.jit.save and torch.export.save write); [] when
    `path` is not one."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (OSError, zipfile.BadZipFile):
        return []

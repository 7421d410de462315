"""The export formats behind one small interface and a registry, like the strategies'.

A format writes an inference model to a file, loads it back, reads the metadata it carries, recognises
its own files and says how closely a loaded file must agree with the eager model (`Tolerance`).
Adding one is one new module in this package that subclasses `Format` and calls `register`.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from hebbnas.errors import HebbnasError, one_line

BUILTIN: tuple[str, ...] = ("pt2", "torchscript", "state_dict", "onnx")
"""The shipped formats, in the order the CLI lists them (the first is the default)."""
METADATA_NAME = "hebbnas.json"
"""Name of the metadata entry inside pt2/TorchScript archives (``<archive>/extra/hebbnas.json``) and ONNX
metadata_props."""
_REGISTRY: dict[str, type[Format]] = {}


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
        file_name: the default file name in ``RUN/export/``.
        load_hint: how plain Python loads it (recorded in the metadata).
        tolerance: how closely the file must reproduce the eager model.
        optional: the import names it needs beyond torch (checked before any work).
        always_verify: the file is checked against the eager model even when the caller skips checks.
    """

    name: ClassVar[str] = ""
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


def register(cls: type[Format]) -> type[Format]:
    """Class decorator: make a format available under its name."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> tuple[str, ...]:
    _load_builtin()
    return tuple(dict.fromkeys([*BUILTIN, *_REGISTRY]))


def get_format(name: str) -> Format:
    """The format called `name`; an unknown one is a one-line error listing the known ones."""
    _load_builtin()
    if name not in _REGISTRY:
        raise HebbnasError(f"unknown export format {name!r} (known: {', '.join(names())})")
    fmt = _REGISTRY[name]()
    missing = [m for m in fmt.optional if importlib.util.find_spec(m) is None]
    if missing:
        raise HebbnasError(f"the {name} format needs {' and '.join(missing)}: pip install 'hebbnas[{name}]'")
    return fmt


def detect_format(path: str | Path) -> str:
    """``pt2``, ``torchscript``, ``state_dict`` (any `torch.save` file) or ``onnx``, from the file itself."""
    import zipfile

    p = Path(path)
    if p.suffix.lower() == ".onnx":
        return "onnx"
    try:
        with zipfile.ZipFile(p) as z:
            names_ = z.namelist()
    except (OSError, zipfile.BadZipFile) as e:
        raise HebbnasError(f"{p} is not a PyTorch model file ({one_line(e)})") from None
    if any(n.endswith("/archive_format") for n in names_):
        return "pt2"
    if any(n.endswith("/constants.pkl") for n in names_) or any("/code/" in n for n in names_):
        return "torchscript"
    if any(n.endswith("/data.pkl") for n in names_):
        return "state_dict"
    raise HebbnasError(f"{p} is not a PyTorch model file")


def _load_builtin() -> None:
    for mod in BUILTIN:
        if mod not in _REGISTRY:
            importlib.import_module(f"hebbnas.export.{mod}")

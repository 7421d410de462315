"""Proxy datasets: one module per dataset behind one small interface and a registry.

A dataset module reads its raw images (numpy arrays, uint8, (N, H, W) gray or (N, 3, H, W) RGB) and
says what `hebbnas.data.load_dataset` needs to know about it: its default resolution, validation share
and directory, its class names and aliases. The shared work (validation carve, subsets, resizing,
normalisation) stays in `hebbnas.data`. Adding a dataset is one new module here that subclasses
`DatasetSource` and decorates it with `register`: `DATASETS` (hebbnas.registry) finds it, and
``--dataset``, the space's ``proxy.dataset`` and `load_dataset` accept its name.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hebbnas.errors import HebbnasError
from hebbnas.registry import Registry


@dataclass(frozen=True, eq=False)
class RawData:
    """A dataset's images as read: the official train and test splits, and a validation split when the
    files give one (else `hebbnas.data` carves it from train)."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    classes: tuple[str, ...] | None = None
    val_x: np.ndarray | None = None
    val_y: np.ndarray | None = None


class DatasetSource(ABC):
    """Where one proxy dataset's images come from.

    Attributes:
        name: the value of ``--dataset`` and of ``proxy.dataset``.
        order: where ``--dataset`` lists it (the default, digits, first).
        aliases: other spellings accepted (lower case): ``fmnist`` for fashion-mnist.
        resolution: the default proxy resolution (square side in pixels).
        val_fraction: the share of the (train + val) pool used for validation.
        data_dir: the directory read when ``--data-dir`` is not given; None: the dataset needs none, or
            needs ``--data-dir`` (`read` says so).
        classes: the class names, when known without reading the files (a budget check counts them).
    """

    name: ClassVar[str] = ""
    order: ClassVar[int] = 1000
    aliases: ClassVar[tuple[str, ...]] = ()
    resolution: ClassVar[int] = 32
    val_fraction: ClassVar[float] = 0.1
    data_dir: ClassVar[str | None] = None
    classes: ClassVar[tuple[str, ...] | None] = None

    @abstractmethod
    def read(self, data_dir: str | os.PathLike[str] | None, resolution: int, progress: bool) -> RawData:
        """The raw images from `data_dir` (``--data-dir``; `directory` applies the default). `resolution`
        and `progress` are for sources that decode and cache images themselves (your own folders)."""

    def directory(self, data_dir: str | os.PathLike[str] | None) -> str:
        """`data_dir`, else this dataset's default directory; one line when it does not exist."""
        directory = os.fspath(data_dir) if data_dir is not None else self.data_dir
        if directory is None or not os.path.isdir(directory):
            raise HebbnasError(f"data directory not found: {directory}")
        return directory


DATASETS: Registry[type[DatasetSource]] = Registry("dataset", "--dataset", __name__)
"""Every dataset: the modules of this package, and any other module that calls `register`."""
register = DATASETS.register


def names() -> tuple[str, ...]:
    """Every registered dataset, in its `order`."""
    return DATASETS.names()


def canonical_name(name: str) -> str:
    """The registered name for `name` (case-insensitive, aliases accepted); an unknown one is one line
    naming --dataset and the known names."""
    key = name.strip().lower()
    found = DATASETS.find(lambda c: key == c.name or key in c.aliases)
    return found.name if found is not None else DATASETS.get(key).name


def get_source(name: str) -> DatasetSource:
    """The dataset called `name` (or one of its aliases)."""
    return DATASETS.get(canonical_name(name))()

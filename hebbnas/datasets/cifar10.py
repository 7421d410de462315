"""cifar10: the python-pickle directory (``data_batch_1`` .. ``data_batch_5``, ``test_batch``, optional
``batches.meta``). Pickles can run code when loaded: only point this at files you trust."""

from __future__ import annotations

import os
import pickle

import numpy as np

from hebbnas.datasets import DatasetSource, RawData, register
from hebbnas.errors import HebbnasError


def _read_cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: uint8 (N, 3, 32, 32) images, int64 labels."""
    if not os.path.isfile(path):
        raise HebbnasError(f"missing file in {os.path.dirname(path)}: {os.path.basename(path)}")
    try:
        with open(path, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
    except Exception as exc:  # noqa: BLE001  # unpickling fails in many ways; all mean "corrupt"
        raise HebbnasError(f"corrupt CIFAR-10 batch: {path} ({type(exc).__name__})") from None
    if not isinstance(batch, dict):
        raise HebbnasError(f"corrupt CIFAR-10 batch: {path} (not a dict)")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise HebbnasError(f"corrupt CIFAR-10 batch: {path} (no data/labels entries)")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise HebbnasError(
            f"corrupt CIFAR-10 batch: {path} (expected uint8 data of shape (N, 3072), found {data.dtype} {data.shape})"
        )
    if labels.ndim != 1 or len(labels) != len(data):
        raise HebbnasError(
            f"image/label count mismatch in {path}: {len(data)} images, {labels.size} labels"
        )
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise HebbnasError(f"corrupt CIFAR-10 batch: {path} (labels outside 0..9)")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


@register
class CIFAR10(DatasetSource):
    name = "cifar10"
    order = 30
    aliases = ("cifar-10", "cifar_10")
    data_dir = "/usr/share/datasets/cifar-10-batches-py"
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

    def read(self, data_dir: str | os.PathLike[str] | None, resolution: int, progress: bool) -> RawData:
        return read_cifar10_dir(self.directory(data_dir), self.classes)


def read_cifar10_dir(directory: str, classes: tuple[str, ...] | None = None) -> RawData:
    """The five training batches and the test batch of the python-pickle layout."""
    parts = [_read_cifar_batch(os.path.join(directory, f"data_batch_{i}")) for i in range(1, 6)]
    test_x, test_y = _read_cifar_batch(os.path.join(directory, "test_batch"))
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    return RawData(train_x, train_y, test_x, test_y, 10, classes)

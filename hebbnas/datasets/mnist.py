"""mnist: a directory of IDX files, gzipped or not (``train-images-idx3-ubyte[.gz]``, ``t10k-...``)."""

from __future__ import annotations

import os

from hebbnas.datasets import DatasetSource, RawData, register
from hebbnas.datasets.idx import read_idx_dir


@register
class MNIST(DatasetSource):
    name = "mnist"
    order = 20
    data_dir = "/usr/share/datasets/mnist"
    classes = tuple(str(i) for i in range(10))

    def read(self, data_dir: str | os.PathLike[str] | None, resolution: int, progress: bool) -> RawData:
        return read_idx_dir(self.directory(data_dir), self.classes)

"""fashion-mnist: Zalando's clothes in MNIST's IDX layout (``train-images-idx3-ubyte[.gz]``, ``t10k-...``)."""

from __future__ import annotations

import os

from hebbnas.datasets import DatasetSource, RawData, register
from hebbnas.datasets.idx import read_idx_dir


@register
class FashionMNIST(DatasetSource):
    name = "fashion-mnist"
    order = 10
    aliases = ("fashion_mnist", "fashionmnist", "fmnist")
    data_dir = "/usr/share/datasets/fashion-mnist"
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")

    def read(self, data_dir: str | os.PathLike[str] | None, resolution: int, progress: bool) -> RawData:
        return read_idx_dir(self.directory(data_dir), self.classes)

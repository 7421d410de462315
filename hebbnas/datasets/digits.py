"""digits: scikit-learn's embedded 8x8 digits (1797 images, no files needed; the default proxy).

It has no official test split, so a fixed stratified 20% is held out as test (independent of the seed,
so every seed is scored on the same images); validation is carved from the rest.
"""

from __future__ import annotations

import os

import numpy as np

from hebbnas.datasets import DatasetSource, RawData, register
from hebbnas.splits import stratified_order

TEST_FRACTION = 0.2
TEST_SEED = 0  # fixed: the test split must not move with the training seed


@register
class Digits(DatasetSource):
    name = "digits"
    order = 0
    resolution = 64  # cheap enough for 64 px within the 3-minute CPU recipe: the probe needs 8x8..2x2 maps
    val_fraction = 0.25  # 60/20/20 train/val/test overall
    classes = tuple(str(i) for i in range(10))

    def read(self, data_dir: str | os.PathLike[str] | None, resolution: int, progress: bool) -> RawData:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)  # 0..16 -> uint8 like the others
        labels = bunch.target.astype(np.int64)
        order = stratified_order(labels, TEST_SEED)
        n_test = round(TEST_FRACTION * len(labels))
        test_idx, pool_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
        return RawData(images[pool_idx], labels[pool_idx], images[test_idx], labels[test_idx], 10, self.classes)

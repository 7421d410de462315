"""folder: your own images (`hebbnas.imagefolder`): one subfolder of PNG/JPEG images per class, or
``train/``, ``val/``, ``test/`` each holding those class subfolders (used as given; without ``val/``
validation is carved from ``train/``). Without splits, a fixed stratified 20% is test, as for digits.
Decoded with Pillow, resized to the resolution, cached as tensors (see `hebbnas.imagefolder.cache_dir`).
"""

from __future__ import annotations

import os

from hebbnas.datasets import DatasetSource, RawData, register
from hebbnas.errors import HebbnasError


@register
class Folder(DatasetSource):
    name = "folder"
    order = 40
    aliases = ("imagefolder", "image-folder")
    resolution = 64
    val_fraction = 0.25

    def read(self, data_dir: str | os.PathLike[str] | None, resolution: int, progress: bool) -> RawData:
        from hebbnas.imagefolder import load_folder

        if data_dir is None:
            raise HebbnasError("--dataset folder needs --data-dir DIR (one subfolder of images per class)")
        fd = load_folder(data_dir, resolution, progress=progress)
        return RawData(fd.train_x, fd.train_y, fd.test_x, fd.test_y, len(fd.classes), fd.classes,
                       fd.val_x, fd.val_y)

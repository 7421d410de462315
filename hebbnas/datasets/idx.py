"""The IDX file format (MNIST's and Fashion-MNIST's): one reader, shared by the datasets that use it."""

from __future__ import annotations

import gzip
import math
import os

import numpy as np

from hebbnas.datasets import RawData
from hebbnas.errors import HebbnasError, first_line

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (gzipped when the name ends in .gz) into an array of its declared shape.

    Raises:
        HebbnasError: unreadable, truncated or trailing bytes, bad magic.
    """
    path = os.fspath(path)
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            with open(path, "rb") as fh:
                raw = fh.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:  # BadGzipFile is an OSError; explicit for clarity
        raise HebbnasError(f"corrupt IDX file: {path} ({first_line(exc)})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise HebbnasError(f"corrupt IDX file: {path} (bad magic number)")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise HebbnasError(f"corrupt IDX file: {path} (truncated header)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        raise HebbnasError(f"corrupt IDX file: {path} (expected {expected} bytes, found {len(raw)})")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).copy()  # writable, owns its memory


def _find_idx(directory: str, stem: str) -> str:
    """Path of `stem` in `directory`, accepting .gz and the `train-images.idx3-ubyte` spelling."""
    dotted = stem.replace("-idx", ".idx")
    for candidate in (stem, stem + ".gz", dotted, dotted + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    raise HebbnasError(f"missing file in {directory}: {stem}[.gz]")


def read_idx_dir(directory: str, classes: tuple[str, ...] | None = None) -> RawData:
    """The MNIST layout: ``train-`` and ``t10k-`` images and labels, uint8 pixels, labels 0..9."""
    out: list[np.ndarray] = []
    for prefix in ("train", "t10k"):
        img_path = _find_idx(directory, f"{prefix}-images-idx3-ubyte")
        lbl_path = _find_idx(directory, f"{prefix}-labels-idx1-ubyte")
        images, labels = read_idx(img_path), read_idx(lbl_path)
        if images.ndim != 3:
            raise HebbnasError(f"corrupt IDX file: {img_path} (expected 3 dimensions, found {images.ndim})")
        if labels.ndim != 1:
            raise HebbnasError(f"corrupt IDX file: {lbl_path} (expected 1 dimension, found {labels.ndim})")
        if len(images) != len(labels):
            raise HebbnasError(
                f"image/label count mismatch in {directory}: {len(images)} {prefix} images, {len(labels)} labels"
            )
        if len(labels) and (labels.min() < 0 or labels.max() > 9):
            raise HebbnasError(f"corrupt IDX file: {lbl_path} (labels outside 0..9)")
        if images.dtype != np.uint8:
            raise HebbnasError(f"corrupt IDX file: {img_path} (expected uint8 pixels, found {images.dtype})")
        out += [images, labels.astype(np.int64)]
    return RawData(out[0], out[1], out[2], out[3], 10, classes)

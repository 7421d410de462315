"""Proxy datasets served as in-memory tensors: what search trials actually train on.

Every dataset comes back the same way, so the training loop, the probe and the search never care
which one it is: a `Dataset` whose `train`, `val` and `test` splits are `(x, y)` pairs with
`x` float32 (N, C, R, R), resized to the proxy resolution, scaled to [0, 1] and normalised with the
mean/std of the *train* split, and `y` int64 (N,).

Known datasets (`DATASETS`):

- ``digits``: scikit-learn's embedded 8x8 digits (1797 images, no files needed; the default).
  It has no official test split, so a fixed stratified 20% is held out as test (independent of the
  seed, so every seed is scored on the same images); validation is carved from the rest.
- ``fashion-mnist`` and ``mnist``: a directory of IDX files, gzipped or not
  (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``, ``t10k-...``).
- ``cifar10``: the python-pickle directory (``data_batch_1`` .. ``data_batch_5``, ``test_batch``,
  optional ``batches.meta``). Pickles can run code when loaded: only point this at files you trust.
- ``folder``: your own images (`hebbnas.imagefolder`): one subfolder of PNG/JPEG images per class, or
  ``train/``, ``val/``, ``test/`` each holding those class subfolders (used as given; without ``val/``
  validation is carved from ``train/``). Without splits, a fixed stratified 20% is test, as for digits.
  Decoded with Pillow, resized to the resolution, cached as tensors (see `hebbnas.imagefolder.cache_dir`).

Validation is always carved from the official train split (stratified, seeded); test is the official
test split. Grayscale images are replicated to `channels` as an expanded (zero-copy) view: index or
call ``.contiguous()`` before editing a split in place.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from hebbnas.errors import HebbnasError, first_line
from hebbnas.splits import stratified_order

DATASETS: tuple[str, ...] = ("digits", "fashion-mnist", "mnist", "cifar10", "folder")

# GoogLeNet's stem downsamples 8x before inception3a and 32x before the head: at 32 px the Inception
# modules see 4x4..1x1 maps, at 64 px 8x8..2x2 (the probe needs spatial extent to measure 3x3/5x5
# spread). Digits is cheap enough to afford 64 px within the 3-minute CPU recipe (see train.py).
DEFAULT_RESOLUTION: dict[str, int] = {"digits": 64, "fashion-mnist": 32, "mnist": 32, "cifar10": 32, "folder": 64}

# Fraction of the (train + val) pool kept for validation. Digits: 60/20/20 train/val/test overall.
DEFAULT_VAL_FRACTION: dict[str, float] = {"digits": 0.25, "fashion-mnist": 0.1, "mnist": 0.1, "cifar10": 0.1,
                                          "folder": 0.25}

DEFAULT_DATA_DIR: dict[str, str] = {
    "fashion-mnist": "/usr/share/datasets/fashion-mnist",
    "mnist": "/usr/share/datasets/mnist",
    "cifar10": "/usr/share/datasets/cifar-10-batches-py",
}

CLASSES: dict[str, tuple[str, ...]] = {
    "digits": tuple(str(i) for i in range(10)),
    "mnist": tuple(str(i) for i in range(10)),
    "fashion-mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}

_ALIASES: dict[str, str] = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "imagefolder": "folder",
    "image-folder": "folder",
}

_DIGITS_TEST_FRACTION = 0.2
_DIGITS_TEST_SEED = 0  # fixed: the digits test split must not move with the training seed
_RESIZE_CHUNK = 4096  # images resized per interpolate call, bounds peak memory on 60k-image sets
_LUMA = (0.299, 0.587, 0.114)  # RGB -> gray when an RGB dataset is asked for 1 channel


@dataclass(frozen=True, eq=False)
class Split:
    """One split: `x` float32 (N, C, R, R), `y` int64 (N,). Unpacks as ``x, y = split``; len is N."""

    x: torch.Tensor
    y: torch.Tensor

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.x, self.y))

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True, eq=False)
class Dataset:
    """A proxy dataset, fully in memory and ready to feed a model.

    `mean`/`std` are per output channel, in [0, 1] pixel units, computed on the train split after
    resizing; they were already applied to every split and are kept so that new images can be
    normalised the same way.
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    resolution: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] | None = None
    seed: int = 0

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Apply this dataset's normalisation to images in [0, 1] of shape (N, C, R, R)."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def summary(self) -> str:
        """One line for logs: name, split sizes, shape."""
        return (
            f"{self.name}: train {len(self.train)}, val {len(self.val)}, test {len(self.test)}, "
            f"{self.num_classes} classes, {self.channels}x{self.resolution}x{self.resolution}"
        )


def canonical_name(name: str) -> str:
    """The canonical dataset name for `name` (case-insensitive, common aliases accepted)."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise HebbnasError(f"unknown dataset: {name!r} (known: {', '.join(DATASETS)})")
    return key


def load_dataset(
    name: str = "digits",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    resolution: int | None = None,
    channels: int = 3,
    seed: int = 0,
    train_subset: int | None = None,
    val_fraction: float | None = None,
    progress: bool = False,
    subset_at_most: bool = False,
) -> Dataset:
    """Load a proxy dataset as normalised in-memory tensors.

    Args:
        name: one of `DATASETS` (aliases such as ``fashion_mnist`` or ``cifar-10`` work).
        data_dir: directory of the raw files; `DEFAULT_DATA_DIR[name]` when None. Ignored for digits.
        resolution: square side the images are resized to; `DEFAULT_RESOLUTION[name]` when None.
        channels: output channels; grayscale is replicated, RGB to 1 channel uses luminance.
        seed: seeds the validation carve and the train subset (not the digits test split).
        train_subset: keep only this many training images (stratified), for quick proxies. The
            validation split then shrinks in proportion, so that val/(train+val) stays `val_fraction`.
        val_fraction: share of the (train + val) pool used for validation, in (0, 1);
            `DEFAULT_VAL_FRACTION[name]` when None. Ignored when a folder data set has its own ``val/``.
        progress: show a progress bar while a folder data set's images are decoded (the CLI decides).
        subset_at_most: `train_subset` is a ceiling (`--smoke` on a small folder): fewer images are
            used whole instead of refused.

    Raises:
        HebbnasError: unknown name, bad arguments, missing or corrupt files.
    """
    key = canonical_name(name)
    res = DEFAULT_RESOLUTION[key] if resolution is None else int(resolution)
    if res < 1:
        raise HebbnasError(f"resolution must be positive, got {resolution}")
    if channels not in (1, 3):
        raise HebbnasError(f"channels must be 1 or 3, got {channels}")
    vf = DEFAULT_VAL_FRACTION[key] if val_fraction is None else float(val_fraction)
    if not 0.0 < vf < 1.0:
        raise HebbnasError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if train_subset is not None and train_subset < 1:
        raise HebbnasError(f"train_subset must be positive, got {train_subset}")

    classes = CLASSES.get(key)
    given_val: tuple[np.ndarray, np.ndarray] | None = None
    if key == "folder":
        from hebbnas.imagefolder import load_folder

        if data_dir is None:
            raise HebbnasError("--dataset folder needs --data-dir DIR (one subfolder of images per class)")
        fd = load_folder(data_dir, res, progress=progress)
        raw_train_x, raw_train_y, test_x, test_y = fd.train_x, fd.train_y, fd.test_x, fd.test_y
        num_classes, classes = len(fd.classes), fd.classes
        if fd.val_x is not None and fd.val_y is not None:
            given_val = (fd.val_x, fd.val_y)
    else:
        raw_train_x, raw_train_y, test_x, test_y, num_classes = _load_raw(key, data_dir)

    # Validation carve and optional subset, both from one seeded stratified ordering of the pool.
    order = stratified_order(raw_train_y, seed)
    pool = len(order)
    if given_val is not None:  # val/ given: the pool is all training data, the subset is taken from it
        n_val, n_train = 0, pool if train_subset is None else int(train_subset)
        if subset_at_most:
            n_train = min(n_train, pool)
        if n_train > pool:
            raise HebbnasError(f"train_subset {train_subset} exceeds the {pool} training images of {key}")
    elif train_subset is None:
        n_val = max(1, round(vf * pool))
        n_train = pool - n_val
    else:
        n_val = min(max(1, round(train_subset * vf / (1.0 - vf))), max(1, round(vf * pool)))
        n_train = min(train_subset, pool - n_val) if subset_at_most else train_subset
        if n_val + n_train > pool:
            raise HebbnasError(
                f"train_subset {train_subset} exceeds the {pool - n_val} training images of {key}"
            )
    if n_train < 1:
        raise HebbnasError(f"{key} has too few training images ({pool}) for val_fraction {vf}")
    val_idx = np.sort(order[:n_val])
    train_idx = np.sort(order[n_val : n_val + n_train])
    if given_val is not None:
        raw_val_x, raw_val_y = given_val
    else:
        raw_val_x, raw_val_y = raw_train_x[val_idx], raw_train_y[val_idx]

    train_x = _to_float_images(raw_train_x[train_idx], res, channels)
    val_x = _to_float_images(raw_val_x, res, channels)
    test_xf = _to_float_images(test_x, res, channels)

    mean = train_x.mean(dim=(0, 2, 3))
    std = train_x.std(dim=(0, 2, 3)).clamp_min(1e-6)  # a constant image set must not divide by 0

    def finish(x: torch.Tensor, y: np.ndarray) -> Split:
        x = (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
        if x.shape[1] != channels:  # grayscale -> replicate as a view, no copy
            x = x.expand(-1, channels, -1, -1)
        return Split(x, torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)))

    mean_t = tuple(float(v) for v in mean)
    std_t = tuple(float(v) for v in std)
    if len(mean_t) != channels:
        mean_t, std_t = mean_t * channels, std_t * channels
    return Dataset(
        name=key,
        train=finish(train_x, raw_train_y[train_idx]),
        val=finish(val_x, raw_val_y),
        test=finish(test_xf, test_y),
        num_classes=num_classes,
        resolution=res,
        channels=channels,
        mean=mean_t,
        std=std_t,
        classes=classes,
        seed=seed,
    )


def batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches of in-memory tensors, indexed by a (seeded) permutation; no DataLoader overhead.

    The permutation is drawn on the CPU from `generator` (so it is reproducible whatever device the
    tensors live on) and then moved to the tensors' device.
    """
    n = int(y.shape[0])
    if x.shape[0] != n:
        raise HebbnasError(f"images and labels differ in count: {x.shape[0]} != {n}")
    if batch_size < 1:
        raise HebbnasError(f"batch_size must be positive, got {batch_size}")
    if shuffle:
        idx = torch.randperm(n, generator=generator).to(y.device)
    else:
        idx = torch.arange(n, device=y.device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        sel = idx[start : start + batch_size]
        yield x[sel], y[sel]


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The usual light augmentation, per image: a random crop of the image padded by 1/8 of its size
    (edge pixels repeated, so a black border stays black) and a horizontal flip with probability 1/2.

    Offsets and flips are drawn on the CPU from `generator` (reproducible on any device); the result has
    `x`'s shape and lives on its device.
    """
    b, _, h, w = x.shape
    pad = max(1, round(min(h, w) / 8))
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    oy, ox = (torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device) for _ in range(2))
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = ox[:, None] + torch.arange(w, device=x.device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    out = padded[torch.arange(b, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()  # advanced indexing put channels last: (B, H, W, C)


# --------------------------------------------------------------------------- raw loaders


def _load_raw(
    key: str, data_dir: str | os.PathLike[str] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """(train images, train labels, test images, test labels, num_classes) as numpy.

    Images are (N, H, W) for grayscale or (N, 3, H, W) for RGB, any numeric dtype, with their
    maximum pixel value implied by the dtype (uint8 -> 255) or by the dataset (digits -> 16).
    """
    if key == "digits":
        return _load_digits()
    directory = os.fspath(data_dir) if data_dir is not None else DEFAULT_DATA_DIR[key]
    if not os.path.isdir(directory):
        raise HebbnasError(f"data directory not found: {directory}")
    if key in ("fashion-mnist", "mnist"):
        return _load_idx_dir(directory)
    return _load_cifar10_dir(directory)


def _load_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)  # 0..16 -> uint8 like the others
    labels = bunch.target.astype(np.int64)
    order = stratified_order(labels, _DIGITS_TEST_SEED)
    n_test = round(_DIGITS_TEST_FRACTION * len(labels))
    test_idx, pool_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
    return images[pool_idx], labels[pool_idx], images[test_idx], labels[test_idx], 10


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


def _load_idx_dir(directory: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
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
    return out[0], out[1], out[2], out[3], 10


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


def _load_cifar10_dir(directory: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    parts = [_read_cifar_batch(os.path.join(directory, f"data_batch_{i}")) for i in range(1, 6)]
    test_x, test_y = _read_cifar_batch(os.path.join(directory, "test_batch"))
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    return train_x, train_y, test_x, test_y, 10


# --------------------------------------------------------------------------- helpers


def _to_float_images(images: np.ndarray, resolution: int, channels: int) -> torch.Tensor:
    """uint8 images (N, H, W) or (N, 3, H, W) -> float32 (N, C', R, R) in [0, 1].

    C' is 1 for grayscale (replication happens after normalisation, as a view) and `channels` for RGB.
    """
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim == 3:
        x = x.unsqueeze(1)
    n, c, h, w = x.shape
    out = torch.empty((n, c, resolution, resolution), dtype=torch.float32)
    for start in range(0, n, _RESIZE_CHUNK):
        chunk = x[start : start + _RESIZE_CHUNK].to(torch.float32).div_(255.0)
        if (h, w) != (resolution, resolution):
            chunk = F.interpolate(
                chunk,
                size=(resolution, resolution),
                mode="bilinear",
                align_corners=False,
                antialias=resolution < max(h, w),  # antialias only matters when downsampling
            )
        out[start : start + _RESIZE_CHUNK] = chunk.clamp_(0.0, 1.0)
    if c == 3 and channels == 1:
        luma = torch.tensor(_LUMA, dtype=torch.float32).view(1, 3, 1, 1)
        out = (out * luma).sum(dim=1, keepdim=True)
    return out


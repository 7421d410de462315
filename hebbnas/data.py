"""Proxy datasets served as in-memory tensors: what search trials actually train on.

Every dataset comes back the same way, so the training loop, the probe and the search never care
which one it is: a `Dataset` whose `train`, `val` and `test` splits are `(x, y)` pairs with
`x` float32 (N, C, R, R), resized to the proxy resolution, scaled to [0, 1] and normalised with the
mean/std of the *train* split, and `y` int64 (N,).

Each dataset is one module of `hebbnas.datasets` (digits, the embedded default; fashion-mnist, mnist and
cifar10 from a directory; folder, your own images): it reads the raw images and declares its defaults.
This module does the work they share.

Validation is always carved from the official train split (stratified, seeded); test is the official
test split. Grayscale images are replicated to `channels` as an expanded (zero-copy) view: index or
call ``.contiguous()`` before editing a split in place.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from hebbnas.datasets import get_source
from hebbnas.errors import HebbnasError
from hebbnas.splits import stratified_order

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
        name: a registered dataset (`hebbnas.datasets.names()`; aliases such as ``fashion_mnist`` or
            ``cifar-10`` work).
        data_dir: directory of the raw files; the dataset's `data_dir` when None. Ignored for digits.
        resolution: square side the images are resized to; the dataset's `resolution` when None.
        channels: output channels; grayscale is replicated, RGB to 1 channel uses luminance.
        seed: seeds the validation carve and the train subset (not the digits test split).
        train_subset: keep only this many training images (stratified), for quick proxies. The
            validation split then shrinks in proportion, so that val/(train+val) stays `val_fraction`.
        val_fraction: share of the (train + val) pool used for validation, in (0, 1);
            the dataset's `val_fraction` when None. Ignored when a folder data set has its own ``val/``.
        progress: show a progress bar while a folder data set's images are decoded (the CLI decides).
        subset_at_most: `train_subset` is a ceiling (`--smoke` on a small folder): fewer images are
            used whole instead of refused.

    Raises:
        HebbnasError: unknown name, bad arguments, missing or corrupt files.
    """
    source = get_source(name)
    key = source.name
    res = source.resolution if resolution is None else int(resolution)
    if res < 1:
        raise HebbnasError(f"resolution must be positive, got {resolution}")
    if channels not in (1, 3):
        raise HebbnasError(f"channels must be 1 or 3, got {channels}")
    vf = source.val_fraction if val_fraction is None else float(val_fraction)
    if not 0.0 < vf < 1.0:
        raise HebbnasError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if train_subset is not None and train_subset < 1:
        raise HebbnasError(f"train_subset must be positive, got {train_subset}")

    raw = source.read(data_dir, res, progress)
    raw_train_x, raw_train_y, test_x, test_y = raw.train_x, raw.train_y, raw.test_x, raw.test_y
    num_classes, classes = raw.num_classes, raw.classes
    given_val = (raw.val_x, raw.val_y) if raw.val_x is not None and raw.val_y is not None else None

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

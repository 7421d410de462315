"""Proxy datasets: splits, normalisation, IDX and CIFAR-10 readers, and every bad-input error."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from hebbnas.data import Dataset, batches, load_dataset
from hebbnas.datasets import canonical_name, get_source, names
from hebbnas.datasets.idx import read_idx
from hebbnas.errors import HebbnasError

# --------------------------------------------------------------------------- synthetic files


def _idx_bytes(arr: np.ndarray) -> bytes:
    """Serialise a uint8 array as IDX (magic 0x0000 08 ndim, big-endian dims, raw data)."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _write_idx_dir(
    root: Path, *, gz: bool, n_train: int = 60, n_test: int = 20, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        data = _idx_bytes(arr)
        if gz:
            with gzip.open(root / f"{name}.gz", "wb") as fh:
                fh.write(data)
        else:
            (root / name).write_bytes(data)
    return arrays


def _write_cifar_dir(root: Path, per_batch: int = 6, n_test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, np.ndarray] = {}
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        with open(root / name, "wb") as fh:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, fh)
        out[name] = data
    return out


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", resolution=8, channels=1)


# --------------------------------------------------------------------------- digits


def test_digits_partition_is_exact_and_stratified(digits: Dataset) -> None:
    from sklearn.datasets import load_digits

    raw = load_digits().images.reshape(len(load_digits().images), -1)
    parts = []
    for split in (digits.train, digits.val, digits.test):
        x = split.x * digits.std[0] + digits.mean[0]  # undo normalisation -> [0, 1]
        parts.append(np.round(x.reshape(len(split), -1).numpy() * 16))
    got = np.concatenate(parts)
    # same multiset of images: disjoint splits that together cover the whole set
    assert got.shape == raw.shape
    assert np.array_equal(np.unique(got, axis=0, return_counts=True)[1], np.unique(raw, axis=0, return_counts=True)[1])
    assert sorted(map(tuple, got)) == sorted(map(tuple, raw))
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1078, 360, 359)  # 60/20/20
    for split in (digits.val, digits.test):
        counts = np.bincount(split.y.numpy(), minlength=10)
        assert counts.max() - counts.min() <= 2


def test_digits_splits_are_deterministic_and_seeded(digits: Dataset) -> None:
    again = load_dataset("digits", resolution=8, channels=1)
    other = load_dataset("digits", resolution=8, channels=1, seed=1)
    assert torch.equal(again.train.x, digits.train.x) and torch.equal(again.val.y, digits.val.y)
    assert not torch.equal(other.val.x, digits.val.x)  # the seed moves the validation carve...
    assert torch.equal(other.test.y, digits.test.y)  # ...but never the held-out test split
    raw_other = other.test.x * other.std[0] + other.mean[0]
    assert torch.allclose(raw_other, digits.test.x * digits.std[0] + digits.mean[0], atol=1e-6)


def test_shapes_dtypes_and_normalisation() -> None:
    ds = load_dataset("digits", resolution=20)
    assert ds.name == "digits" and ds.num_classes == 10 and ds.classes == tuple("0123456789")
    assert ds.resolution == 20 and ds.channels == 3 and len(ds.mean) == len(ds.std) == 3
    for split in (ds.train, ds.val, ds.test):
        x, y = split
        assert x.shape[1:] == (3, 20, 20) and x.dtype == torch.float32
        assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
        assert int(y.min()) >= 0 and int(y.max()) < 10
    x = ds.train.x
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    raw01 = x * ds.std[0] + ds.mean[0]
    assert float(raw01.min()) >= -1e-5 and float(raw01.max()) <= 1 + 1e-5
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # grayscale replicated
    assert torch.allclose(ds.normalize(raw01[:4]), x[:4], atol=1e-5)
    assert "digits: train 1078" in ds.summary()


def test_default_resolution_and_channels() -> None:
    assert names() == ("digits", "fashion-mnist", "mnist", "cifar10", "folder")  # found by module, in `order`
    assert {n: get_source(n).resolution for n in names()} == {"digits": 64, "fashion-mnist": 32, "mnist": 32,
                                                              "cifar10": 32, "folder": 64}
    one = load_dataset("digits", channels=1, resolution=12, train_subset=50)
    assert one.train.x.shape[1:] == (1, 12, 12) and one.mean == (pytest.approx(one.mean[0]),)


def test_train_subset_is_stratified_and_val_shrinks(digits: Dataset) -> None:
    sub = load_dataset("digits", resolution=8, channels=1, train_subset=200)
    assert len(sub.train) == 200
    assert np.bincount(sub.train.y.numpy(), minlength=10).min() >= 18
    assert len(sub.val) == round(200 * 0.25 / 0.75)  # keeps val/(train+val) at the val fraction
    assert torch.equal(sub.test.y, digits.test.y)
    with pytest.raises(HebbnasError, match="train_subset 5000 exceeds"):
        load_dataset("digits", train_subset=5000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "imagenet"}, r"unknown dataset 'imagenet' for --dataset \(known: digits, fashion-mnist, mnist, cifar10, folder\)"),
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"resolution": 0}, "resolution must be positive"),
        ({"val_fraction": 1.0}, r"val_fraction must be in \(0, 1\)"),
        ({"train_subset": 0}, "train_subset must be positive"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(HebbnasError, match=message):
        load_dataset(**{"name": "digits", **kwargs})


def test_canonical_names() -> None:
    assert canonical_name("Fashion_MNIST") == "fashion-mnist"
    assert canonical_name("CIFAR-10") == "cifar10"


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
def test_idx_dir_roundtrip(tmp_path: Path, gz: bool) -> None:
    arrays = _write_idx_dir(tmp_path, gz=gz)
    ds = load_dataset("mnist", data_dir=tmp_path, resolution=28, channels=1)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (54, 6, 20)
    assert ds.classes == tuple(str(i) for i in range(10))
    test01 = ds.test.x[:, 0] * ds.std[0] + ds.mean[0]  # official test split, original order
    assert torch.allclose(test01, torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float() / 255, atol=1e-5)
    assert ds.test.y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    small = load_dataset("fashion-mnist", data_dir=str(tmp_path), resolution=16)  # antialiased downsampling
    assert small.train.x.shape == (54, 3, 16, 16) and small.classes is not None and small.classes[0] == "T-shirt/top"


def test_idx_dotted_file_names(tmp_path: Path) -> None:
    _write_idx_dir(tmp_path, gz=False)
    for f in tmp_path.iterdir():
        f.rename(tmp_path / f.name.replace("-idx", ".idx"))
    assert len(load_dataset("mnist", data_dir=tmp_path, resolution=8).test) == 20


def test_read_idx_shape(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a-idx3-ubyte").write_bytes(_idx_bytes(arr))
    out = read_idx(tmp_path / "a-idx3-ubyte")
    assert out.shape == (2, 3, 4) and np.array_equal(out, arr) and out.flags.writeable


def _corrupt(path: Path, data: bytes) -> None:
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("magic", r"corrupt IDX file: .*train-images-idx3-ubyte\.gz \(bad magic number\)"),
        ("truncate", r"corrupt IDX file: .*train-images-idx3-ubyte\.gz \(expected \d+ bytes, found \d+\)"),
        ("gzip", r"corrupt IDX file: .*train-images-idx3-ubyte\.gz"),
        ("count", r"image/label count mismatch in .*: 60 train images, 59 labels"),
        ("labels", r"corrupt IDX file: .*train-labels-idx1-ubyte\.gz \(labels outside 0\.\.9\)"),
        ("missing", r"missing file in .*: t10k-labels-idx1-ubyte\[\.gz\]"),
    ],
)
def test_idx_errors(tmp_path: Path, damage: str, message: str) -> None:
    arrays = _write_idx_dir(tmp_path, gz=True)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    good = _idx_bytes(arrays["train-images-idx3-ubyte"])
    if damage == "magic":
        _corrupt(images, b"\x08\x03" + good[2:])
    elif damage == "truncate":
        _corrupt(images, good[:-100])
    elif damage == "gzip":
        images.write_bytes(images.read_bytes()[:50])
    elif damage == "count":
        _corrupt(tmp_path / "train-labels-idx1-ubyte.gz", _idx_bytes(arrays["train-labels-idx1-ubyte"][:59]))
    elif damage == "labels":
        _corrupt(tmp_path / "train-labels-idx1-ubyte.gz", _idx_bytes(np.full(60, 10, dtype=np.uint8)))
    elif damage == "missing":
        (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(HebbnasError, match=message) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path, resolution=8)
    assert "\n" not in str(info.value)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(HebbnasError, match=f"data directory not found: {tmp_path / 'nope'}"):
        load_dataset("mnist", data_dir=tmp_path / "nope")


@pytest.mark.skipif(
    not os.path.isdir(str(get_source("fashion-mnist").data_dir)), reason="Fashion-MNIST is not installed here"
)
def test_installed_fashion_mnist() -> None:
    ds = load_dataset("fashion-mnist", train_subset=500, resolution=16, channels=1)
    assert (len(ds.train), len(ds.test)) == (500, 10000)
    assert ds.train.x.shape[1:] == (1, 16, 16) and ds.num_classes == 10


# --------------------------------------------------------------------------- CIFAR-10


def test_cifar_dir(tmp_path: Path) -> None:
    files = _write_cifar_dir(tmp_path)
    ds = load_dataset("cifar10", data_dir=tmp_path, val_fraction=0.2)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (24, 6, 10)
    assert ds.resolution == 32 and ds.train.x.shape[1:] == (3, 32, 32) and len(set(ds.mean)) == 3
    test01 = ds.test.x * torch.tensor(ds.std).view(1, 3, 1, 1) + torch.tensor(ds.mean).view(1, 3, 1, 1)
    expected = torch.from_numpy(files["test_batch"]).float().view(-1, 3, 32, 32) / 255
    assert torch.allclose(test01, expected, atol=1e-5)
    gray = load_dataset("cifar10", data_dir=tmp_path, channels=1, resolution=16, val_fraction=0.2)
    assert gray.train.x.shape[1:] == (1, 16, 16) and len(gray.mean) == 1


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("garbage", r"corrupt CIFAR-10 batch: .*data_batch_3 \(UnpicklingError\)"),
        ("truncate", r"corrupt CIFAR-10 batch: .*data_batch_3 \(\w+\)"),
        ("shape", r"corrupt CIFAR-10 batch: .*data_batch_3 \(expected uint8 data of shape \(N, 3072\)"),
        ("count", r"image/label count mismatch in .*data_batch_3: 6 images, 5 labels"),
        ("keys", r"corrupt CIFAR-10 batch: .*data_batch_3 \(no data/labels entries\)"),
        ("missing", r"missing file in .*: data_batch_3"),
    ],
)
def test_cifar_errors(tmp_path: Path, damage: str, message: str) -> None:
    _write_cifar_dir(tmp_path)
    target = tmp_path / "data_batch_3"
    good = pickle.loads(target.read_bytes())
    if damage == "garbage":
        target.write_bytes(b"this is not a pickle")
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "shape":
        target.write_bytes(pickle.dumps({b"data": good[b"data"][:, :100], b"labels": good[b"labels"]}))
    elif damage == "count":
        target.write_bytes(pickle.dumps({b"data": good[b"data"], b"labels": good[b"labels"][:5]}))
    elif damage == "keys":
        target.write_bytes(pickle.dumps({b"pixels": good[b"data"]}))
    elif damage == "missing":
        target.unlink()
    with pytest.raises(HebbnasError, match=message) as info:
        load_dataset("cifar10", data_dir=tmp_path)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- batches


def test_batches_cover_everything_once() -> None:
    x = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1).expand(-1, 3, 2, 2)
    y = torch.arange(10)
    plain = list(batches(x, y, 4))
    assert [len(b[1]) for b in plain] == [4, 4, 2] and torch.equal(torch.cat([b[1] for b in plain]), y)
    a = [b[1] for b in batches(x, y, 4, shuffle=True, generator=torch.Generator().manual_seed(3))]
    b = [b[1] for b in batches(x, y, 4, shuffle=True, generator=torch.Generator().manual_seed(3))]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert sorted(torch.cat(a).tolist()) == list(range(10)) and not torch.equal(torch.cat(a), y)
    for xb, yb in batches(x, y, 4, shuffle=True, generator=torch.Generator().manual_seed(3)):
        assert torch.equal(xb[:, 0, 0, 0], yb.float())  # images stay paired with their labels
    assert [len(b[1]) for b in batches(x, y, 4, drop_last=True)] == [4, 4]
    with pytest.raises(HebbnasError, match="images and labels differ in count: 10 != 9"):
        list(batches(x, y[:9], 4))


STRIPES = '''
    """A dataset in one file: 16x16 gray images of horizontal or vertical stripes, generated, no files."""

    from __future__ import annotations

    import numpy as np

    from hebbnas.datasets import DatasetSource, RawData, register


    @register
    class Stripes(DatasetSource):
        name = "stripes"
        aliases = ("bars",)
        resolution = 16
        val_fraction = 0.2
        classes = ("horizontal", "vertical")

        def read(self, data_dir, resolution, progress):  # noqa: ANN001, ANN201 - as DatasetSource.read
            def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
                rng = np.random.default_rng(seed)
                y = np.arange(n) % 2
                period = rng.integers(2, 6, n)
                lines = (np.arange(16)[None, :] // period[:, None]) % 2 * 255  # (n, 16)
                x = np.where(y[:, None, None] == 0, lines[:, :, None], lines[:, None, :])
                return np.broadcast_to(x, (n, 16, 16)).astype(np.uint8), y.astype(np.int64)

            (tx, ty), (sx, sy) = split(100, 0), split(40, 1)
            return RawData(tx, ty, sx, sy, 2, self.classes)
'''


def test_a_new_dataset_is_one_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A dataset written as one new module: `load_dataset` (and so --dataset, proxy.dataset) takes its name
    and aliases, with its own defaults; the shared carve, subset and normalisation apply to it."""
    from hebbnas.cli import main
    from hebbnas.datasets import DATASETS
    from tests.plugins import plugged

    with pytest.raises(HebbnasError, match="unknown dataset 'stripes' for --dataset"):
        load_dataset("stripes")
    with plugged(tmp_path, "stripes_dataset", STRIPES, DATASETS, "stripes"):
        ds = load_dataset("Bars", channels=1)
        assert ds.name == "stripes" and ds.classes == ("horizontal", "vertical") and ds.num_classes == 2
        assert ds.resolution == 16 and (len(ds.train), len(ds.val), len(ds.test)) == (80, 20, 40)
        assert np.bincount(ds.val.y.numpy()).tolist() == [10, 10]  # stratified carve of the module's train
        assert abs(float(ds.train.x.mean())) < 1e-4  # normalised with the train split's statistics
        x = ds.test.x[:, 0]  # horizontal stripes are constant along a row, vertical ones along a column
        rows_flat = (x.std(dim=2) < 1e-5).all(dim=1)
        assert torch.equal(rows_flat, ds.test.y == 0)
        assert len(load_dataset("stripes", train_subset=40).train) == 40
        assert main(["train", "--help"]) == 0
        assert "stripes" in capsys.readouterr().out
    assert "stripes" not in names()

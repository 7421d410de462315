"""`--dataset folder --data-dir DIR`: your own PNG/JPEG images, with or without given splits; bad folders."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hebbnas.cli import main
from hebbnas.data import load_dataset
from hebbnas.datasets import names
from hebbnas.errors import HebbnasError
from hebbnas.imagefolder import cache_dir, load_folder
from tests.builders import make_folder, image


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("HEBBNAS_CACHE", str(d))
    return d


def test_folder_without_splits_is_split_stratified(tmp_path: Path) -> None:
    d = make_folder(tmp_path / "imgs", per_class=10)
    (d / "notes.txt").write_text("ignored")
    (d / "left" / "README").write_text("not an image")
    assert "folder" in names()
    data = load_dataset("folder", data_dir=d, resolution=24, seed=1)
    assert data.classes == ("left", "spot", "top") and data.num_classes == 3
    assert data.train.x.shape[1:] == (3, 24, 24) and data.train.x.dtype == torch.float32
    n = len(data.train) + len(data.val) + len(data.test)
    assert n == 30 and len(data.test) == 6
    for split in (data.train, data.val, data.test):
        assert set(split.y.tolist()) == {0, 1, 2}  # stratified: every class in every split
    # the test split does not move with the seed; the val carve does
    other = load_dataset("folder", data_dir=d, resolution=24, seed=2)
    assert torch.equal(other.test.y, data.test.y) and torch.allclose(other.test.x * torch.tensor(other.std).view(1, -1, 1, 1),
                                                                      other.test.x * torch.tensor(other.std).view(1, -1, 1, 1))
    # grayscale-only folders stay one channel underneath (replicated on request)
    gray = load_dataset("folder", data_dir=make_folder(tmp_path / "gray", rgb=False), resolution=16, channels=1)
    assert gray.train.x.shape[1:] == (1, 16, 16)


def test_given_splits_are_used_as_given(tmp_path: Path) -> None:
    root = tmp_path / "split"
    make_folder(root / "train", per_class=8)
    make_folder(root / "val", per_class=2)
    make_folder(root / "test", per_class=3)
    data = load_dataset("folder", data_dir=root, resolution=32)
    assert (len(data.train), len(data.val), len(data.test)) == (24, 6, 9)
    sub = load_dataset("folder", data_dir=root, resolution=32, train_subset=12)
    assert (len(sub.train), len(sub.val), len(sub.test)) == (12, 6, 9)
    # without val/, validation is carved from train/
    (root / "val").rename(tmp_path / "val-away")
    carved = load_dataset("folder", data_dir=root, resolution=32)
    assert len(carved.train) + len(carved.val) == 24 and len(carved.test) == 9 and len(carved.val) == 6


def test_decoded_images_are_cached_per_contents_and_resolution(tmp_path: Path, own_cache: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    d = make_folder(tmp_path / "imgs")
    first = load_folder(d, 20)
    assert cache_dir() == own_cache and len(list(own_cache.glob("*.pt"))) == 1
    import hebbnas.imagefolder as folder

    calls: list[Path] = []
    real = folder._decode
    monkeypatch.setattr(folder, "_decode", lambda p, r: calls.append(p) or real(p, r))
    again = load_folder(d, 20)
    assert calls == [] and np.array_equal(again.train_x, first.train_x)  # served from the cache
    load_folder(d, 28)
    assert len(calls) == 18  # another resolution is decoded again
    calls.clear()
    p = d / "top" / "0.png"
    image(0, 99, (30, 30), "L").save(p)
    os.utime(p, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = load_folder(d, 20)
    assert len(calls) == 18  # an edited folder is decoded again
    assert not (np.array_equal(changed.train_x, first.train_x) and np.array_equal(changed.test_x, first.test_x))


@pytest.mark.parametrize(("build", "match"), [
    (lambda r: r.mkdir(), "no images in"),
    (lambda r: (make_folder(r), [p.unlink() for p in (r / "top").iterdir()],
                [p.unlink() for p in (r / "spot").iterdir()]), "one class only .'left'."),
    (lambda r: (make_folder(r), (r / "top" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")), r"corrupt image: .*top/3\.png"),
    (lambda r: (make_folder(r / "train"), make_folder(r / "test", classes=("left", "top"))),
     r"class 'spot' is missing from .*test"),
    (lambda r: (make_folder(r / "train"), make_folder(r / "test", classes=("left", "top", "spot", "cloud"))),
     r"class 'cloud' of .*test is missing from .*train"),
    (lambda r: make_folder(r / "train"), "needs both train/ and test/"),
    (lambda r: make_folder(r, per_class=2), "at least 3 per class"),
])
def test_bad_folders_are_one_line_errors(tmp_path: Path, build, match: str) -> None:  # noqa: ANN001
    root = tmp_path / "bad"
    build(root)
    with pytest.raises(HebbnasError, match=match) as e:
        load_dataset("folder", data_dir=root, resolution=16)
    assert "\n" not in str(e.value)


def test_cli_takes_a_folder_and_names_a_missing_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "googlenet", "--dataset", "folder", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--dataset folder needs --data-dir" in err
    assert main(["train", "googlenet", "--dataset", "folder", "--data-dir", str(tmp_path / "nope")]) == 2
    assert "data directory not found" in capsys.readouterr().err
    for cmd in ("train", "probe", "search"):
        try:
            main([cmd, "--help"])
        except SystemExit:
            pass
        out = " ".join(capsys.readouterr().out.split())
        assert "folder" in out and "class subfolders" in out, cmd


def test_train_command_on_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    d = make_folder(tmp_path / "imgs", per_class=5)
    out = tmp_path / "trained"
    assert main(["train", "googlenet", "--dataset", "folder", "--data-dir", str(d), "--epochs", "1",
                 "--resolution", "32", "--threads", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "folder" in text and "test acc" in text.lower()
    import json

    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"] == "folder" and m["resolution"] == 32

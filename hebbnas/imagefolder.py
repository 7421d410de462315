"""Your own images as a proxy data set: ``--dataset folder --data-dir DIR``.

DIR holds one subfolder of PNG/JPEG images per class (``DIR/cat/1.png``), or ``train/``, ``val/`` and
``test/`` each holding those class subfolders, used as given (``val/`` may be left out: validation is
then carved from ``train/``). Without splits, a fixed stratified 20% of each class is held out as test
(independent of the seed, as for digits) and validation is carved from the rest.

Images are decoded with Pillow, grayscale or RGB, any size (a folder with any colour image is loaded
as RGB), and resized to the proxy resolution (square, bilinear with antialiasing). The decoded uint8
tensors are cached per folder contents and resolution in `cache_dir()` (``$HEBBNAS_CACHE``, else
``$XDG_CACHE_HOME/hebbnas/folders``, else ``~/.cache/hebbnas/folders``), keyed by every image's path,
size and modification time, so an edited folder is decoded again and an unchanged one is not.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hebbnas import atomic
from hebbnas.errors import HebbnasError, first_line
from hebbnas.progress_bar import bar
from hebbnas.splits import stratified_order

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "val", "test")
_TEST_FRACTION = 0.2
_TEST_SEED = 0
_CACHE_VERSION = 1


@dataclass(frozen=True, eq=False)
class FolderData:
    """Decoded images, uint8 (N, R, R) when every image is grayscale, else (N, 3, R, R); labels int64."""

    classes: tuple[str, ...]
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    val_x: np.ndarray | None = None
    val_y: np.ndarray | None = None


def cache_dir() -> Path:
    """Where decoded folders are cached (see the module docstring)."""
    if os.environ.get("HEBBNAS_CACHE"):
        return Path(os.environ["HEBBNAS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hebbnas" / "folders"


def scan(directory: str | os.PathLike[str]) -> tuple[tuple[str, ...], dict[str, list[tuple[Path, int]]]]:
    """Classes and, per split (``all`` when DIR has no splits), the (image path, label) pairs.

    Raises:
        HebbnasError: missing or empty folder, one class only, a class missing from a split.
    """
    root = Path(directory)
    if not root.is_dir():
        raise HebbnasError(f"data directory not found: {root}")
    subdirs = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    present = [s for s in SPLITS if s in subdirs]
    if present:
        if "train" not in present or "test" not in present:
            raise HebbnasError(f"{root} has {'/, '.join(present)}/ but needs both train/ and test/ "
                               "(val/ is optional), or no split folders at all")
        per_split = {s: _class_files(root / s) for s in present}
        classes = sorted(per_split["train"])
        for s in present:
            missing = [c for c in classes if c not in per_split[s]]
            extra = [c for c in per_split[s] if c not in per_split["train"]]
            if missing:
                raise HebbnasError(f"class {missing[0]!r} is missing from {root / s} (it is in {root / 'train'})")
            if extra:
                raise HebbnasError(f"class {extra[0]!r} of {root / s} is missing from {root / 'train'}")
    else:
        per_split = {"all": _class_files(root)}
        classes = sorted(per_split["all"])
    if not classes:
        raise HebbnasError(f"no images in {root}: expected one subfolder of PNG/JPEG images per class, "
                           "or train/ and test/ (and optionally val/) holding them")
    if len(classes) < 2:
        raise HebbnasError(f"{root} has one class only ({classes[0]!r}); a classifier needs at least two")
    index = {c: i for i, c in enumerate(classes)}
    return tuple(classes), {s: [(f, index[c]) for c in sorted(files) for f in files[c]]
                            for s, files in per_split.items()}


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """class name -> its image files (sorted); class folders without images are left out."""
    out: dict[str, list[Path]] = {}
    for d in sorted(folder.iterdir()):
        if not d.is_dir() or d.name.startswith("."):
            continue
        files = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(d).parts))
        if files:
            out[d.name] = files
    return out


def load_folder(directory: str | os.PathLike[str], resolution: int, *, progress: bool = False,
                use_cache: bool = True) -> FolderData:
    """The images of `directory` at `resolution`, from the cache when the folder is unchanged."""
    classes, splits = scan(directory)
    root = Path(directory).resolve()
    key = _cache_key(root, classes, splits, resolution)
    cached = _read_cache(key) if use_cache else None
    if cached is not None:
        return cached
    rgb = False
    decoded: dict[str, tuple[list[np.ndarray], np.ndarray]] = {}
    total = sum(len(v) for v in splits.values())
    items = [(s, path, label) for s, files in splits.items() for path, label in files]
    arrays: dict[str, list[np.ndarray]] = {s: [] for s in splits}
    for s, path, _label in bar(items, enabled=progress, total=total, desc=f"decoding {root.name}", unit="img"):
        img = _decode(path, resolution)
        rgb = rgb or img.ndim == 3
        arrays[s].append(img)
    for s, files in splits.items():
        decoded[s] = (arrays[s], np.array([lbl for _, lbl in files], dtype=np.int64))

    def stack(images: list[np.ndarray]) -> np.ndarray:
        if rgb:
            images = [np.repeat(a[None], 3, axis=0) if a.ndim == 2 else a.transpose(2, 0, 1) for a in images]
        return np.ascontiguousarray(np.stack(images)) if images else np.zeros((0, resolution, resolution), np.uint8)

    if "all" in decoded:
        x, y = stack(decoded["all"][0]), decoded["all"][1]
        too_few = [c for c in range(len(classes)) if int((y == c).sum()) < 3]
        if too_few:
            raise HebbnasError(f"class {classes[too_few[0]]!r} of {root} has {int((y == too_few[0]).sum())} image(s); "
                               "a stratified train/val/test split needs at least 3 per class")
        order = stratified_order(y, _TEST_SEED)
        n_test = max(len(classes), round(_TEST_FRACTION * len(y)))
        test_idx, pool_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
        missing = sorted(set(range(len(classes))) - set(y[test_idx].tolist()))
        if missing:
            raise HebbnasError(f"class {classes[missing[0]]!r} is missing from the test split of {root}")
        data = FolderData(classes, x[pool_idx], y[pool_idx], x[test_idx], y[test_idx])
    else:
        val = decoded.get("val")
        data = FolderData(classes, stack(decoded["train"][0]), decoded["train"][1], stack(decoded["test"][0]),
                          decoded["test"][1], None if val is None else stack(val[0]), None if val is None else val[1])
    if use_cache:
        _write_cache(key, data)
    return data


def _decode(path: Path, resolution: int) -> np.ndarray:
    """One image as uint8 (R, R) grayscale or (R, R, 3) RGB; a file Pillow cannot read is named."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("1", "L", "I", "I;16", "F", "LA"):
                im = im.convert("L")
            elif im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB").convert("RGB")
            else:
                im = im.convert("RGB")
            if im.size != (resolution, resolution):
                im = im.resize((resolution, resolution), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise HebbnasError(f"corrupt image: {path} ({first_line(e)})") from None


def _cache_key(root: Path, classes: tuple[str, ...], splits: dict[str, list[tuple[Path, int]]], resolution: int) -> str:
    h = hashlib.sha256(f"v{_CACHE_VERSION}|{root}|{resolution}|{'/'.join(classes)}".encode())
    for s in sorted(splits):
        for path, label in splits[s]:
            st = path.stat()
            h.update(f"{s}|{path.relative_to(root)}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _read_cache(key: str) -> FolderData | None:
    import torch

    p = cache_dir() / f"{key}.pt"
    if not p.is_file():
        return None
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
        arr = {k: (None if v is None else v.numpy()) for k, v in obj["arrays"].items()}
        return FolderData(tuple(obj["classes"]), arr["train_x"], arr["train_y"], arr["test_x"], arr["test_y"],
                          arr.get("val_x"), arr.get("val_y"))
    except Exception:  # noqa: BLE001 - a broken cache entry is decoded again
        return None


def _write_cache(key: str, data: FolderData) -> None:
    import torch

    d = cache_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        arrays = {k: (None if v is None else torch.from_numpy(v))
                  for k, v in (("train_x", data.train_x), ("train_y", data.train_y), ("test_x", data.test_x),
                               ("test_y", data.test_y), ("val_x", data.val_x), ("val_y", data.val_y))}
        with atomic.replacing(d / f"{key}.pt") as tmp:
            torch.save({"classes": list(data.classes), "arrays": arrays}, tmp)
    except OSError:
        pass  # the cache is an optimisation: an unwritable cache folder costs a decode next time

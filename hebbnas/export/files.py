"""Where an export goes: the output path checked before any work, written atomically, never over its input."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hebbnas.errors import HebbnasError


def resolve_out(out: Path, file_name: str, side_json: bool) -> Path:
    """The file to write (a directory gets `file_name`); fail now if it cannot be written. With
    `side_json`, the metadata JSON beside it must be writable too."""
    if out.is_dir():
        out = out / file_name
    targets = [out]
    if side_json:
        if out.suffix == ".json":
            raise HebbnasError(f"{out}: a state_dict export needs a non-.json name (its metadata goes to a .json beside it)")
        targets.append(out.with_suffix(".json"))
    parent = out.parent
    if not parent.is_dir():
        raise HebbnasError(f"cannot write {out}: directory {parent} does not exist")
    for t in targets:
        if t.is_dir():
            raise HebbnasError(f"cannot write {t}: it is a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".hebbnas-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise HebbnasError(f"cannot write {out}: {e.strerror or e}") from None
    return out


def refuse_own_input(targets: list[Path], source: Path) -> None:
    """An export never replaces the checkpoint it reads (``best/model.pt --format state_dict`` would)."""
    for t in targets:
        if t.exists() and source.exists() and os.path.samefile(t, source):
            raise HebbnasError(f"--out {t} is the checkpoint being exported; choose another output")


@contextlib.contextmanager
def staging(target: Path) -> Iterator[Path]:
    """A temporary folder beside `target`: write there, then `publish` what it holds; removed on any error."""
    d = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        yield d
    finally:
        for p in d.iterdir():
            with contextlib.suppress(OSError):
                p.unlink()
        with contextlib.suppress(OSError):
            d.rmdir()


def publish(tmp: Path, target: Path) -> None:
    """Move a finished temporary file into place (readable by others: an export is meant to be shared)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, target)


def format_size(n: int) -> str:
    """Human-readable byte count for CLI output."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} GB"

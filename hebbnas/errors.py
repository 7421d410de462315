"""The one exception type the CLI turns into a one-line message."""

from __future__ import annotations


class HebbnasError(Exception):
    """Bad input or an impossible request; the message is shown to the user as one line."""


def error_line(err: BaseException | str | None) -> str:
    """One line for a trial's error: a HebbnasError's own message, else the last line of the text.

    A trial's HebbnasError reaches the driver wrapped in Ray's traceback text, hence the search for it.
    """
    if err is None:
        return ""
    text = str(err).strip()
    for line in reversed(text.splitlines()):
        if "HebbnasError" in line:
            return line.split("HebbnasError:", 1)[-1].strip()
    if isinstance(err, HebbnasError):
        return text.splitlines()[0] if text else "HebbnasError"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    last = lines[-1].strip()[:300] if lines else ""
    if isinstance(err, BaseException) and type(err).__module__.split(".")[0] not in ("ray",):
        return f"{type(err).__name__}: {last}" if last else type(err).__name__
    return last or (type(err).__name__ if isinstance(err, BaseException) else "error")


def first_line(err: BaseException) -> str:
    """An exception's message in one line (its first), or its type's name when it has none: the reason a
    one-line error gives."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def one_line(err: BaseException) -> str:
    """``Type: first line`` of an exception, for a one-line error that wraps a library's exception."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")

"""The one exception type the CLI turns into a one-line message."""

from __future__ import annotations


class HebbnasError(Exception):
    """Bad input or an impossible request; the message is shown to the user as one line."""

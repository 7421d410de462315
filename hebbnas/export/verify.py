"""The one check every export passes before it is moved into place: the written file, loaded back the way
a deployer loads it, must reproduce the eager model's logits within its format's tolerance."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from hebbnas.errors import HebbnasError, one_line
from hebbnas.export.common import example
from hebbnas.export.formats import Tolerance


def check_shapes(meta: Mapping[str, Any], shape: tuple[int, int, int]) -> list[tuple[int, int, int, int]]:
    """The inputs a file is checked on: the deploy shape (batch 3); with free height and width also the
    proxy resolution (rounded to the accepted multiple), and an odd size when any size is accepted."""
    c, h, w = shape
    hd = (meta.get("dynamic") or {}).get("height") or {}
    if hd.get("max") is not None:  # a fixed-size program
        return [(3, c, h, w), (1, c, h, w)]
    m = int(hd.get("multiple_of") or 1)
    lo = int(hd.get("min") or 1)
    r = -(-max(int(meta.get("resolution") or 0), lo) // m) * m
    shapes = [(3, c, h, w), (1, c, r, r)]
    if m == 1:
        shapes.append((2, c, lo + 5, lo + 18))
    return shapes


def verify(eager: nn.Module, loaded: nn.Module, meta: Mapping[str, Any], shape: tuple[int, int, int],
           tol: Tolerance, what: str = "exported model") -> float:
    """Compare `loaded` with `eager` on `check_shapes`; return the largest absolute difference, or raise
    one line (the caller has written nothing yet) when a shape differs or a value is out of tolerance."""
    worst = 0.0
    with torch.no_grad():
        for s in check_shapes(meta, shape):
            x = example(s[0], s[1:])
            ref = eager(x)
            try:
                got = loaded(x)
            except Exception as e:  # noqa: BLE001
                raise HebbnasError(f"the {what} fails on input {tuple(s)}: {one_line(e)}; nothing written") from None
            if got.shape != ref.shape:
                raise HebbnasError(f"the {what} gives shape {tuple(got.shape)} on input {tuple(s)}, PyTorch "
                                   f"{tuple(ref.shape)}; nothing written")
            diff = float((got - ref).abs().max())
            atol = tol.atol * (max(1.0, float(ref.abs().max())) if tol.scaled else 1.0)
            if not torch.allclose(got, ref, rtol=tol.rtol, atol=atol):
                raise HebbnasError(f"the {what} disagrees with PyTorch on input {tuple(s)}: max abs difference "
                                   f"{diff:.3g} (tolerance {atol:.3g} + {tol.rtol:g} x |logits|); nothing written")
            worst = max(worst, diff)
    return worst

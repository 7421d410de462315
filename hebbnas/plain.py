"""Plain values: what JSON and YAML files hold, made from what the code computes with.

Metrics, settings and reports carry numpy and torch scalars, tuples, NaN and pandas' NA; every file writer
turns them into plain Python the same way here.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any


def plain(obj: Any) -> Any:
    """JSON-safe copy: numpy/tensor scalars to Python numbers, NaN/inf/NA to None, tuples and arrays to lists,
    mapping keys to text; anything else unknown to its text."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, str):
        return str(obj)  # str subclasses (torch.__version__) would not survive torch.load(weights_only=True)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if type(obj).__name__ == "NAType":  # pandas' NA (nullable integer columns)
        return None
    torch = sys.modules.get("torch")  # a tensor exists only where torch was imported
    if torch is not None and isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return plain(obj.item())
    if getattr(obj, "ndim", 0) and hasattr(obj, "tolist"):  # a numpy array stays a list, even of one element
        return plain(obj.tolist())
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        try:
            return plain(obj.item())
        except (TypeError, ValueError):
            pass
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return plain(obj.tolist())
    return str(obj)

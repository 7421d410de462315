"""Statistics the analysis scripts share, on scipy.stats (the zoo's own helpers live in zoo.py until
they move here)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def partial_spearman(x: Sequence[float], y: Sequence[float], z: Sequence[float]) -> float:
    """Spearman correlation of x and y with z held fixed: the Pearson partial correlation of the ranks,
    r_xy.z = (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2)). What a score adds beyond z (e.g. the
    parameter count)."""
    ranks = np.column_stack([stats.rankdata(a) for a in (x, y, z)])
    if (ranks.std(axis=0) == 0).any():  # a constant input: no rank correlation is defined
        return float("nan")
    r = np.corrcoef(ranks, rowvar=False)
    rxy, rxz, ryz = r[0, 1], r[0, 2], r[1, 2]
    den = math.sqrt(max((1 - rxz ** 2) * (1 - ryz ** 2), 0.0))
    return float("nan") if den == 0 or math.isnan(den) else float((rxy - rxz * ryz) / den)


def partial_spearman_boot(x: Sequence[float], y: Sequence[float], z: Sequence[float], n_boot: int = 2000,
                          rng: np.random.Generator | None = None) -> tuple[float, float, float]:
    """`partial_spearman` with a bootstrap 95% interval over the items (resampled with replacement)."""
    x, y, z = (np.asarray(a, dtype=float) for a in (x, y, z))
    rng = rng or np.random.default_rng(0)
    boots = [partial_spearman(x[i], y[i], z[i]) for i in (rng.integers(0, x.size, x.size) for _ in range(n_boot))]
    boots = [b for b in boots if not math.isnan(b)]
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (math.nan, math.nan)
    return partial_spearman(x, y, z), float(lo), float(hi)

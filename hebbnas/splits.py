"""Seeded, stratified orders of a data set's items: how the proxies carve validation and test splits.

Shared by the built-in data sets (`hebbnas.data`) and your own image folders (`hebbnas.imagefolder`).
"""

from __future__ import annotations

import numpy as np


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A seeded permutation of indices in which every prefix (and window) is close to stratified.

    Each class's members are shuffled, then all members are interleaved by their fractional rank
    within their class, so taking the first k indices takes ~k * p_c of each class c.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    key = np.empty(n, dtype=np.float64)
    shuffled = labels[perm]
    for c in np.unique(labels):
        pos = np.flatnonzero(shuffled == c)  # positions in perm, in shuffled order
        key[pos] = (np.arange(len(pos)) + rng.random()) / len(pos)  # random phase per class
    return perm[np.argsort(key, kind="stable")]

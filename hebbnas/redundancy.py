"""How redundant each Inception branch's output is, from a probe: the statistic the probe-guided
strategies move width by.

A branch's output channels are a slice of the next Inception module's input, so the probe already
holds their correlation (the last module's branches feed the head, which the probe does not see: they
get no value and are left alone). The
effective rank of that slice (exp of the entropy of its normalised eigenvalues) counts the independent
directions the branch's units span; divided by the branch's width it is comparable across widths:

    redundancy = 1 - effective rank / width        0: every unit independent; near 1: they repeat each other

Dead units (zero variance) add no direction, so they count as redundant. Values are keyed by the
topology's own names: (module, branch) with branch in b1 (1x1), b2 (3x3 with its reduction), b3 (5x5
with its reduction), b4 (pool projection).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hebbnas.errors import HebbnasError
from hebbnas.score import effective_rank
from hebbnas.topology import BRANCHES

if TYPE_CHECKING:
    from hebbnas.probe import ProbeResult
    from hebbnas.topology import Topology

Branch = tuple[str, str]


def branch_redundancy(t: Topology, probe: ProbeResult) -> dict[Branch, float]:
    """1 - effective rank / width of the output slice of every non-empty branch whose output the probe
    saw, for the network `t` that was probed (a width proxy's narrowed copy when trials train one)."""
    return {b: redundancy(c) for b, c in branch_correlations(t, probe).items()}


def without_dead(corr: np.ndarray, dead: np.ndarray | None) -> np.ndarray:
    """`corr` with the rows and columns of `dead` channels zero, diagonal included: the probe stores a 1
    on a dead channel's diagonal (`ModuleStats.corr`), which would count it as one independent direction."""
    corr = np.asarray(corr, dtype=np.float64)
    if dead is None or not np.any(dead):
        return corr
    out = corr.copy()
    out[dead, :] = 0.0
    out[:, dead] = 0.0
    return out


def redundancy(corr: np.ndarray, dead: np.ndarray | None = None) -> float:
    """1 - effective rank / channels of one correlation matrix (a branch's output slice, or a whole
    module's input): 0 when every channel is independent, near 1 when they repeat each other. With
    `dead` (a mask), dead channels add no direction (see `without_dead`)."""
    return 1.0 - effective_rank(without_dead(corr, dead)) / corr.shape[0]


def components_for_energy(corr: np.ndarray, energy: float, dead: np.ndarray | None = None) -> tuple[int, float]:
    """The fewest principal components (eigen-directions of the correlation, largest first) whose
    eigenvalues hold at least `energy` of the total, and the share they actually hold (channels with a
    zero row hold none; with `dead`, dead channels are zeroed first, see `without_dead`). An all-dead
    matrix: one component holding nothing."""
    ev = np.sort(np.clip(np.linalg.eigvalsh(without_dead(corr, dead)), 0.0, None))[::-1]
    total = ev.sum()
    if total <= 0:
        return 1, 0.0
    share = np.cumsum(ev) / total
    k = min(int(np.searchsorted(share, energy - 1e-12) + 1), corr.shape[0])
    return k, float(share[k - 1])


def kept_fraction(corr: np.ndarray, energy: float) -> float:
    """The share of a branch's units needed to hold `energy` of its output's variance: the fewest
    eigen-directions of its correlation whose eigenvalues sum to `energy` of the total, over its width
    (dead units hold none)."""
    return components_for_energy(corr, energy)[0] / corr.shape[0]


def branch_correlations(t: Topology, probe: ProbeResult) -> dict[Branch, np.ndarray]:
    """The correlation of each non-empty branch's output channels, sliced from the next module's input."""
    points = t.module_names[1:]
    missing = [p for p in points if p not in probe.modules]
    if missing:
        raise HebbnasError(f"the probe lacks {', '.join(missing)}: it was taken on another network")
    out: dict[Branch, np.ndarray] = {}
    for m, point in zip(t.modules, points):
        corr = probe.modules[point].corr
        if corr.shape[0] != m.out_channels:
            raise HebbnasError(f"{point} has {corr.shape[0]} channels, {m.name} outputs {m.out_channels}: "
                               "probe and topology differ")
        start = 0
        for b in BRANCHES:
            w = getattr(m, b)
            if w:
                out[(m.name, b)] = corr[start:start + w, start:start + w]
            start += w
    return out

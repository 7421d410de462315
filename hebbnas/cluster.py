"""Correlated channels -> clusters -> spatial scale (1, 3 or 5) of each cluster.

Arora et al.'s construction groups units whose outputs are highly correlated; each tight group becomes
one unit of the next layer. Here the groups are clusters of the probe's C x C correlation matrix
(distance 1 - |r|: anti-correlated channels carry the same information), and a cluster's spatial scale
says whether a 1x1, 3x3 or 5x5 convolution covers it, from how its correlation decays over the offset
rings measured by the probe. Pure numpy/scipy/sklearn values in, values out.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.cluster import hierarchy
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform

from hebbnas.correlation import SYM_TOL, check_dead, partial_correlation_on_mean
from hebbnas.errors import HebbnasError

__all__ = [
    "METHODS",
    "ClusterSummary",
    "ClusterScales",
    "cluster_correlation",
    "linkage_matrix",
    "summarize_clusters",
    "partial_correlation_on_mean",
    "cluster_scales",
]

METHODS: tuple[str, ...] = ("average", "complete", "spectral")


# ------------------------------------------------------------------------------------------ validation


def _check_corr(corr: object, what: str = "correlation matrix") -> np.ndarray:
    """A finite, square, symmetric float64 matrix with entries in [-1, 1], or HebbnasError."""
    a = np.asarray(corr, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise HebbnasError(f"{what} must be square (C x C), got shape {a.shape}")
    if a.shape[0] == 0:
        raise HebbnasError(f"{what} is empty")
    if not np.isfinite(a).all():
        raise HebbnasError(f"{what} has non-finite entries (NaN or inf)")
    if not np.allclose(a, a.T, rtol=0.0, atol=SYM_TOL):
        raise HebbnasError(f"{what} is not symmetric (max |r_ij - r_ji| = {np.abs(a - a.T).max():.3g})")
    if np.abs(a).max() > 1.0 + SYM_TOL:
        raise HebbnasError(f"{what} has entries outside [-1, 1] (max |r| = {np.abs(a).max():.3g})")
    return a


def _check_labels(labels: object, c: int) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.shape != (c,) or not np.issubdtype(lab.dtype, np.integer):
        raise HebbnasError(f"labels must be an integer array of length {c}, got {lab.dtype} {lab.shape}")
    if c and (lab.min() < 0 or set(np.unique(lab).tolist()) != set(range(int(lab.max()) + 1))):
        raise HebbnasError("labels must be 0..K-1 with every cluster non-empty")
    return lab.astype(np.int64)


def _relabel(raw: np.ndarray) -> np.ndarray:
    """Labels 0..K-1 numbered in order of each cluster's first (lowest-index) channel."""
    _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse].astype(np.int64)


# ------------------------------------------------------------------------------------------ clustering


def _distance(corr: np.ndarray) -> np.ndarray:
    """Condensed distance 1 - |r| (anti-correlation counts as correlation)."""
    d = 1.0 - np.abs(corr)
    d = np.clip((d + d.T) / 2.0, 0.0, 1.0)
    np.fill_diagonal(d, 0.0)
    return squareform(d, checks=False)


def linkage_matrix(corr: np.ndarray, method: str = "average") -> np.ndarray:
    """scipy linkage matrix (C-1, 4) on 1 - |r|, for dendrogram plots; method "average" or "complete"."""
    a = _check_corr(corr)
    if method not in ("average", "complete"):
        raise HebbnasError(f"linkage_matrix: unknown method {method!r} (use 'average' or 'complete')")
    if a.shape[0] < 2:
        return np.zeros((0, 4))
    return hierarchy.linkage(_distance(a), method=method)


def _hierarchical(a: np.ndarray, method: str, threshold: float, max_clusters: int | None) -> np.ndarray:
    if a.shape[0] == 1:
        return np.zeros(1, dtype=np.int64)
    z = hierarchy.linkage(_distance(a), method=method)
    raw = hierarchy.fcluster(z, t=threshold, criterion="distance")
    if max_clusters is not None and raw.max() > max_clusters:
        raw = hierarchy.fcluster(z, t=max_clusters, criterion="maxclust")
    return raw


def _eigengap_k(affinity: np.ndarray, k_max: int) -> int:
    """Number of clusters at the largest gap of the normalised Laplacian's smallest eigenvalues."""
    deg = affinity.sum(axis=1)
    inv = 1.0 / np.sqrt(deg)
    lap = np.eye(len(deg)) - affinity * inv[:, None] * inv[None, :]
    eig = np.linalg.eigvalsh(lap)[: k_max + 1]
    if len(eig) < 2:
        return 1
    return int(np.argmax(np.diff(eig))) + 1


def _spectral_fit(aff: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import SpectralClustering

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "graph is not fully connected"
        model = SpectralClustering(
            n_clusters=k, affinity="precomputed", assign_labels="cluster_qr", random_state=seed
        )
        return np.asarray(model.fit_predict(aff), dtype=np.int64)


def _spectral(a: np.ndarray, threshold: float, max_clusters: int | None, seed: int) -> np.ndarray:
    """Spectral clustering of the affinity |r|, with pairs farther than ``threshold`` (1 - |r|) cut.

    Channels linked to nothing are singletons; on the rest the number of clusters is the eigengap
    estimate (searched up to half the channels), never below the number of connected components. On
    a connected graph without clear blocks the largest gap is often the first one, i.e. one cluster. Over ``max_clusters``, one spectral
    clustering of all live channels with exactly ``max_clusters`` clusters is used instead.
    """
    c = a.shape[0]
    aff = np.abs(a)
    aff[aff < 1.0 - threshold] = 0.0
    np.fill_diagonal(aff, 1.0)
    labels = np.full(c, -1, dtype=np.int64)
    linked = (aff > 0).sum(axis=1) > 1
    isolated = np.flatnonzero(~linked)
    labels[isolated] = np.arange(len(isolated))
    idx = np.flatnonzero(linked)
    if len(idx):
        sub = aff[np.ix_(idx, idx)]
        n_comp, comp = connected_components(sub > 0, directed=False)
        k = max(_eigengap_k(sub, max(1, len(idx) // 2)), n_comp) if len(idx) > 2 else n_comp
        sub_labels = comp if k == n_comp else _spectral_fit(sub, k, seed)
        labels[idx] = sub_labels + len(isolated)
    if max_clusters is not None and len(np.unique(labels)) > max_clusters:
        labels = _spectral_fit(aff, max_clusters, seed)
    return labels


def cluster_correlation(
    corr: np.ndarray,
    *,
    method: str = "average",
    threshold: float = 0.5,
    dead: np.ndarray | None = None,
    max_clusters: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Cluster channels by correlation; returns integer labels 0..K-1 of length C.

    Args:
        corr: (C, C) correlation matrix (symmetric, finite, entries in [-1, 1]).
        method: "average" / "complete": scipy hierarchical clustering on 1 - |r| cut at ``threshold``;
            "spectral": sklearn SpectralClustering on the affinity |r| with pairs whose 1 - |r| exceeds
            ``threshold`` set to 0, the number of clusters taken from the eigengap of the normalised
            Laplacian.
        threshold: distance cut in (0, 1); a knob to search, not a constant (docs/probe-and-report.md).
        dead: (C,) bool; each dead channel becomes its own singleton cluster.
        max_clusters: cap on the number of clusters among live channels (dead singletons come on top).
        seed: random state of the spectral label assignment.

    Labels are numbered in the order of each cluster's lowest channel index.
    """
    a = _check_corr(corr)
    c = a.shape[0]
    if method not in METHODS:
        raise HebbnasError(f"unknown clustering method {method!r}; choose one of {', '.join(METHODS)}")
    if not (isinstance(threshold, (int, float, np.floating)) and 0.0 < float(threshold) < 1.0):
        raise HebbnasError(f"threshold must be in (0, 1), got {threshold!r}")
    if max_clusters is not None and (not isinstance(max_clusters, (int, np.integer)) or max_clusters < 1):
        raise HebbnasError(f"max_clusters must be a positive integer or None, got {max_clusters!r}")
    dead_mask = check_dead(dead, c)
    alive = np.flatnonzero(~dead_mask)
    raw = np.empty(c, dtype=np.int64)
    if len(alive):
        sub = a[np.ix_(alive, alive)]
        if method == "spectral":
            part = _spectral(sub, float(threshold), max_clusters, seed)
        else:
            part = _hierarchical(sub, method, float(threshold), max_clusters)
        part = _relabel(np.asarray(part))
        raw[alive] = part
        offset = int(part.max()) + 1
    else:
        offset = 0
    dead_idx = np.flatnonzero(dead_mask)
    raw[dead_idx] = offset + np.arange(len(dead_idx))
    return _relabel(raw)


# -------------------------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class ClusterSummary:
    """One cluster of a module's channels.

    Attributes:
        label: cluster label (0..K-1).
        size: number of channels.
        members: channel indices, ascending.
        cohesion: mean |r| over the cluster's off-diagonal pairs; NaN for a singleton (it has no pairs).
        dead: True when the cluster is a single dead channel.
    """

    label: int
    size: int
    members: tuple[int, ...]
    cohesion: float
    dead: bool = False


def summarize_clusters(
    labels: np.ndarray, corr: np.ndarray, dead: np.ndarray | None = None
) -> list[ClusterSummary]:
    """Size, members and cohesion of every cluster, in label order."""
    a = _check_corr(corr)
    lab = _check_labels(labels, a.shape[0])
    dead_mask = check_dead(dead, a.shape[0])
    out: list[ClusterSummary] = []
    for k in range(int(lab.max()) + 1 if lab.size else 0):
        members = np.flatnonzero(lab == k)
        size = len(members)
        if size > 1:
            block = np.abs(a[np.ix_(members, members)])
            cohesion = float((block.sum() - np.trace(block)) / (size * (size - 1)))
        else:
            cohesion = float("nan")
        is_dead = bool(size == 1 and dead_mask[members[0]])
        out.append(ClusterSummary(k, size, tuple(int(m) for m in members), cohesion, is_dead))
    return out


# -------------------------------------------------------------------------------------- spatial scale


@dataclass(frozen=True)
class ClusterScales:
    """Kernel size per cluster and the evidence for it.

    Attributes:
        scales: (K,) int, 1, 3 or 5 per cluster label.
        ratios: (K, 2) float, mean within-cluster |r| at ring 1 and ring 2 divided by that at ring 0;
            NaN where the ring was not measurable.
        measurable: (ring 1, ring 2) whether the probe could measure the ring (map large enough).
            When ring 1 is not measurable every scale is 1 ("not measurable"); when only ring 2 is not,
            scales are 1 or 3.
    """

    scales: np.ndarray
    ratios: np.ndarray
    measurable: tuple[bool, bool]

    @property
    def note(self) -> str:
        """Short human text for reports about what could be measured."""
        if not self.measurable[0]:
            return "spatial scale not measurable (map too small): all clusters 1x1"
        if not self.measurable[1]:
            return "ring 2 not measurable (map too small): scales limited to 1 or 3"
        return "measured"


def _within_mean_abs(m: np.ndarray, members: np.ndarray, diagonal: bool) -> float:
    block = np.abs(m[np.ix_(members, members)])
    if diagonal:
        return float(np.trace(block) / len(members))
    k = len(members)
    return float((block.sum() - np.trace(block)) / (k * (k - 1)))


def cluster_scales(
    labels: np.ndarray,
    corr: np.ndarray,
    corr_ring: Mapping[int, np.ndarray | None],
    *,
    scale_cut: float = 0.35,
    scale_cut5: float | None = None,
    dead: np.ndarray | None = None,
) -> ClusterScales:
    """Spatial scale (1, 3 or 5) of each cluster from how its correlation decays over rings 0, 1, 2.

    For a cluster of two or more channels the ratio for ring r is the mean within-cluster |r| at ring r
    over the mean at ring 0, both over off-diagonal pairs; for a singleton it is the channel's spatial
    autocorrelation at ring r (the ring matrix's diagonal). Scale 5 when ratio 2 >= ``scale_cut5``,
    else 3 when ratio 1 >= ``scale_cut``, else 1. With a latent field smoothed by a k x k box the
    ratios are about (0, 0) for k = 1, (0.56, 0.22) for k = 3 and (0.72, 0.48) for k = 5, hence the
    default cut 0.35 for both rings.

    Args:
        labels: (C,) cluster labels 0..K-1.
        corr: (C, C) zero-offset correlation.
        corr_ring: {1: (C, C) or None, 2: (C, C) or None} as in ModuleStats.corr_ring.
        scale_cut: ring-1 ratio cut for 3x3 (and ring 2 for 5x5 when ``scale_cut5`` is None).
        scale_cut5: ring-2 ratio cut for 5x5.
        dead: (C,) bool; dead channels' clusters get scale 1.
    """
    a = _check_corr(corr)
    c = a.shape[0]
    lab = _check_labels(labels, c)
    dead_mask = check_dead(dead, c)
    cut3 = float(scale_cut)
    cut5 = cut3 if scale_cut5 is None else float(scale_cut5)
    for name, v in (("scale_cut", cut3), ("scale_cut5", cut5)):
        if not np.isfinite(v) or v <= 0:
            raise HebbnasError(f"{name} must be a positive number, got {v!r}")
    rings: list[np.ndarray | None] = []
    for r in (1, 2):
        m = corr_ring.get(r) if corr_ring is not None else None
        if m is not None:
            m = np.asarray(m, dtype=np.float64)
            if m.shape != (c, c) or not np.isfinite(m).all():
                raise HebbnasError(f"ring {r} correlation must be a finite {c} x {c} matrix, got {m.shape}")
        rings.append(m)
    measurable = (rings[0] is not None, rings[0] is not None and rings[1] is not None)
    k = int(lab.max()) + 1
    ratios = np.full((k, 2), np.nan)
    scales = np.ones(k, dtype=np.int64)
    for j in range(k):
        members = np.flatnonzero(lab == j)
        if dead_mask[members].all():
            continue
        members = members[~dead_mask[members]]
        single = len(members) == 1
        base = 1.0 if single else _within_mean_abs(a, members, diagonal=False)
        for i, m in enumerate(rings):
            if m is not None and measurable[i]:
                ratios[j, i] = _within_mean_abs(m, members, diagonal=single) / base if base > 0 else 0.0
        if measurable[1] and ratios[j, 1] >= cut5:
            scales[j] = 5
        elif measurable[0] and ratios[j, 0] >= cut3:
            scales[j] = 3
    return ClusterScales(scales=scales, ratios=ratios, measurable=measurable)

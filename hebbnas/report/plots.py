"""The report's plots: heatmaps, dendrograms and the widths chart, as matplotlib Figures.

Figures are built with `matplotlib.figure.Figure` directly, never through pyplot, so no GUI backend is
touched, nothing is kept in pyplot's global figure registry, and reports can be written from worker
threads or Ray trials; `hebbnas.report.files` saves them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hebbnas.errors import HebbnasError
from hebbnas.report.tables import is_dead, paper_topology
from hebbnas.topology import BRANCHES, PAPER_COLUMNS, REDUCTION_FIELDS, WIDTH_FIELDS, Topology

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hebbnas.derive import Derivation, ModuleDerivation, Policy

COLUMN_OF = dict(zip(WIDTH_FIELDS, PAPER_COLUMNS))
_BRANCH_COLOURS = {"b1": "#4c72b0", "b2": "#55a868", "b3": "#c44e52", "b4": "#8172b2",
                   "b2_red": "#8fd19e", "b3_red": "#e8a0a2"}


def cluster_order(md: ModuleDerivation) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Channel order for the heatmap (largest live clusters first, then dead clusters, then channels in
    no cluster) and the [start, stop) span of each cluster in that order."""
    order: list[int] = []
    spans: list[tuple[int, int]] = []
    for c in sorted(md.clusters, key=lambda c: (is_dead(md, c.members), -c.size, c.label)):
        start = len(order)
        order.extend(sorted(int(i) for i in c.members))
        spans.append((start, len(order)))
    seen = set(order)
    order.extend(i for i in range(md.in_channels) if i not in seen)
    return np.asarray(order, dtype=np.int64), spans


def _check_corr(md: ModuleDerivation, corr: np.ndarray) -> np.ndarray:
    corr = np.asarray(corr, dtype=np.float64)
    if corr.shape != (md.in_channels, md.in_channels):
        raise HebbnasError(f"{md.name}: correlation matrix is {corr.shape}, expected "
                           f"{md.in_channels}x{md.in_channels}")
    return corr


def heatmap_figure(md: ModuleDerivation, corr: np.ndarray, policy: Policy | None = None,
                   max_pixels: int = 420) -> Figure:
    """|r| reordered by cluster, with every cluster of two or more channels outlined on the diagonal.

    Matrices wider than `max_pixels` are block-averaged first (an 832-channel module is drawn at 416
    pixels), which keeps writing nine heatmaps well under a second each.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    corr = _check_corr(md, corr)
    order, spans = cluster_order(md)
    a = np.abs(corr)
    if md.dead:  # grey, whatever the probe stored for them (NaN or 0)
        a[list(md.dead), :] = np.nan
        a[:, list(md.dead)] = np.nan
    a = _block_mean(a[np.ix_(order, order)], max_pixels)
    c = md.in_channels
    fig = Figure(figsize=(6.4, 5.8), dpi=110, layout="constrained")  # the layout keeps the title inside
    ax = fig.add_subplot()
    cmap = _cmap("magma").with_extremes(bad="#9a9a9a")
    # pre-averaged to about the pixels drawn, so matplotlib's cheap 'data'-stage resampling loses nothing
    im = ax.imshow(np.ma.masked_invalid(a), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest",
                   interpolation_stage="data", extent=(-0.5, c - 0.5, c - 0.5, -0.5))
    segs = []
    for s, e in spans:
        if e - s >= 2:
            x0, x1 = s - 0.5, e - 0.5
            segs.append([(x0, x0), (x1, x0), (x1, x1), (x0, x1), (x0, x0)])
    lw = 1.0 if len(md.clusters) <= 40 else 0.5
    ax.add_collection(LineCollection(segs, colors="#35d4ff", linewidths=lw))
    cut = f", cut {policy.threshold:g} ({policy.method})" if policy else ""
    kind = "partial |r|" if policy and policy.partial else "|r|"
    grey = f", {len(md.dead)} dead in grey" if md.dead else ""
    # two lines: on one, a long title (partial |r|, a cut, dead channels) ran past the figure's left edge
    ax.set_title(f"{md.name}: {kind}, {md.in_channels} channels\n{md.num_clusters} clusters{cut}{grey}", fontsize=9)
    ax.set_xlabel("input channel, ordered by cluster (largest first)", fontsize=8)
    ax.set_ylabel("input channel, ordered by cluster", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.colorbar(im, ax=ax, shrink=0.85, label=kind)
    return fig


def _block_mean(a: np.ndarray, max_pixels: int) -> np.ndarray:
    """Average f x f blocks (f the smallest factor that fits `max_pixels`), ignoring NaN; ragged edge padded."""
    n = a.shape[0]
    f = max(1, math.ceil(n / max_pixels))
    if f == 1:
        return a
    m = math.ceil(n / f) * f
    pad = np.full((m, m), np.nan)
    pad[:n, :n] = a
    blocks = pad.reshape(m // f, f, m // f, f)
    valid = np.isfinite(blocks).sum(axis=(1, 3))
    total = np.nansum(blocks, axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid > 0, total / np.maximum(valid, 1), np.nan)


def live_linkage(corr: np.ndarray, method: str = "average",
                 dead: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Hierarchical linkage of 1-|r| over the live channels (spectral falls back to average linkage).

    Dead channels (listed, or with all-NaN rows) are left out, as the clustering leaves them out.
    Uses `hebbnas.cluster.linkage_matrix` when it accepts the matrix, so the dendrogram is the tree
    that was cut. Returns (Z, indices of the live channels).
    """
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    corr = np.asarray(corr, dtype=np.float64)
    finite = np.isfinite(corr)
    np.fill_diagonal(finite, False)
    alive = finite.any(axis=1)
    alive[[int(i) for i in dead]] = False
    live = np.flatnonzero(alive)
    linkage_method = method if method in ("average", "complete") else "average"
    sub = corr[np.ix_(live, live)]
    if len(live) < 2:
        return np.zeros((0, 4)), live
    try:
        from hebbnas.cluster import linkage_matrix

        return np.asarray(linkage_matrix(sub, method=linkage_method), dtype=np.float64), live
    except (ImportError, HebbnasError):
        pass  # no helper, or it rejects a matrix with NaN entries: build the same tree here
    d = 1.0 - np.abs(np.nan_to_num(sub, nan=0.0))
    d = np.clip((d + d.T) / 2.0, 0.0, 1.0)
    np.fill_diagonal(d, 0.0)
    return linkage(squareform(d, checks=False), method=linkage_method), live


def dendrogram_figure(md: ModuleDerivation, corr: np.ndarray, policy: Policy | None = None,
                      max_leaves: int = 256) -> Figure:
    """The linkage tree of 1-|r| with the policy's cut drawn; above `max_leaves` only the top of the
    tree is drawn (scipy's ``lastp``), which keeps an 832-channel module fast and legible."""
    from matplotlib.figure import Figure
    from scipy.cluster.hierarchy import dendrogram

    corr = _check_corr(md, corr)
    method = policy.method if policy else "average"
    fig = Figure(figsize=(8.0, 4.2), dpi=110)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.08, top=0.92)
    ax = fig.add_subplot()
    live_n = 0
    if md.in_channels >= 2:
        z, live = live_linkage(corr, method, md.dead)
        live_n = len(live)
    if live_n >= 2:
        kw: dict[str, Any] = {"no_labels": True} if live_n > 64 else {"labels": [str(i) for i in live],
                                                                      "leaf_font_size": 6}
        if live_n > max_leaves:
            kw.update(truncate_mode="lastp", p=max_leaves, no_labels=True)
            kw.pop("labels", None)
            kw.pop("leaf_font_size", None)
        thr = policy.threshold if policy else None
        dendrogram(z, ax=ax, color_threshold=thr if thr is not None else 0.7 * float(z[:, 2].max()),
                   above_threshold_color="#888888", **kw)
        if thr is not None:
            ax.axhline(thr, color="#c44e52", linestyle="--", linewidth=1.0)
    else:
        ax.text(0.5, 0.5, "fewer than two live channels", ha="center", va="center", transform=ax.transAxes)
    shown = f", top {max_leaves} of {live_n} leaves" if live_n > max_leaves else ""
    how = f"{method} linkage" if method != "spectral" else "average linkage (clustered spectrally)"
    cut = f", cut {policy.threshold:g} (dashed)" if policy else ""
    ax.set_title(f"{md.name}: {how} on 1-|r|, {md.num_clusters} clusters{cut}{shown}", fontsize=9)
    ax.set_ylabel("1 - |r|", fontsize=8)
    ax.tick_params(labelsize=7)
    return fig


def widths_figure(derivation: Derivation, fitted: Topology) -> Figure:
    """Per module, two stacked bars: derived (fitted) and paper branch widths; reductions below."""
    from matplotlib.figure import Figure

    paper = paper_topology(derivation.base, fitted.num_classes)
    names = [md.name for md in derivation.modules]
    x = np.arange(len(names), dtype=float)
    bw = 0.38
    fig = Figure(figsize=(max(6.0, 1.0 * len(names) + 2.0), 6.4), dpi=110)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.11, top=0.94, hspace=0.08)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2.2, 1.0))
    panels = ((top, BRANCHES, "output channels"), (bottom, REDUCTION_FIELDS, "1x1 reduction width"))
    bars = ((-bw / 2 - 0.01, fitted, 1.0, "derived"), (bw / 2 + 0.01, paper, 0.45, "paper"))
    for ax, fields, ylabel in panels:
        for offset, topo, alpha, who in bars:
            base = np.zeros(len(names))
            for f in fields:
                vals = np.array([getattr(topo.module(n), f) for n in names], dtype=float)
                ax.bar(x + offset, vals, bw, bottom=base, color=_BRANCH_COLOURS[f], alpha=alpha,
                       edgecolor="white", linewidth=0.5, label=COLUMN_OF[f] if who == "derived" else None)
                base += vals
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, ncols=len(fields), loc="upper left")
    top.set_title(f"{fitted.name}: derived (left, solid) vs paper (right, faded) branch widths", fontsize=9)
    bottom.set_xticks(x, names, rotation=30, ha="right")
    return fig


def _cmap(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name].copy()

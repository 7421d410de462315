"""The cluster-to-branch report: what the probe saw in each module's input and the widths it became.

Per Inception module: input channels, the clusters (size, members, cohesion, spatial scale, branch),
the derived widths after fitting beside the paper's (Table 1) widths, MACs and params of both, and what
each 1x1 reduction saves. The builders return values (DataFrames, Markdown, matplotlib Figures); only
`write_report` touches the filesystem, and `read_report` reads a written report back for the CLI.

Figures are built with `matplotlib.figure.Figure` directly, never through pyplot, so no GUI backend is
touched, nothing is kept in pyplot's global figure registry, and reports can be written from worker
threads or Ray trials. pandas, matplotlib and `hebbnas.derive` (which pulls in torch) are imported
where they are used, so `read_report` (``hebbnas report RUN``) starts quickly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hebbnas.errors import HebbnasError
from hebbnas.topology import DEFAULT_INPUT, PAPER_COLUMNS, PAPER_WIDTHS, WIDTH_FIELDS, StemSpec, Topology

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from hebbnas.derive import Derivation, ModuleDerivation, Policy

DEFAULT_TITLE = "Cluster-to-branch report"
MAX_CLUSTERS_SHOWN = 12
"""Markdown lists the largest clusters of each module and counts the rest, so it fits a terminal."""
MAX_MEMBERS_CHARS = 60
BRANCH_LABEL = {"branch1": "1x1", "branch2": "3x3", "branch3": "5x5", "branch4": "pool"}
OUTPUT_FIELDS = ("b1", "b2", "b3", "b4")
REDUCTION_FIELDS = ("b2_red", "b3_red")
COLUMN_OF = dict(zip(WIDTH_FIELDS, PAPER_COLUMNS))
_BRANCH_COLOURS = {"b1": "#4c72b0", "b2": "#55a868", "b3": "#c44e52", "b4": "#8172b2",
                   "b2_red": "#8fd19e", "b3_red": "#e8a0a2"}
_ROUND_DIR = re.compile(r"^round-(\d+)$")


# ---------------------------------------------------------------------------------------------
# small helpers


def compact_members(members: Sequence[int]) -> str:
    """Channel indices as a short string: runs of three or more become ranges, e.g. ``3,17,40-45``."""
    idx = sorted(int(i) for i in members)
    parts: list[str] = []
    i = 0
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{idx[i]}-{idx[j]}")
        else:
            parts.extend(str(v) for v in idx[i : j + 1])
        i = j + 1
    return ",".join(parts)


def _shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def paper_topology(base: Topology, num_classes: int | None = None) -> Topology:
    """The reference the derived widths are compared with: Table 1 widths and stem in the base's layout.

    The base (the probed network) may itself be scaled or derived, so its widths are not the paper's:
    modules named as in Table 1 get the paper's widths and the stem is the paper's; a module Table 1
    does not name keeps the base's widths. Pools and the branch3 kernel are the base's, so a
    torchvision-layout base is compared with its own layout. `num_classes` makes the head match the
    fitted topology, so totals compare like with like.
    """
    paper = base.with_widths({n: PAPER_WIDTHS[n] for n in base.module_names if n in PAPER_WIDTHS},
                             name="paper")
    paper = dataclasses.replace(paper, stem=StemSpec())
    return paper.with_classes(num_classes) if num_classes is not None else paper


def _check_modules(derivation: Derivation, fitted: Topology) -> None:
    for t in (fitted, derivation.base):
        missing = [m.name for m in derivation.modules if m.name not in t.module_names]
        if missing:
            raise HebbnasError(f"topology {t.name!r} lacks derived modules {missing}")


def _module_maps(t: Topology, input_shape: tuple[int, int, int]) -> dict[str, tuple[int, int]]:
    """(H, W) of each Inception module's input at `input_shape` (all its layers share it)."""
    out: dict[str, tuple[int, int]] = {}
    for lc in t.layers(input_shape):
        block = lc.name.split(".")[0]
        if block.startswith("inception"):
            out.setdefault(block, (lc.out_shape[1], lc.out_shape[2]))
    return out


def reduction_savings(t: Topology, input_shape: tuple[int, int, int] = DEFAULT_INPUT) -> dict[str, dict[str, float]]:
    """MACs of the 3x3 and 5x5 branches with their 1x1 reduction and without it (input fed directly).

    Returns per module ``{"3x3": with, "3x3 no red": without, "3x3 saves": without/with, ...}``;
    NaN where the branch is removed, a factor of 1 where it has no reduction.
    """
    cin = t.in_channels_of()
    maps = _module_maps(t, input_shape)
    macs: dict[str, int] = {}
    for lc in t.layers(input_shape):
        key = ".".join(lc.name.split(".")[:2])
        macs[key] = macs.get(key, 0) + lc.macs
    out: dict[str, dict[str, float]] = {}
    for m in t.modules:
        h, w = maps[m.name]
        row: dict[str, float] = {}
        for label, idx, width, k in (("3x3", 2, m.b2, 3), ("5x5", 3, m.b3, m.b3_kernel)):
            if not width:
                row.update({label: math.nan, f"{label} no red": math.nan, f"{label} saves": math.nan})
                continue
            with_red = float(macs.get(f"{m.name}.branch{idx}", 0))
            without = float(k * k * cin[m.name] * width * h * w)
            row.update({label: with_red, f"{label} no red": without, f"{label} saves": without / with_red})
        out[m.name] = row
    return out


# ---------------------------------------------------------------------------------------------
# tables


def module_table(derivation: Derivation, fitted: Topology,
                 input_shape: tuple[int, int, int] = DEFAULT_INPUT) -> pd.DataFrame:
    """One row per derived module: what the probe saw, the fitted and paper widths, costs, savings.

    ``n_scale1/3/5`` count live clusters (dead channels are singleton clusters that derive skips).
    Width columns use the paper's names (``#1x1`` ... ``pool proj``) for the fitted topology and
    ``paper #1x1`` ... for Table 1; ``raw #1x1`` ... are the unfitted widths in cluster units. MACs are
    at `input_shape` (the deploy shape); ``3x3red saves`` is the MAC factor the 3x3 branch's reduction
    saves (same for 5x5).
    """
    import pandas as pd

    _check_modules(derivation, fitted)
    paper = paper_topology(derivation.base, fitted.num_classes)
    fit_costs = fitted.module_costs(input_shape)
    paper_costs = paper.module_costs(input_shape)
    deploy_maps = _module_maps(fitted, input_shape)
    savings = reduction_savings(fitted, input_shape)
    rows: list[dict[str, Any]] = []
    for md in derivation.modules:
        fm = fitted.module(md.name)
        live = [c for c in md.clusters if not _is_dead(md, c.members)]  # what derive counts
        row: dict[str, Any] = {
            "module": md.name,
            "in_channels": md.in_channels,
            "map_size": _shape_str(md.map_size),
            "deploy_map": _shape_str(deploy_maps[md.name]),
            "clusters": md.num_clusters,
            "live_clusters": len(live),
            "dead": len(md.dead),
            **{f"n_scale{k}": sum(c.scale == k for c in live) for k in (1, 3, 5)},
            "scale_measured": bool(md.scale_measured),
        }
        row.update({col: int(w) for col, w in zip(PAPER_COLUMNS, fm.widths)})
        row["b3_kernel"] = fm.b3_kernel
        pm = paper.module(md.name)
        row.update({f"paper {col}": int(w) for col, w in zip(PAPER_COLUMNS, pm.widths)})
        row.update({f"raw {col}": float(w) for col, w in zip(PAPER_COLUMNS, md.raw_widths)})
        row["macs"], row["params"] = fit_costs[md.name]
        row["paper macs"], row["paper params"] = paper_costs[md.name]
        s = savings[md.name]
        row.update({"3x3 macs": s["3x3"], "3x3 macs no red": s["3x3 no red"], "3x3red saves": s["3x3 saves"],
                    "5x5 macs": s["5x5"], "5x5 macs no red": s["5x5 no red"], "5x5red saves": s["5x5 saves"]})
        row["note"] = md.note
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in ("3x3 macs", "3x3 macs no red", "5x5 macs", "5x5 macs no red"):
        df[col] = df[col].round().astype("Int64")  # integer counts; missing where the branch is removed
    return df


def cluster_table(derivation: Derivation) -> pd.DataFrame:
    """One row per (module, cluster), in label order; ``members`` is a compact index string and
    ``dead`` marks a cluster made only of dead (zero-variance) channels."""
    import pandas as pd

    rows = [
        {"module": md.name, "cluster": c.label, "size": c.size, "members": compact_members(c.members),
         "cohesion": float(c.cohesion), "decay1": float(c.decay[0]), "decay2": float(c.decay[1]),
         "scale": int(c.scale), "branch": c.branch, "dead": _is_dead(md, c.members)}
        for md in derivation.modules for c in md.clusters
    ]
    cols = ["module", "cluster", "size", "members", "cohesion", "decay1", "decay2", "scale", "branch", "dead"]
    return pd.DataFrame(rows, columns=cols)


def _is_dead(md: ModuleDerivation, members: Sequence[int]) -> bool:
    dead = set(md.dead)
    return bool(members) and all(int(i) in dead for i in members)


def totals(derivation: Derivation, fitted: Topology, input_shape: tuple[int, int, int] = DEFAULT_INPUT,
           budget: float | None = None) -> dict[str, Any]:
    """MACs and params of the fitted topology, the paper's, and the paper's fitted to the same budget.

    The paper-scaled numbers (`fit` with its defaults) are the fair baseline under a budget; they are
    None without a budget or when the paper's layout cannot meet it.
    """
    from hebbnas.derive import fit

    paper = paper_topology(derivation.base, fitted.num_classes)
    out: dict[str, Any] = {
        "input_shape": list(input_shape),
        "budget": None if budget is None else float(budget),
        "fitted": {"name": fitted.name, "macs": fitted.macs(input_shape), "params": fitted.params()},
        "paper": {"name": paper.name, "macs": paper.macs(input_shape), "params": paper.params()},
        "paper_scaled": None,
    }
    if budget is not None:
        try:
            ps = fit(paper, float(budget), input_shape, name=f"{paper.name}-scaled")
            out["paper_scaled"] = {"name": ps.name, "macs": ps.macs(input_shape), "params": ps.params()}
        except HebbnasError:
            pass
    return out


# ---------------------------------------------------------------------------------------------
# Markdown


def _fmt(v: Any, kind: str = "") -> str:
    """Table cell text: '' for missing values, millions for MACs, thousands separators for counts."""
    if _missing(v):
        return "–"
    if kind == "M":
        return f"{v / 1e6:,.1f}M"
    if kind == "x":
        return f"{v:.1f}x"
    if kind == "f2":
        return f"{v:.2f}"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return f"{int(v):,}"
    return str(v)


def _missing(v: Any) -> bool:
    """None, NaN, or pandas' NA (from the nullable integer MAC columns)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return True
    return type(v).__name__ == "NAType"


def sci(v: float) -> str:
    """Compact scientific notation as the CLI takes it: 1.5e9, 1.582e9, 8e7."""
    mant, _, exp = f"{float(v):.4g}".partition("e")
    return f"{mant}e{int(exp)}" if exp else mant


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A padded pipe table, readable both in a terminal and rendered; `align` is 'l'/'r' per column."""
    align = align or "l" + "r" * (len(header) - 1)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def _policy_line(p: Policy) -> str:
    return ", ".join(f"{f.name}={getattr(p, f.name)}" for f in dataclasses.fields(p))


def _cost_line(label: str, c: Mapping[str, Any] | None, budget: float | None) -> str:
    if c is None:
        return f"- {label}: –"
    share = f", {100 * c['macs'] / budget:.1f}% of the budget" if budget else ""
    return f"- {label}: {sci(c['macs'])} MACs ({c['macs']:,}{share}), {c['params']:,} params"


def _not_measured_text(md: ModuleDerivation) -> str:
    if "not measurable" in md.note:
        return md.note
    why = md.note or "the map is too small to measure spatial spread; the branch split follows the probed topology"
    return f"spatial scale not measurable at {_shape_str(md.map_size)}: {why}"


def _branch_text(branch: str) -> str:
    return f"{branch} ({BRANCH_LABEL[branch]})" if branch in BRANCH_LABEL else branch


def render_markdown(derivation: Derivation, fitted: Topology, input_shape: tuple[int, int, int] = DEFAULT_INPUT,
                    budget: float | None = None, title: str = DEFAULT_TITLE) -> str:
    """The whole report as Markdown: header, module tables, reduction savings, per-module clusters."""
    return _markdown(derivation, fitted, input_shape, budget, title, module_table(derivation, fitted, input_shape),
                     totals(derivation, fitted, input_shape, budget))


def _markdown(derivation: Derivation, fitted: Topology, input_shape: tuple[int, int, int], budget: float | None,
              title: str, mt: pd.DataFrame, tot: Mapping[str, Any]) -> str:
    shape = _shape_str(input_shape)
    out: list[str] = [f"# {title}", ""]
    out.append(f"- base: {derivation.base.name}; derived topology: {derivation.topology.name}; "
               f"fitted: {fitted.name}; deploy input {shape}")
    out.append(f"- policy: {_policy_line(derivation.policy)}")
    out.append(f"- budget: {sci(budget)} MACs at {shape}" if budget is not None else "- budget: none")
    out.append(_cost_line("fitted", tot["fitted"], budget))
    out.append(_cost_line(f"paper (Table 1 widths and stem, {fitted.num_classes}-class head)", tot["paper"], budget))
    if budget is not None:
        out.append(_cost_line("paper scaled to the budget", tot["paper_scaled"], budget))
    unmeasured = [md.name for md in derivation.modules if not md.scale_measured]
    if unmeasured:
        out.append(f"- spatial scale not measurable in {', '.join(unmeasured)} (see the module sections)")
    out.append("")

    out += ["## Modules: what the probe saw", "",
            "Clusters of each module's input channels at the probe resolution. A dead channel is its own "
            "cluster; the scale columns count live clusters, as the derivation does.", ""]
    out.append(markdown_table(
        ["module", "in ch", "map", "clusters", "live", "dead ch", "scale 1", "scale 3", "scale 5", "scale measured"],
        [[r["module"], _fmt(r["in_channels"]), r["map_size"], _fmt(r["clusters"]), _fmt(r["live_clusters"]),
          _fmt(r["dead"]),
          _fmt(r["n_scale1"]), _fmt(r["n_scale3"]), _fmt(r["n_scale5"]), "yes" if r["scale_measured"] else "NO"]
         for r in mt.to_dict(orient="records")]))
    out.append("")

    out += [f"## Widths: derived after fitting (paper), MACs at {shape}", ""]
    rows = []
    for r in mt.to_dict(orient="records"):
        k = "" if r["b3_kernel"] == 5 else f" (k{r['b3_kernel']})"
        cells = [r["module"] + k]
        for col in PAPER_COLUMNS:
            p = r[f"paper {col}"]
            cells.append(f"{r[col]} ({p})")
        cells += [f"{_fmt(r['macs'], 'M')} ({_fmt(r['paper macs'], 'M')})",
                  f"{_fmt(r['params'])} ({_fmt(r['paper params'])})"]
        rows.append(cells)
    out.append(markdown_table(["module", *PAPER_COLUMNS, "MACs", "params"], rows))
    out.append("")

    out += [f"## What each 1x1 reduction saves (fitted widths, MACs at {shape})", ""]
    out.append(markdown_table(
        ["module", "3x3 with red", "3x3 without", "saves", "5x5 with red", "5x5 without", "saves"],
        [[r["module"], _fmt(r["3x3 macs"], "M"), _fmt(r["3x3 macs no red"], "M"), _fmt(r["3x3red saves"], "x"),
          _fmt(r["5x5 macs"], "M"), _fmt(r["5x5 macs no red"], "M"), _fmt(r["5x5red saves"], "x")]
         for r in mt.to_dict(orient="records")]))
    out.append("")

    out += ["## Clusters per module", ""]
    for md in derivation.modules:
        out.extend(_module_section(md))
    return "\n".join(out).rstrip() + "\n"


def _module_section(md: ModuleDerivation) -> list[str]:
    n_dead = sum(_is_dead(md, c.members) for c in md.clusters)
    dead = f", {n_dead} of them dead" if n_dead else ""
    live = [c for c in md.clusters if not _is_dead(md, c.members)]
    scales = ", ".join(f"{k}: {sum(c.scale == k for c in live)}" for k in (1, 3, 5))
    out = [f"### {md.name}: {md.in_channels} channels at {_shape_str(md.map_size)}, {md.num_clusters} clusters{dead} "
           f"(live by scale {scales})", ""]
    if not md.scale_measured:
        out.append(f"- {_not_measured_text(md)}")
    elif md.note:
        out.append(f"- note: {md.note}")
    if md.dead:
        out.append(f"- dead channels ({len(md.dead)}): {_cap(compact_members(md.dead))}")
    raw = ", ".join(f"{col} {w:.3g}" for col, w in zip(PAPER_COLUMNS, md.raw_widths))
    out += [f"- raw widths (cluster units): {raw}", ""]
    shown = sorted(md.clusters, key=lambda c: (-c.size, c.label))[:MAX_CLUSTERS_SHOWN]
    rows = [[str(c.label), str(c.size), _fmt(c.cohesion, "f2"),
             f"{_fmt(c.decay[0], 'f2')}/{_fmt(c.decay[1], 'f2')}", str(c.scale),
             _branch_text(c.branch) + (" (dead)" if _is_dead(md, c.members) else ""), _cap(compact_members(c.members))]
            for c in shown]
    if rows:
        out.append(markdown_table(["cluster", "size", "cohesion", "decay d1/d2", "scale", "branch", "members"],
                                  rows, align="rrrrrll"))
    rest = sorted(md.clusters, key=lambda c: (-c.size, c.label))[MAX_CLUSTERS_SHOWN:]
    if rest:
        out.append(f"\n… and {len(rest)} smaller clusters ({sum(c.size for c in rest)} channels); "
                   "all clusters are in clusters.csv")
    out.append("")
    return out


def _cap(text: str, limit: int = MAX_MEMBERS_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind(",", 0, limit - 1)
    return text[: cut if cut > 0 else limit - 1] + ",…"


# ---------------------------------------------------------------------------------------------
# plots (pure: they return Figures; write_report saves them)


def cluster_order(md: ModuleDerivation) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Channel order for the heatmap (largest live clusters first, then dead clusters, then channels in
    no cluster) and the [start, stop) span of each cluster in that order."""
    order: list[int] = []
    spans: list[tuple[int, int]] = []
    for c in sorted(md.clusters, key=lambda c: (_is_dead(md, c.members), -c.size, c.label)):
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
    panels = ((top, OUTPUT_FIELDS, "output channels"), (bottom, REDUCTION_FIELDS, "1x1 reduction width"))
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


# ---------------------------------------------------------------------------------------------
# writing and reading


def _jsonable(v: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, NaN/inf -> None, tuples -> lists."""
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return None if _missing(v) else v


def report_dict(derivation: Derivation, fitted: Topology, input_shape: tuple[int, int, int] = DEFAULT_INPUT,
                budget: float | None = None, title: str = DEFAULT_TITLE) -> dict[str, Any]:
    """Everything in the report as one JSON-ready object (members as integer lists, NaN as None)."""
    return _report_obj(derivation, fitted, title, module_table(derivation, fitted, input_shape),
                       totals(derivation, fitted, input_shape, budget))


def _report_obj(derivation: Derivation, fitted: Topology, title: str, mt: pd.DataFrame,
                tot: Mapping[str, Any]) -> dict[str, Any]:
    clusters = [
        {"module": md.name, "cluster": c.label, "size": c.size, "members": list(c.members),
         "cohesion": c.cohesion, "decay1": c.decay[0], "decay2": c.decay[1], "scale": c.scale, "branch": c.branch}
        for md in derivation.modules for c in md.clusters
    ]
    modules = mt.to_dict(orient="records")
    for rec, md in zip(modules, derivation.modules):
        rec["dead_channels"] = list(md.dead)
    return _jsonable({
        "title": title,
        "base": derivation.base.name,
        "policy": dataclasses.asdict(derivation.policy),
        "totals": tot,
        "modules": modules,
        "clusters": clusters,
        "fitted_topology": fitted.to_dict(),
    })


def write_report(out_dir: str | Path, derivation: Derivation, fitted: Topology,
                 correlations: Mapping[str, np.ndarray] | None = None,
                 input_shape: tuple[int, int, int] = DEFAULT_INPUT, budget: float | None = None,
                 title: str = DEFAULT_TITLE, plots: bool = True) -> dict[str, Path]:
    """Write report.md, modules.csv, clusters.csv, report.json and plots/*.png into `out_dir`.

    `correlations` maps a module name to the C x C matrix that was clustered; modules without one get
    no heatmap or dendrogram. Returns the written files keyed by their path relative to `out_dir`.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HebbnasError(f"cannot create report folder {out}: {e}") from None
    written: dict[str, Path] = {}

    def put(rel: str, writer: Any) -> None:
        p = out / rel
        try:
            writer(p)
        except OSError as e:
            raise HebbnasError(f"cannot write {p}: {e}") from None
        written[rel] = p

    mt = module_table(derivation, fitted, input_shape)
    tot = totals(derivation, fitted, input_shape, budget)
    md_text = _markdown(derivation, fitted, input_shape, budget, title, mt, tot)
    put("report.md", lambda p: p.write_text(md_text, encoding="utf-8"))
    put("modules.csv", lambda p: mt.to_csv(p, index=False))
    put("clusters.csv", lambda p: cluster_table(derivation).to_csv(p, index=False))
    obj = _report_obj(derivation, fitted, title, mt, tot)
    # one line: thousands of member indices would otherwise become thousands of lines
    put("report.json", lambda p: p.write_text(json.dumps(obj, allow_nan=False) + "\n", encoding="utf-8"))
    if plots:
        (out / "plots").mkdir(exist_ok=True)
        corrs = correlations or {}
        for md in derivation.modules:
            if md.name not in corrs:
                continue
            for kind, builder in (("heatmap", heatmap_figure), ("dendrogram", dendrogram_figure)):
                fig = builder(md, corrs[md.name], derivation.policy)
                put(f"plots/{kind}_{md.name}.png", fig.savefig)
        fig = widths_figure(derivation, fitted)
        put("plots/widths.png", fig.savefig)
    return written


def find_report(path: str | Path) -> tuple[Path, str]:
    """The report folder under `path` (a report folder, a run folder, or its ``report/``), the latest
    round when there are several, and a line saying which round was picked ('' for a single report)."""
    p = Path(path)
    if not p.is_dir():
        raise HebbnasError(f"no cluster-to-branch report in {p} (not a folder)")
    for cand in (p, p / "report"):
        if (cand / "report.md").is_file():
            return cand, ""
        rounds = sorted(((int(m.group(1)), d) for d in (cand.iterdir() if cand.is_dir() else ())
                         if d.is_dir() and (m := _ROUND_DIR.match(d.name)) and (d / "report.md").is_file()),
                        key=lambda t: t[0])
        if rounds:
            k, d = rounds[-1]
            latest = f", the latest of {len(rounds)} rounds" if len(rounds) > 1 else ""
            return d, f"(round {k}{latest}: {d})"
    raise HebbnasError(f"no cluster-to-branch report in {p}")


def read_report(path: str | Path) -> str:
    """The Markdown of an existing report, for ``hebbnas report DIR``; for a search run the latest
    round's report, preceded by a line naming the round."""
    d, which = find_report(path)
    try:
        text = (d / "report.md").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise HebbnasError(f"cannot read {d / 'report.md'}: {e}") from None
    return f"{which}\n\n{text}" if which else text


# ---------------------------------------------------------------------------------------------
# a search round's report


def write_round_report(out_dir: Path, outcome: Any, settings: Any, deploy_input: tuple[int, int, int]) -> None:
    """The cluster-to-branch report of one round (the boundary where hebbnas.report is wired in).

    hebbian: the round's probe, clustered with the best trial's derivation knobs, beside the widths the
    best trial trained. random/paper: no probe; the best topology's widths beside the paper's.
    """
    from hebbnas.trials import format_budget
    from hebbnas.strategies import knobs
    from hebbnas.topology import show_table

    out_dir.mkdir(parents=True, exist_ok=True)
    best = outcome.best
    if best is None or not best.get("topology"):
        return
    fitted = Topology.from_json(best["topology"])
    derive_knobs = dict(outcome.report_knobs) or knobs(best, "derive")
    deploy = tuple(deploy_input)
    if outcome.probe is not None and derive_knobs:
        _hebbian_report(out_dir, outcome, fitted, derive_knobs, settings, deploy)
        return
    text = [f"# Round {outcome.round}: best trial {best['trial_id']} ({settings.strategy})", "",
            f"validation accuracy {float(best['val_acc']):.4f}, budget {format_budget(settings.budget)} MACs", ""]
    if derive_knobs:
        text += ["derivation knobs: " + ", ".join(f"{k}={v}" for k, v in derive_knobs.items()), ""]
    text += ["```", show_table(fitted, deploy), "```", ""]
    (out_dir / "report.md").write_text("\n".join(text))
    (out_dir / "report.json").write_text(json.dumps({"round": outcome.round, "trial_id": best["trial_id"],
                                                     "strategy": settings.strategy, "knobs": derive_knobs,
                                                     "fitted_topology": fitted.to_dict()}, indent=1))


def _hebbian_report(out_dir: Path, outcome: Any, fitted: Topology, derive_knobs: Mapping[str, Any], settings: Any,
                    deploy: tuple[int, int, int]) -> None:
    """The full report: the round's probe, clustered with the report knobs, beside the trained widths."""
    from hebbnas import derive
    from hebbnas.strategies import get_strategy

    derivation = derive.derive(outcome.probed, outcome.probe, derive.Policy.from_knobs(dict(derive_knobs)))
    corr = {m.name: outcome.probe.modules[m.name].correlation(remove_common=bool(derive_knobs.get("partial")))
            for m in derivation.modules if m.name in outcome.probe.modules}
    if get_strategy(settings.strategy).probes_seed:
        title = f"Cluster-to-branch report, round {outcome.round}"
    else:  # the baselines' winner, read as the derivation would read it (default knobs)
        title = f"Cluster-to-branch report, round {outcome.round}: the {settings.strategy} baseline's best network"
    write_report(out_dir, derivation, fitted, corr, deploy, budget=settings.budget, title=title)


# ---------------------------------------------------------------------------------------------
# the report page: one self-contained HTML file


HTML_REPORT = "report.html"


def pareto_front(costs: Sequence[float], accs: Sequence[float]) -> list[int]:
    """Indices of the non-dominated points (lower cost, higher accuracy), by increasing cost.

    A point is on the front when no other point has a cost <= and an accuracy >= with one strict.
    """
    pts = sorted(((float(c), -float(a), i) for i, (c, a) in enumerate(zip(costs, accs))
                  if _finite(c) and _finite(a)))
    front, best = [], -math.inf
    for c, neg_a, i in pts:
        if -neg_a > best:
            front.append(i)
            best = -neg_a
    return front


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _png_data_uri(fig_or_path: Any) -> str:
    import base64
    import io

    if isinstance(fig_or_path, (str, Path)):
        data = Path(fig_or_path).read_bytes()
    else:
        buf = io.BytesIO()
        fig_or_path.savefig(buf, format="png")
        data = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def tradeoff_figure(rows: Sequence[Mapping[str, Any]], cost: str, best_id: str | None = None) -> Figure:
    """Validation accuracy against `cost` (``macs`` or ``params``) for every trial, the Pareto front marked."""
    from matplotlib.figure import Figure

    pts = [(float(r[cost]), float(r["val_acc"]), str(r.get("trial_id")), str(r.get("status") or ""))
           for r in rows if _finite(r.get(cost)) and _finite(r.get("val_acc"))]
    fig = Figure(figsize=(5.6, 4.0), dpi=100, layout="constrained")  # two side by side on the page
    ax = fig.add_subplot()
    label = {"macs": "MACs at the deploy shape", "params": "parameters"}.get(cost, cost)
    if pts:
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        colours = {"completed": "#1f77b4", "stopped": "#ff7f0e"}
        for status in sorted({p[3] for p in pts}):
            sel = [p for p in pts if p[3] == status]
            ax.scatter([p[0] for p in sel], [p[1] for p in sel], s=28, alpha=0.75,
                       color=colours.get(status, "#7f7f7f"), label=f"{status} ({len(sel)})")
        front = pareto_front(xs, ys)
        fx, fy = [xs[i] for i in front], [ys[i] for i in front]
        ax.step(fx, fy, where="post", color="#d62728", linewidth=1.2, zorder=1)
        ax.scatter(fx, fy, s=90, facecolors="none", edgecolors="#d62728", linewidths=1.5, zorder=3,
                   label=f"Pareto front ({len(front)})")
        for x, y, tid, _ in pts:
            if best_id is not None and tid == best_id:
                ax.scatter([x], [y], marker="*", s=220, color="#ffd700", edgecolors="black", zorder=4, label="best")
    else:
        ax.text(0.5, 0.5, "no trial with a validation accuracy yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(label, fontsize=9)
    ax.set_ylabel("validation accuracy (last epoch)", fontsize=9)
    ax.set_title(f"validation accuracy vs {label}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    if pts:
        ax.legend(fontsize=8, loc="lower right")
    return fig


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;
color:#1b1b1b;background:#fff;padding:0 16px}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.82em;margin:.6em 0}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:right;white-space:nowrap}th{background:#f0f3f7}td:first-child,th:first-child{text-align:left}
tr.best td{background:#fff6bf;font-weight:600}.scroll{overflow-x:auto;max-width:100%}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plots img{max-width:100%;border:1px solid #e3e3e3}
.muted{color:#666;font-size:.9em}code{background:#f4f4f4;padding:1px 4px}
"""


def _html_table(df: Any, best_id: str | None = None, id_col: str = "trial_id") -> str:
    import html

    cols = list(df.columns)
    out = ["<div class='scroll'><table><thead><tr>"]
    out += [f"<th>{html.escape(str(c))}</th>" for c in cols]
    out.append("</tr></thead><tbody>")
    for rec in df.to_dict("records"):
        cls = " class='best'" if best_id is not None and str(rec.get(id_col)) == best_id else ""
        out.append(f"<tr{cls}>" + "".join(_td(_cell(rec[c])) for c in cols) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _td(text: str, limit: int = 60) -> str:
    """One cell; long text (member lists, notes) is cut, the whole of it in the tooltip."""
    import html

    if len(text) <= limit:
        return f"<td>{html.escape(text)}</td>"
    return f"<td title='{html.escape(text, quote=True)}'>{html.escape(text[:limit - 1])}\u2026</td>"


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        if v.is_integer() and abs(v) >= 1000:
            return f"{int(v):,}"
        return f"{v:.4g}"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return f"{int(v):,}" if abs(int(v)) >= 10000 else str(int(v))
    return str(v)


def render_html(run: str | Path) -> str:
    """The report page of a run (or a `hebbnas probe` folder) as one self-contained HTML string."""
    import html

    import yaml

    from hebbnas.runfolder import BEST_METRICS, CONFIG, REPORT_DIR, read_run_rows

    root = Path(run)
    if not root.is_dir():
        raise HebbnasError(f"{root} is not a folder")
    cfg: dict[str, Any] = {}
    if (root / CONFIG).is_file():
        try:
            cfg = yaml.safe_load((root / CONFIG).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise HebbnasError(f"cannot read {root / CONFIG}: {str(e).splitlines()[0]}") from None
    elif (root / "probe.json").is_file():
        cfg = json.loads((root / "probe.json").read_text())
    metrics = json.loads((root / BEST_METRICS).read_text()) if (root / BEST_METRICS).is_file() else {}
    rows = read_run_rows(root)
    rounds = _round_dirs(root / REPORT_DIR) or ([(0, root / REPORT_DIR)] if (root / REPORT_DIR / "report.md").is_file()
                                              else [])
    if not cfg and not rows and not rounds:
        raise HebbnasError(f"{root} is not a run or probe folder (no config.yaml, trials.csv or report/)")
    best_id = str(metrics["trial_id"]) if metrics.get("trial_id") is not None else None
    e = html.escape
    title = f"hebbnas report: {root.name}"
    body = [f"<h1>{e(title)}</h1>", f"<p class='muted'>{e(str(root.resolve()))}</p>"]

    body.append("<h2>Settings</h2>")
    settings = {k: cfg.get(k) for k in ("command", "created", "budget", "strategy", "seed", "dataset", "resolution",
                                         "deploy_input", "storage") if cfg.get(k) is not None}
    for k, v in (cfg.get("settings") or {}).items():
        if k not in settings and v is not None and not isinstance(v, (dict, list)):
            settings[k] = v
    if isinstance(cfg.get("versions"), Mapping):
        settings["versions"] = ", ".join(f"{k} {v}" for k, v in cfg["versions"].items())
    if not cfg.get("settings"):
        settings.update({k: v for k, v in cfg.items() if not isinstance(v, (dict, list)) and k not in settings})
    body.append(_kv_table(settings))
    if metrics:
        body.append("<h2>Best model</h2>")
        keys = ("trial_id", "round", "val_acc", "best_val_acc", "test_acc", "macs", "params", "input", "epochs",
                "dataset", "resolution", "search_seconds")
        body.append(_kv_table({k: metrics[k] for k in keys if k in metrics}))

    if rows:
        import pandas as pd

        body.append(f"<h2>Trials ({len(rows)})</h2>")
        df = pd.DataFrame(rows)
        lead = [c for c in ("trial_id", "round", "status", "optuna_state", "epochs", "val_acc", "best_val_acc", "macs",
                            "params") if c in df.columns]
        knobs = sorted(c for c in df.columns if c.split(".")[0] in ("train", "derive", "width", "prescreen"))
        df = df[lead + knobs].sort_values(["val_acc"], ascending=False, na_position="last")
        body.append("<p class='muted'>Sorted by validation accuracy; the best trial is highlighted. Widths per "
                    "module are in trials.csv.</p>")
        body.append(_html_table(df, best_id))
        body.append("<h2>Accuracy against cost</h2><p class='muted'>Every trial with a validation accuracy; the "
                    "red line and circles mark the Pareto front (no other trial is both cheaper and more "
                    "accurate), the star the best trial.</p><div class='plots'>")
        for cost in ("macs", "params"):
            fig = tradeoff_figure(rows, cost, best_id)
            body.append(f"<img alt='validation accuracy vs {cost}' src='{_png_data_uri(fig)}'>")
        body.append("</div>")

    for k, d in rounds:
        head = f"Round {k}: cluster-to-branch report" if k else "Cluster-to-branch report"
        body.append(f"<h2>{e(head)}</h2>")
        body.extend(_round_section(d))
    doc = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
           "<meta name='viewport' content='width=device-width, initial-scale=1'>",
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>", *body,
           "<p class='muted'>written by hebbnas report --html</p></body></html>"]
    return "\n".join(doc)


def _kv_table(d: Mapping[str, Any]) -> str:
    import html

    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td style='text-align:left'>{html.escape(_cell(v))}</td></tr>"
                   for k, v in d.items())
    return f"<div class='scroll'><table>{rows}</table></div>"


def _round_dirs(report_root: Path) -> list[tuple[int, Path]]:
    if not report_root.is_dir():
        return []
    return sorted(((int(m.group(1)), d) for d in report_root.iterdir()
                   if d.is_dir() and (m := _ROUND_DIR.match(d.name))), key=lambda t: t[0])


def _round_section(d: Path) -> list[str]:
    import html

    out: list[str] = []
    md = d / "report.md"
    if md.is_file():  # the report's title and first paragraph (the totals) as plain text
        lines = md.read_text(encoding="utf-8").splitlines()
        intro = [ln for ln in lines[1:12] if ln.strip() and not ln.startswith(("#", "|"))][:4]
        if intro:
            out.append("<p>" + "<br>".join(html.escape(ln.replace("**", "")) for ln in intro) + "</p>")
    if (d / "modules.csv").is_file():
        import pandas as pd

        out.append("<h3>Modules: derived widths beside the paper's</h3>")
        out.append(_html_table(pd.read_csv(d / "modules.csv"), id_col="module"))
    plots = d / "plots"
    if (plots / "widths.png").is_file():
        out.append("<h3>Widths against the paper</h3><div class='plots'>"
                   f"<img alt='widths' src='{_png_data_uri(plots / 'widths.png')}'></div>")
    heat = sorted(plots.glob("heatmap_*.png")) if plots.is_dir() else []
    if heat:
        out.append("<h3>Correlation heatmaps (|r| ordered by cluster)</h3><div class='plots'>")
        out += [f"<img alt='{html.escape(p.stem)}' width='480' src='{_png_data_uri(p)}'>" for p in heat]
        out.append("</div>")
    if not out:
        out.append(f"<p class='muted'>no report files in {html.escape(str(d))}</p>")
    return out


def write_html_report(run: str | Path, out: str | Path | None = None) -> Path:
    """Write the report page (default ``RUN/report.html``), atomically; return its path."""
    root = Path(run)
    text = render_html(root)
    target = Path(out) if out is not None else root / HTML_REPORT
    if target.is_dir():
        target = target / HTML_REPORT
    try:
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    except OSError as e:
        raise HebbnasError(f"cannot write {target}: {e.strerror or e}") from None
    return target

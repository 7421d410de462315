"""The report as Markdown: what `hebbnas probe` prints and `report.md` holds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hebbnas.report.tables import DEFAULT_TITLE, compact_members, is_dead, module_table, shape_str, totals
from hebbnas.topology import DEFAULT_INPUT, PAPER_COLUMNS, Topology

if TYPE_CHECKING:
    import pandas as pd

    from hebbnas.derive import Derivation, ModuleDerivation, Policy

MAX_CLUSTERS_SHOWN = 12
"""Markdown lists the largest clusters of each module and counts the rest, so it fits a terminal."""
MAX_MEMBERS_CHARS = 60
BRANCH_LABEL = {"branch1": "1x1", "branch2": "3x3", "branch3": "5x5", "branch4": "pool"}


def _fmt(v: Any, kind: str = "") -> str:
    """Table cell text: '' for missing values, millions for MACs, thousands separators for counts."""
    if missing(v):
        return "–"
    if kind == "M":
        return f"{v / 1e6:,.1f}M"
    if kind == "x":
        return f"{v:.1f}x"
    if kind == "f2":
        return f"{v:.2f}"
    if kind == "f3":
        return f"{v:.3f}"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return f"{int(v):,}"
    return str(v)


def missing(v: Any) -> bool:
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
    return f"spatial scale not measurable at {shape_str(md.map_size)}: {why}"


def _branch_text(branch: str) -> str:
    return f"{branch} ({BRANCH_LABEL[branch]})" if branch in BRANCH_LABEL else branch


def render_markdown(derivation: Derivation, fitted: Topology, input_shape: tuple[int, int, int] = DEFAULT_INPUT,
                    budget: float | None = None, title: str = DEFAULT_TITLE) -> str:
    """The whole report as Markdown: header, module tables, reduction savings, per-module clusters."""
    return markdown_text(derivation, fitted, input_shape, budget, title, module_table(derivation, fitted, input_shape),
                     totals(derivation, fitted, input_shape, budget))


def markdown_text(derivation: Derivation, fitted: Topology, input_shape: tuple[int, int, int], budget: float | None,
              title: str, mt: pd.DataFrame, tot: Mapping[str, Any]) -> str:
    shape = shape_str(input_shape)
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

    out += _signal_section(derivation, mt)

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


SIGNAL_TEXT = {
    "pca": "principal components of each module's input (its correlation) that hold "
           "{energy:g} of the variance; the module keeps k / C of its probed width, the split follows the clusters",
    "redundancy": "1 - effective rank / channels of each module's input, ranked (1 = most redundant); {steps} moves "
                  "of {step_share:g} of the Inception MACs from the most redundant modules to the least, branch "
                  "split kept",
}


def _signal_section(derivation: Derivation, mt: pd.DataFrame) -> list[str]:
    """What the pca or redundancy policy read per module, beside the output width it led to ([] otherwise)."""
    names = [k for k, _ in derivation.modules[0].signal] if derivation.modules else []
    if not names:
        return []
    p = derivation.policy
    what = SIGNAL_TEXT.get(p.allocation, p.allocation).format(**dataclasses.asdict(p))
    rows = []
    for r in mt.to_dict(orient="records"):
        cells = [r["module"], _fmt(r["in_channels"])]
        for k in names:
            v = r.get(f"signal {k}")
            cells.append(_fmt(int(v)) if k in ("components", "rank") else
                         f"{v / 1e6:+,.2f}M" if k == "MACs moved" else _fmt(v, "f3"))
        out_w = sum(int(r[c]) for c in ("#1x1", "#3x3", "#5x5", "pool proj"))
        paper_w = sum(int(r[f"paper {c}"]) for c in ("#1x1", "#3x3", "#5x5", "pool proj"))
        cells += [f"{out_w} ({paper_w})", f"{_fmt(r['macs'], 'M')} ({_fmt(r['paper macs'], 'M')})"]
        rows.append(cells)
    return [f"## Signal: what the {p.allocation} policy read, and the width it led to", "",
            f"{what[0].upper()}{what[1:]}.", "",
            markdown_table(["module", "in ch", *names, "output width (paper)", "MACs (paper)"], rows), ""]


def _module_section(md: ModuleDerivation) -> list[str]:
    if not md.clusters:  # a policy that does not cluster (redundancy)
        raw = ", ".join(f"{col} {w:.3g}" for col, w in zip(PAPER_COLUMNS, md.raw_widths))
        return [f"### {md.name}: {md.in_channels} channels at {shape_str(md.map_size)}, not clustered", "",
                *([f"- note: {md.note}"] if md.note else []),
                *([f"- dead channels ({len(md.dead)}): {_cap(compact_members(md.dead))}"] if md.dead else []),
                f"- raw widths: {raw}", ""]
    n_dead = sum(is_dead(md, c.members) for c in md.clusters)
    dead = f", {n_dead} of them dead" if n_dead else ""
    live = [c for c in md.clusters if not is_dead(md, c.members)]
    scales = ", ".join(f"{k}: {sum(c.scale == k for c in live)}" for k in (1, 3, 5))
    out = [f"### {md.name}: {md.in_channels} channels at {shape_str(md.map_size)}, {md.num_clusters} clusters{dead} "
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
             _branch_text(c.branch) + (" (dead)" if is_dead(md, c.members) else ""), _cap(compact_members(c.members))]
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

"""A report folder: `write_report` writes report.md, the CSVs, report.json and the plots; `find_report` and
`read_report` find and read one back for `hebbnas report`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hebbnas.errors import HebbnasError
from hebbnas.layout import BEST_METRICS, REPORT_DIR, REPORT_JSON, REPORT_MD
from hebbnas.plain import plain
from hebbnas.report.markdown import markdown_text
from hebbnas.report.plots import dendrogram_figure, heatmap_figure, widths_figure
from hebbnas.report.tables import DEFAULT_TITLE, cluster_table, module_table, totals
from hebbnas.topology import DEFAULT_INPUT, Topology

if TYPE_CHECKING:
    import pandas as pd

    from hebbnas.derive import Derivation

ROUND_DIR = re.compile(r"^round-(\d+)$")
DERIVATION_DIR = "derivation-"
"""report/round-K/derivation-N/: the round's probe under the strategy's N-th derivation (the first is round-K/)."""


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
    return plain({
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
    md_text = markdown_text(derivation, fitted, input_shape, budget, title, mt, tot)
    put(REPORT_MD, lambda p: p.write_text(md_text, encoding="utf-8"))
    put("modules.csv", lambda p: mt.to_csv(p, index=False))
    put("clusters.csv", lambda p: cluster_table(derivation).to_csv(p, index=False))
    obj = _report_obj(derivation, fitted, title, mt, tot)
    # one line: thousands of member indices would otherwise become thousands of lines
    put(REPORT_JSON, lambda p: p.write_text(json.dumps(obj, allow_nan=False) + "\n", encoding="utf-8"))
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
    for cand in (p, p / REPORT_DIR):
        if (cand / REPORT_MD).is_file():
            return cand, ""
        rounds = sorted(((int(m.group(1)), d) for d in (cand.iterdir() if cand.is_dir() else ())
                         if d.is_dir() and (m := ROUND_DIR.match(d.name)) and (d / REPORT_MD).is_file()),
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
    parts = [which] if which else []
    for rd in [d, *sorted(p for p in d.glob(f"{DERIVATION_DIR}*") if (p / REPORT_MD).is_file())]:
        try:
            parts.append(rd.joinpath(REPORT_MD).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise HebbnasError(f"cannot read {rd / REPORT_MD}: {e}") from None
    final = _final_section(Path(path))
    return "\n\n".join(parts + ([final] if final else []))


def _final_section(run: Path) -> str:
    """The final stage of a search run, from best/metrics.json ('' when the run had none)."""
    p = run / BEST_METRICS
    try:
        final = json.loads(p.read_text()).get("final") if p.is_file() else None
    except (OSError, ValueError):
        return ""
    if not final:
        return ""
    f = final["fidelity"]
    lines = ["# Final stage", "",
             f"The search's finalists and the control (the paper's widths fitted to the same budget) retrained on "
             f"seeds {', '.join(map(str, final['seeds']))}: {f['epochs']} epochs, "
             f"{f['train_subset'] or 'all'} training images, width {f.get('proxy_width', f.get('width')):g} at {f['resolution']} px, "
             f"augmentation {'on' if f['augment'] else 'off'}. Chosen on validation; test accuracy is reported, "
             "never used to choose.", "",
             "| network | seeds | val acc | test acc | val diff to control (pt) [95% t] | test diff (pt) |",
             "| --- | ---: | ---: | ---: | --- | ---: |"]
    for n in final["networks"]:
        if n["control"]:
            diff, tdiff = "control", ""
        else:
            ci = f" [{n['val_diff_lo']:+.2f}, {n['val_diff_hi']:+.2f}]" if n.get("val_diff_lo") is not None else ""
            diff = f"{n['val_diff_pt']:+.2f}{ci}" if n.get("val_diff_pt") is not None else "-"
            tdiff = f"{n['test_diff_pt']:+.2f}" if n.get("test_diff_pt") is not None else "-"
        mark = " (chosen)" if n["chosen"] else ""
        val = "-" if n["val_acc"] is None else f"{n['val_acc']:.4f}"
        test = "-" if n["test_acc"] is None else f"{n['test_acc']:.4f}"
        lines.append(f"| {n['network']}{mark} | {n['seeds']} | {val} | {test} | {diff} | {tdiff} |")
    lines += ["", f"**Decision:** {final['sentence']}."]
    return "\n".join(lines)

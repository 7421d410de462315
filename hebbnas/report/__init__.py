"""The cluster-to-branch report: what the probe saw in each module's input and the widths it became.

Per Inception module: input channels, the clusters (size, members, cohesion, spatial scale, branch),
the derived widths after fitting beside the paper's (Table 1) widths, MACs and params of both, and what
each 1x1 reduction saves. One module per idea:

    tables.py     the values (DataFrames and numbers)
    markdown.py   report.md, what `hebbnas probe` prints
    plots.py      heatmaps, dendrograms, the widths chart (matplotlib Figures, never pyplot)
    files.py      write a report folder; find and read one back (`hebbnas report`)
    round.py      a search round's report
    page.py       the self-contained HTML page of a run (`hebbnas report RUN --html`)

pandas, matplotlib, Jinja2 and `hebbnas.derive` (which pulls in torch) are imported where they are
used, so `read_report` (``hebbnas report RUN``) starts quickly.
"""

from __future__ import annotations

from hebbnas.report.files import find_report, read_report, report_dict, write_report
from hebbnas.report.markdown import render_markdown
from hebbnas.report.page import HTML_REPORT, pareto_front, render_html, tradeoff_figure, write_html_report
from hebbnas.report.plots import cluster_order, dendrogram_figure, heatmap_figure, live_linkage, widths_figure
from hebbnas.report.round import write_round_report
from hebbnas.report.tables import cluster_table, compact_members, module_table, paper_topology, reduction_savings, totals

__all__ = [
    "HTML_REPORT", "cluster_order", "cluster_table", "compact_members", "dendrogram_figure", "find_report",
    "heatmap_figure", "live_linkage", "module_table", "paper_topology", "pareto_front", "read_report",
    "reduction_savings", "render_html", "render_markdown", "report_dict", "totals", "tradeoff_figure",
    "widths_figure", "write_html_report", "write_report", "write_round_report",
]

"""The report page: one self-contained HTML file of a run (or a `hebbnas probe` folder).

Settings, the best model, every trial (the best highlighted), accuracy against MACs and parameters
with the Pareto front, and each round's cluster-to-branch report (its totals from report.json, its
module table from modules.csv, its plots). The page is a Jinja2 template (autoescaped); tables are
rendered from records by one macro; images are embedded as data URIs, so nothing is fetched.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hebbnas import atomic
from hebbnas.errors import HebbnasError
from hebbnas.layout import BEST_METRICS, CONFIG, HTML_REPORT, PROBE_SUMMARY, REPORT_DIR, REPORT_JSON, REPORT_MD
from hebbnas.report.files import DERIVATION_DIR, ROUND_DIR
from hebbnas.trials import knob_prefixes

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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

_PAGE = """<!DOCTYPE html>
<html lang='en'><head><meta charset='utf-8'>
<meta name='viewport' content='width=device-width, initial-scale=1'>
<title>{{ title }}</title><style>{{ css }}</style></head><body>
{%- macro table(columns, rows, best=None, id_col='trial_id') -%}
<div class='scroll'><table><thead><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr></thead><tbody>
{%- for r in rows %}
<tr{% if best is not none and r[id_col]|string == best %} class='best'{% endif %}>
{%- for c in columns %}{% set t = r[c]|cell %}{% if t|length > 60 %}<td title='{{ t }}'>{{ t[:59] }}\u2026</td>
{%- else %}<td>{{ t }}</td>{% endif %}{% endfor %}</tr>
{%- endfor %}
</tbody></table></div>
{%- endmacro -%}
{%- macro pairs(d) -%}
<div class='scroll'><table>{% for k, v in d.items() %}<tr><th>{{ k }}</th><td style='text-align:left'>{{ v|cell }}</td></tr>{% endfor %}</table></div>
{%- endmacro %}
<h1>{{ title }}</h1>
<p class='muted'>{{ path }}</p>
<h2>Settings</h2>
{{ pairs(settings) }}
{%- if best %}
<h2>Best model</h2>
{{ pairs(best) }}
{%- endif %}
{%- if final %}
<h2>Final stage</h2>
<p>{{ final.intro }}</p>
{{ table(final_columns, final.rows, final.chosen, 'network') }}
<p><b>Decision:</b> {{ final.sentence }}.</p>
{%- endif %}
{%- if trials %}
<h2>Trials ({{ trials|length }})</h2>
<p class='muted'>Sorted by validation accuracy; the best trial is highlighted. Widths per module are in trials.csv.</p>
{{ table(trial_columns, trials, best_id) }}
<h2>Accuracy against cost</h2><p class='muted'>Every search trial with a validation accuracy; the red line and
circles mark the Pareto front (no other trial is both cheaper and more accurate), the star the best trial.
{%- if binding %} {{ binding }}{% endif %}</p>
<div class='plots'>{% for cost, uri in tradeoffs %}<img alt='validation accuracy vs {{ cost }}' src='{{ uri }}'>{% endfor %}</div>
{%- endif %}
{%- for r in rounds %}
<h2>{{ r.head }}</h2>
{%- if r.subtitle %}<p class='muted'>{{ r.subtitle }}</p>{% endif %}
{%- if r.totals %}<p>{% for line in r.totals %}{{ line }}{% if not loop.last %}<br>{% endif %}{% endfor %}</p>{% endif %}
{%- if r.modules %}
<h3>Modules: derived widths beside the paper's</h3>
{{ table(r.module_columns, r.modules, none, 'module') }}
{%- endif %}
{%- if r.widths %}<h3>Widths against the paper</h3><div class='plots'><img alt='widths' src='{{ r.widths }}'></div>{% endif %}
{%- if r.heatmaps %}
<h3>Correlation heatmaps (|r| ordered by cluster)</h3><div class='plots'>
{%- for name, uri in r.heatmaps %}<img alt='{{ name }}' width='480' src='{{ uri }}'>{% endfor %}</div>
{%- endif %}
{%- if r.empty %}<p class='muted'>no report files in {{ r.path }}</p>{% endif %}
{%- endfor %}
<p class='muted'>written by hebbnas report --html</p></body></html>
"""


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


def tradeoff_figure(rows: Sequence[Mapping[str, Any]], cost: str, best_id: str | None = None) -> Figure:
    """Validation accuracy against `cost` (``macs`` or ``params``) for every trial, the Pareto front marked."""
    from matplotlib.figure import Figure

    pts = [(float(r[cost]), float(r["val_acc"]), str(r.get("trial_id")), str(r.get("status") or ""))
           for r in rows if _finite(r.get(cost)) and _finite(r.get("val_acc"))]
    fig = Figure(figsize=(5.6, 4.0), dpi=100, layout="constrained")  # two side by side on the page
    ax = fig.add_subplot()
    label = {"macs": "MACs at the deploy shape", "params": "parameters",
             "latency_ms": "latency (ms, batch 1, measured)"}.get(cost, cost)
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


def render_html(run: str | Path) -> str:
    """The report page of a run (or a `hebbnas probe` folder) as one self-contained HTML string."""
    import jinja2

    from hebbnas.runfolder import read_run_rows

    root = Path(run)
    if not root.is_dir():
        raise HebbnasError(f"{root} is not a folder")
    cfg = _config(root)
    metrics = json.loads((root / BEST_METRICS).read_text()) if (root / BEST_METRICS).is_file() else {}
    rows = read_run_rows(root)
    rounds = _round_dirs(root / REPORT_DIR) or ([(0, root / REPORT_DIR, "")]
                                              if (root / REPORT_DIR / REPORT_MD).is_file() else [])
    search = [r for r in rows if r.get("stage", "search") != "final"]
    costs, binding = _costs(search, metrics.get("budget") or cfg.get("budget"))
    if not cfg and not rows and not rounds:
        raise HebbnasError(f"{root} is not a run or probe folder (no {CONFIG}, trials.csv or {REPORT_DIR}/)")
    best_id = str(metrics["trial_id"]) if metrics.get("trial_id") is not None else None
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["cell"] = _cell
    title = f"hebbnas report: {root.name}"
    trials, columns = _trials(rows)
    best_keys = ("trial_id", "stage", "network", "seed", "round", "val_acc", "best_val_acc", "test_acc", "macs",
                 "params", "input", "epochs", "dataset", "resolution", "proxy_width", "search_seconds")
    return env.from_string(_PAGE).render(
        title=title, css=_CSS, path=str(root.resolve()), settings=_settings(cfg),
        best={k: metrics[k] for k in best_keys if k in metrics}, trials=trials, trial_columns=columns,
        best_id=best_id, tradeoffs=[(c, _png_data_uri(tradeoff_figure(search, c, best_id))) for c in costs]
        if search else [], binding=binding, rounds=[_round(k, d, label) for k, d, label in rounds],
        final=_final(metrics.get("final")), final_columns=FINAL_COLUMNS)


def write_html_report(run: str | Path, out: str | Path | None = None) -> Path:
    """Write the report page (default ``RUN/report.html``), atomically; return its path."""
    root = Path(run)
    text = render_html(root)
    target = Path(out) if out is not None else root / HTML_REPORT
    if target.is_dir():
        target = target / HTML_REPORT
    try:
        atomic.write_text(target, text, encoding="utf-8")
    except OSError as e:
        raise HebbnasError(f"cannot write {target}: {e.strerror or e}") from None
    return target


# ---------------------------------------------------------------------------------------------
# the page's parts, as values for the template


def _config(root: Path) -> dict[str, Any]:
    """A run's config.yaml, else a probe folder's probe.json, else nothing."""
    from hebbnas.runfolder import read_config

    if (root / CONFIG).is_file():
        return read_config(root)
    if (root / PROBE_SUMMARY).is_file():
        return json.loads((root / PROBE_SUMMARY).read_text())
    return {}


def _settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: cfg.get(k) for k in ("command", "created", "budget", "strategy", "seed", "dataset", "resolution",
                                    "deploy_input", "storage") if cfg.get(k) is not None}
    settings = dict(cfg.get("settings") or {})
    if isinstance(settings.get("proxy"), Mapping):  # the proxy's settings beside the search's
        settings = {**settings.pop("proxy"), **settings}
    for k, v in settings.items():
        if k not in out and v is not None and not isinstance(v, (dict, list)):
            out[k] = v
    if isinstance(cfg.get("versions"), Mapping):
        out["versions"] = ", ".join(f"{k} {v}" for k, v in cfg["versions"].items())
    if not cfg.get("settings"):
        out.update({k: v for k, v in cfg.items() if not isinstance(v, (dict, list)) and k not in out})
    return out


def _trials(rows: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The trials table: lead columns and knobs, sorted by validation accuracy."""
    if not rows:
        return [], []
    import pandas as pd

    df = pd.DataFrame(rows)
    if "nodes" in df.columns:
        df["nodes"] = short_nodes(df["nodes"])
        if df["nodes"].nunique(dropna=True) <= 1:  # one machine: nothing to tell apart
            df = df.drop(columns="nodes")
    lead = [c for c in ("trial_id", "stage", "round", "network", "seed", "drawn_by", "status", "optuna_state",
                        "epochs", "val_acc", "best_val_acc", "test_acc", "macs", "params", "latency_ms",
                        "latency_iqr_ms", "nodes") if c in df.columns and df[c].notna().any()]
    prefixes = knob_prefixes()  # the knob columns; module widths stay in trials.csv
    knobs = sorted(c for c in df.columns if c.split(".")[0] in prefixes)
    df = df[lead + knobs].sort_values(["val_acc"], ascending=False, na_position="last")
    return df.to_dict("records"), list(df.columns)


def short_nodes(nodes: Any) -> Any:
    """Ray's 56-character node ids as node-1, node-2, ... in order of appearance (';'-separated lists kept)."""
    names: dict[str, str] = {}

    def one(v: Any) -> Any:
        if not isinstance(v, str) or not v:
            return v
        return ";".join(names.setdefault(n, f"node-{len(names) + 1}") for n in v.split(";"))

    return nodes.map(one)


FINAL_COLUMNS = ["network", "control", "search_rank", "seeds", "val_acc", "test_acc", "val_diff_pt", "val_diff_lo",
                 "val_diff_hi", "test_diff_pt", "beats_control"]
"""The final stage's table on the page (best/metrics.json's `final.networks`)."""


def _final(final: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not final:
        return None
    f = final["fidelity"]
    intro = (f"The search's finalists and the control (the paper's widths fitted to the same budget) retrained on "
             f"seeds {', '.join(map(str, final['seeds']))}: {f['epochs']} epochs, {f['train_subset'] or 'all'} "
             f"training images, width {f.get('proxy_width', f.get('width')):g} at {f['resolution']} px, augmentation "
             f"{'on' if f['augment'] else 'off'}. Differences are in points, finalist minus control on the same "
             f"seed, with a {final['confidence']:.0%} t interval; the answer is chosen on validation, test accuracy "
             "is reported, never used to choose.")
    return {"intro": intro, "rows": final["networks"], "chosen": str(final["chosen"]), "sentence": final["sentence"]}


def _round(k: int, d: Path, label: str = "") -> dict[str, Any]:
    """One round's section (or one of its further derivations): its title, totals (report.json), the module
    table (modules.csv), the plots."""
    import pandas as pd

    head = f"Round {k}: cluster-to-branch report" if k else "Cluster-to-branch report"
    out: dict[str, Any] = {"head": head + (f" ({label})" if label else ""), "path": str(d), "totals": [],
                           "modules": [], "module_columns": [], "widths": None, "heatmaps": [], "subtitle": ""}
    if (d / REPORT_JSON).is_file():
        rep = json.loads((d / REPORT_JSON).read_text())
        out["subtitle"] = str(rep.get("title") or "")
        tot = rep.get("totals") or {}
        shape = "x".join(map(str, tot.get("input_shape") or []))
        for label, key in (("fitted", "fitted"), ("paper (Table 1)", "paper"), ("paper scaled to the budget",
                                                                                "paper_scaled")):
            c = tot.get(key)
            if c:
                out["totals"].append(f"{label}: {c['name']}, {c['macs']:,} MACs at {shape}, {c['params']:,} params")
    if (d / "modules.csv").is_file():
        mods = pd.read_csv(d / "modules.csv")
        out["modules"], out["module_columns"] = mods.to_dict("records"), list(mods.columns)
    plots = d / "plots"
    if (plots / "widths.png").is_file():
        out["widths"] = _png_data_uri(plots / "widths.png")
    if plots.is_dir():
        out["heatmaps"] = [(p.stem, _png_data_uri(p)) for p in sorted(plots.glob("heatmap_*.png"))]
    out["empty"] = not (out["totals"] or out["modules"] or out["widths"] or out["heatmaps"])
    return out


BINDING = 0.01
"""MACs within this share of the budget count as at the budget (the fit fills it up to rounding)."""


def _costs(rows: Sequence[Mapping[str, Any]], budget: Any = None) -> tuple[list[str], str]:
    """The costs accuracy is plotted against, and a note when the budget binds: MACs only when trials differ
    in them (every fitted trial sits at the budget, so a MAC axis would show rounding), params always, the
    measured latency when trials have one."""
    macs = [float(r["macs"]) for r in rows if _finite(r.get("macs"))]
    note = ""
    plot_macs = True
    if macs and _finite(budget) and min(macs) >= (1 - BINDING) * float(budget):
        plot_macs = False
        note = (f"The budget binds: every trial's MACs lie within {100 * (1 - min(macs) / float(budget)):.2g}% of "
                f"{float(budget):.3g}, so accuracy is plotted against what varies (parameters"
                f"{', latency' if any(_finite(r.get('latency_ms')) for r in rows) else ''}).")
    costs = (["macs"] if plot_macs else []) + ["params"]
    return costs + (["latency_ms"] if any(_finite(r.get("latency_ms")) for r in rows) else []), note


def _round_dirs(report_root: Path) -> list[tuple[int, Path, str]]:
    """(round, folder, '') per round, each followed by its further derivations (derivation-N/)."""
    if not report_root.is_dir():
        return []
    rounds = sorted(((int(m.group(1)), d) for d in report_root.iterdir()
                     if d.is_dir() and (m := ROUND_DIR.match(d.name))), key=lambda t: t[0])
    out: list[tuple[int, Path, str]] = []
    for k, d in rounds:
        out.append((k, d, ""))
        out += [(k, e, e.name) for e in sorted(d.glob(f"{DERIVATION_DIR}*")) if e.is_dir()]
    return out


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


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _cell(v: Any) -> str:
    """A table cell's text: empty for missing, thousands separators for big integers, 4 significant digits."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        if v.is_integer() and abs(v) >= 1000:
            return f"{int(v):,}"
        return f"{v:.4g}"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return f"{int(v):,}" if abs(int(v)) >= 10000 else str(int(v))
    return str(v)

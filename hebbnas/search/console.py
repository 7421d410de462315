"""What a search prints while it runs and when it ends (`hebbnas search` and `hebbnas.search(...)`): the
search's sink on a terminal or in a notebook.

`Console` implements `hebbnas.search.sink.SearchSink`: it hands every product to the run folder
(`hebbnas.runfolder.RunFolder`, which only writes files) and prints one line per event, a compact table
of trials (trial, round, MACs, epoch, validation accuracy, status) and the final summary.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

from hebbnas.layout import BEST_TOPOLOGY
from hebbnas.runfolder import RunFolder
from hebbnas.topology import Topology
from hebbnas.trials import fmt_macs, format_budget


class Console:
    """The search's sink: the run folder writes, this prints."""

    def __init__(self, folder: RunFolder, out: IO[str] | None = None) -> None:
        self.folder = folder
        self.out = out or sys.stdout
        folder.warn = self.message

    @property
    def path(self) -> Any:
        return self.folder.path

    def message(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def round_started(self, k: int, rounds: int, n_trials: int, seed: Topology, resumed: bool) -> None:
        s = self.folder.settings
        what = "resuming" if resumed else "starting"
        self.message(f"round {k}/{rounds}: {what} {n_trials} trial(s), strategy {s.strategy}, up to {s.trial_epochs} "
                     f"epoch(s) each, budget {format_budget(s.budget)} MACs")
        self.message(f"  {'trial':<10} {'round':>5} {'MACs':>10} {'epoch':>7} {'val acc':>8}  status")

    def load_probe(self, k: int) -> Any:
        return self.folder.load_probe(k)

    def probe_ready(self, k: int, probe: Any, seed: Topology, info: Mapping[str, Any]) -> None:
        where = self.folder.save_probe(k, probe, seed)
        bits = [f"{k_}: {v:.4g}" if isinstance(v, float) else f"{k_}: {v}" for k_, v in info.items()]
        self.message(f"round {k}: probe saved to {where} ({', '.join(bits)})")

    def trial_result(self, k: int | None, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        planned = int(result.get("epochs_planned") or self.folder.settings.trial_epochs)
        if int(result.get("epoch") or 0) >= planned:
            return  # the trial's final line follows from trial_finished
        acc = result.get("val_acc")
        acc_s = "-" if acc is None else f"{acc:.4f}"
        self.message(f"  {trial_id:<10} {_where(k, result):>7} {fmt_macs(result.get('macs')):>10} "
                     f"{str(result.get('epoch', '?')) + '/' + str(planned):>7} {acc_s:>8}  running")

    def trial_finished(self, k: int | None, row: Mapping[str, Any]) -> None:
        if not self.folder.record_trial(row):
            return
        acc = row.get("val_acc")
        extra = f"  {row['error']}" if row.get("error") else ""
        planned = self.folder.settings.trial_epochs if k is not None else (self.folder.settings.final or {}).get("epochs")
        epochs = f"{row.get('epochs', 0)}/{planned}"
        acc_s = "-" if acc in (None, "") else f"{float(acc):.4f}"
        self.message(f"  {str(row['trial_id']):<10} {_where(k, row):>7} {fmt_macs(row.get('macs')):>10} {epochs:>7} "
                     f"{acc_s:>8}  {row['status']}{extra}")

    def final_started(self, spec: Any, resumed: bool) -> None:
        f = spec.fidelity
        nets = list(dict.fromkeys(u.network for u in spec.units))
        seeds = sorted({u.seed for u in spec.units})
        data = f"{f.train_subset} training images" if f.train_subset else "all training images"
        self.message(f"final stage: {'resuming' if resumed else 'retraining'} {len(nets) - 1} finalist(s) "
                     f"({', '.join(nets[1:]) or 'none distinct from the control'}) and the control (the paper's "
                     f"widths at the same budget) on seeds {', '.join(map(str, seeds))}: {f.epochs} epoch(s), {data}, "
                     f"{f.proxy_width:g} width at {f.resolution} px, augmentation {'on' if f.augment else 'off'}; "
                     f"{len(spec.units)} unit(s)")
        self.message(f"  {'trial':<10} {'network':>7} {'MACs':>10} {'epoch':>7} {'val acc':>8}  status")

    def final_finished(self, outcome: Any) -> None:
        self.folder.final_finished(outcome)
        self.message(final_lines(outcome))

    def trial_checkpoint(self, trial_id: str, checkpoint: Any) -> None:
        self.folder.trial_checkpoint(trial_id, checkpoint)

    def round_finished(self, outcome: Any) -> None:
        self.folder.round_finished(outcome)
        b = outcome.best
        if b is not None:
            self.message(f"round {outcome.round}: best trial {b['trial_id']} val acc {float(b['val_acc']):.4f}, "
                         f"{fmt_macs(b['macs'])} MACs")

    def print_final(self) -> None:
        """The summary: trial counts by status, the table, the best trial, the wall-time breakdown."""
        metrics = self.folder.metrics()
        rows = [r for r in self.folder.rows.values() if r.get("stage", "search") != "final"]
        units = len(self.folder.rows) - len(rows)
        counts: dict[str, int] = {}
        for r in rows:
            counts[str(r.get("status"))] = counts.get(str(r.get("status")), 0) + 1
        self.message("")
        self.message(f"search finished: {len(rows)} trial(s), " + ", ".join(f"{n} {s}" for s, n in counts.items())
                     + (f"; final stage: {units} unit(s)" if units else ""))
        self.message(summary_table(rows, None if metrics.get("final") else metrics.get("trial_id")))
        if not metrics:
            return
        path = self.folder.path
        where = f"round {metrics['round']}" if metrics.get("round") is not None else f"final stage, {metrics['network']}"
        self.message(
            f"best: trial {metrics['trial_id']} ({where}), val acc {metrics['val_acc']:.4f}, "
            f"test acc {metrics['test_acc']:.4f}, MACs {metrics['macs']:,} at {'x'.join(map(str, metrics['input']))} "
            f"<= budget {format_budget(metrics['budget'])}, params {metrics['params']:,}")
        final = metrics.get("final")
        if final:
            self.message(f"final stage: {final['sentence']}")
            self.message(f"chosen: {metrics['network']} (seed {metrics['seed']}'s weights in best/model.pt; test acc "
                         "is reported, never used to choose)")
        self.message(f"run folder: {path}  (best/model.pt, best/metrics.json, trials.csv"
                     f"{', final.csv' if final else ''})")
        w = self.folder.timings()
        if w:
            self.message(f"wall time {w.pop('wall'):.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in w.items()))
        width = float(metrics.get("proxy_width", 1.0))
        if width < 1:
            self.message(
                f"note: {'the final stage' if final else 'trials'} trained {width:g}-width copies (the width proxy): "
                f"best/topology.json is the full-width topology, and best/model.pt holds its proxy's weights, not the "
                f"deployed model. Train it with: hebbnas train {path / BEST_TOPOLOGY} --dataset "
                f"{metrics.get('dataset')} --resolution {metrics.get('resolution')} --out DIR (or give the space's "
                f"final: block width: 1 and the deploy resolution, on GPUs); then: hebbnas export DIR")


def _where(k: int | None, row: Mapping[str, Any]) -> str:
    """The round of a search trial, or the network a final-stage unit retrains (shortened)."""
    if k is not None:
        return str(k)
    return str(row.get("network") or "final")[:7]


def final_lines(outcome: Any) -> str:
    """The final stage's table (per network: seeds, mean validation and test accuracy, paired difference to
    the control with its interval) and the decision sentence."""
    from hebbnas.runfolder import final_table

    df = final_table(outcome)
    head = f"  {'network':<12} {'seeds':>5} {'val acc':>8} {'test acc':>8}  {'val diff to control (pt) [95% t]':<34} {'test diff':>9}"
    out = ["final stage:", head]
    for r in df.to_dict("records"):
        if r["control"]:
            diff, tdiff = "(control)", ""
        else:
            lo, hi = r["val_diff_lo"], r["val_diff_hi"]
            ci = f" [{lo:+.2f}, {hi:+.2f}]" if lo is not None and not math.isnan(lo) else ""
            diff = f"{r['val_diff_pt']:+.2f}{ci}" if r["val_diff_pt"] is not None and not math.isnan(r["val_diff_pt"]) \
                else "-"
            tdiff = f"{r['test_diff_pt']:+.2f}" if r["test_diff_pt"] is not None and not math.isnan(r["test_diff_pt"]) \
                else "-"
        mark = "*" if r["chosen"] else " "
        out.append(f"{mark} {str(r['network']):<12} {r['seeds']:>5} {r['val_acc']:>8.4f} {r['test_acc']:>8.4f}  "
                   f"{diff:<34} {tdiff:>9}")
    out.append(f"decision: {outcome.decision.sentence}")
    return "\n".join(out)


def summary_table(rows: Sequence[Mapping[str, Any]], best_id: str | None = None, limit: int = 12) -> str:
    """The final table: trials sorted by validation accuracy (errors last)."""
    def key(r: Mapping[str, Any]) -> tuple[float, float]:
        v = r.get("val_acc")
        return (-1.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v), -float(r.get("macs") or 0))

    ordered = sorted(rows, key=key, reverse=True)
    head = f"{'':2}{'trial':<10} {'round':>5} {'MACs':>10} {'params':>10} {'epochs':>6} {'val acc':>8} {'status':<10} {'optuna':<8}"
    out = [head, "-" * len(head)]
    for r in ordered[:limit]:
        mark = "* " if best_id and r.get("trial_id") == best_id else "  "
        params = f"{float(r['params']) / 1e6:.2f}M" if r.get("params") not in (None, "") else "-"
        acc = f"{float(r['val_acc']):.4f}" if r.get("val_acc") not in (None, "") else "-"
        out.append(f"{mark}{str(r.get('trial_id')):<10} {r.get('round', ''):>5} {fmt_macs(r.get('macs')):>10} {params:>10} "
                   f"{r.get('epochs', 0):>6} {acc:>8} {str(r.get('status')):<10} {str(r.get('optuna_state') or ''):<8}")
    if len(ordered) > limit:
        out.append(f"  ... {len(ordered) - limit} more in trials.csv")
    return "\n".join(out)

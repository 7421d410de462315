"""A search round's report: the cluster-to-branch report of the round's probe, in the round's folder.

Everything it needs about the strategy comes in the round's outcome as values (`report_knobs`,
`report_derivations`, `probes_seed`): the report never looks a strategy up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hebbnas import atomic
from hebbnas.layout import REPORT_JSON, REPORT_MD
from hebbnas.report.files import DERIVATION_DIR, write_report
from hebbnas.topology import Topology


def write_round_report(out_dir: Path, outcome: Any, settings: Any, deploy_input: tuple[int, int, int]) -> None:
    """The cluster-to-branch report of one round (the boundary where hebbnas.report is wired in).

    hebbian: the round's probe, clustered with the best trial's derivation knobs, beside the widths the
    best trial trained. random/paper: no probe; the best topology's widths beside the paper's.
    """
    from hebbnas.topology import show_table
    from hebbnas.trials import format_budget

    out_dir.mkdir(parents=True, exist_ok=True)
    best = outcome.best
    if best is None or not best.get("topology"):
        return
    fitted = Topology.from_json(best["topology"])
    derive_knobs = dict(outcome.report_knobs)
    deploy = tuple(deploy_input)
    derivations = list(getattr(outcome, "report_derivations", ()) or [("", derive_knobs)])
    if outcome.probe is not None and derive_knobs:
        for i, (label, kn) in enumerate(derivations):
            where = out_dir if i == 0 else out_dir / f"{DERIVATION_DIR}{i + 1}"
            _hebbian_report(where, outcome, fitted, dict(kn), settings, deploy, label, plots=i == 0)
        return
    text = [f"# Round {outcome.round}: best trial {best['trial_id']} ({settings.strategy})", "",
            f"validation accuracy {float(best['val_acc']):.4f}, budget {format_budget(settings.budget)} MACs", ""]
    if derive_knobs:
        text += ["derivation knobs: " + ", ".join(f"{k}={v}" for k, v in derive_knobs.items()), ""]
    text += ["```", show_table(fitted, deploy), "```", ""]
    atomic.write_text(out_dir / REPORT_MD, "\n".join(text))
    atomic.write_text(out_dir / REPORT_JSON, json.dumps({"round": outcome.round, "trial_id": best["trial_id"],
                                                     "strategy": settings.strategy, "knobs": derive_knobs,
                                                     "fitted_topology": fitted.to_dict()}, indent=1))


def _hebbian_report(out_dir: Path, outcome: Any, fitted: Topology, derive_knobs: Mapping[str, Any], settings: Any,
                    deploy: tuple[int, int, int], label: str = "", plots: bool = True) -> None:
    """The full report: the round's probe, clustered with the report knobs, beside the trained widths."""
    from hebbnas import derive

    derivation = derive.derive(outcome.probed, outcome.probe, derive.Policy.from_knobs(dict(derive_knobs)))
    corr = {m.name: outcome.probe.modules[m.name].correlation(remove_common=bool(derive_knobs.get("partial")))
            for m in derivation.modules if m.name in outcome.probe.modules}
    if outcome.probes_seed:
        title = f"Cluster-to-branch report, round {outcome.round}"
    else:  # the baselines' winner, read as the derivation would read it (default knobs)
        title = f"Cluster-to-branch report, round {outcome.round}: the {settings.strategy} baseline's best network"
    if label:
        title += f"; derivation: {label}"
    write_report(out_dir, derivation, fitted, corr, deploy, budget=settings.budget, title=title, plots=plots)

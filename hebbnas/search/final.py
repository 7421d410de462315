"""The final stage: the search's top networks and the control retrained from scratch on paired seeds.

A search trial is one seed at a short fidelity, and its best is often ahead by a few validation images.
So after the rounds, the top `final_top` distinct networks by validation accuracy and the **control**
(the paper's widths: the space's base fitted to the same budget) each train `final_seeds` times at the
final fidelity (the space's `final:` block), with one recipe for all (the space's `fixed:`, no sampled
knobs); seed s gives every network the same data order, split and initialisation seed. The units run as
one Ray Tune experiment (`final`, beside the rounds' experiments): parallel, checkpointed every epoch,
resumed after a kill like a round. The answer is chosen from them on validation by
`hebbnas.search.select.decide` (the control unless a finalist beats it by more than the noise); each
unit's test accuracy is measured once at its end and reported, never used to choose.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hebbnas.search.outcome import FinalSpec, FinalUnit
from hebbnas.search.select import Decision, NetworkResult, decide
from hebbnas.topology import Topology, proxy_network
from hebbnas.trials import METRIC, TrialStatus, best_key

if TYPE_CHECKING:
    from hebbnas.data import Dataset

UNIT_KEY = "final.unit"
"""The final stage's only config key: the index of the unit a trial trains (`FinalSpec.units`)."""
CONTROL = "control"
"""The `network` name of the control in trials.csv, the report and best/metrics.json."""
EXPERIMENT = "final"
"""The Tune experiment of the final stage, beside round-K."""


def finalists(rows: Sequence[Mapping[str, Any]], control_hash: str, top: int) -> list[dict[str, Any]]:
    """The `top` best usable search trials by the best-trial rule, one per topology, none equal to the control
    (which trains anyway). Pure; the order is the search's ranking."""
    usable = []
    for r in rows:
        try:
            ok = TrialStatus.parse(r.get("status")).usable
        except Exception:  # noqa: BLE001 - an unknown status is not usable
            ok = False
        if ok and r.get(METRIC) is not None and r.get("topology"):
            usable.append(dict(r))
    usable.sort(key=best_key, reverse=True)
    out, seen = [], {control_hash}
    for r in usable:
        if len(out) >= top:
            break
        h = str(r.get("topology_hash") or Topology.from_json(r["topology"]).hash())
        if h not in seen:
            seen.add(h)
            out.append(r)
    return out


def plan_units(finals: Sequence[Mapping[str, Any]], control: Topology, seeds: Sequence[int]) -> tuple[FinalUnit, ...]:
    """Seed by seed, the control first, then the finalists in search order (so a stop leaves whole seeds)."""
    nets = [(CONTROL, control, True, 0)] + [(str(r["trial_id"]), Topology.from_json(r["topology"]), False, i + 1)
                                             for i, r in enumerate(finals)]
    return tuple(FinalUnit(name, t, s, c, rank) for s in seeds for name, t, c, rank in nets)


def run_final_unit(config: dict[str, Any], *, spec: FinalSpec, dataset: Dataset) -> None:
    """The Tune trainable of the final stage: train unit `config[UNIT_KEY]` at the final fidelity."""
    from hebbnas.search.trial import run_guarded

    run_guarded(lambda: _train_unit(config, spec, dataset), round_=0)


def _train_unit(config: Mapping[str, Any], spec: FinalSpec, dataset: Dataset) -> None:
    import torch
    from ray import tune

    from hebbnas.search.trial import train_and_report
    from hebbnas.train import TrainConfig

    torch.set_num_threads(spec.threads)
    unit = spec.units[int(config[UNIT_KEY])]
    f = spec.fidelity
    cfg = TrainConfig.from_dict({**spec.train, "epochs": f.epochs, "seed": unit.seed, "augment": f.augment})
    trial_id = tune.get_context().get_trial_id() or "local"
    meta = {"input": list(spec.deploy_input), "dataset": spec.dataset, "resolution": f.resolution,
            "mean": list(spec.mean), "std": list(spec.std), "trial_id": trial_id, "strategy": spec.strategy,
            "budget": spec.budget, "proxy_width": f.proxy_width, "stage": "final", "network": unit.network,
            "seed": unit.seed, "control": unit.control, "candidate_topology": unit.topology.to_dict()}
    extra = {"stage": "final", "network": unit.network, "seed": unit.seed, "control": unit.control,
             "finalist_rank": unit.rank, "epochs_planned": f.epochs}
    train_and_report(unit.topology, proxy_network(unit.topology, f.proxy_width), cfg, dataset, meta, extra,
                     budget=spec.budget, deploy_input=spec.deploy_input, test=True)


def network_results(rows: Sequence[Mapping[str, Any]], units: Sequence[FinalUnit]) -> list[NetworkResult]:
    """Per network, its last-epoch validation (and test) accuracy per seed from the stage's rows; a unit
    that errored or has no row counts as failed. Pure."""
    by_unit = {(str(r.get("network")), int(r.get("seed"))): r for r in rows if r.get("network") is not None}
    out: dict[str, dict[str, Any]] = {}
    for u in units:
        r = by_unit.get((u.network, u.seed))
        ok = r is not None and TrialStatus.parse(r.get("status")) == TrialStatus.COMPLETED
        d = out.setdefault(u.network, {"control": u.control, "rank": u.rank, "val": {}, "test": {}})
        d["val"][u.seed] = _num(r.get(METRIC)) if ok and r is not None else None
        d["test"][u.seed] = _num(r.get("test_acc")) if ok and r is not None else None
    return [NetworkResult(n, d["control"], d["val"], d["test"], d["rank"]) for n, d in out.items()]


def chosen_unit(rows: Sequence[Mapping[str, Any]], network: str) -> dict[str, Any]:
    """The chosen network's unit whose weights go to best/: its best validation accuracy (ties: lower seed)."""
    mine = [dict(r) for r in rows if str(r.get("network")) == network and _num(r.get(METRIC)) is not None
            and TrialStatus.parse(r.get("status")) == TrialStatus.COMPLETED]
    return max(mine, key=lambda r: (_num(r.get(METRIC)), -int(r["seed"])))


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def decide_rows(rows: Sequence[Mapping[str, Any]], units: Sequence[FinalUnit], margin: float) -> Decision:
    return decide(network_results(rows, units), margin=margin)

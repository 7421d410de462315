"""Confirmed winners (issue 30, item 5): which strategy's *final-stage* answer is best at convergence?

The default strategy was chosen from 2-epoch picks, and its pick lost to the paper's widths once
retrained. Here every strategy ends as `hebbnas search` now ends: a search of K units in the zoo's
protocol (analysis/zoo.py: 2 epochs on 5,000 Fashion-MNIST images, 1/4 width at 128 px, budget 3e8 MACs),
then a final stage: its top two distinct networks by validation accuracy and the control (the paper's
widths) retrained in the converged protocol (analysis/converged.py: 10 epochs on 20,000 images, crop +
flip) on seeds 0 and 1, and the answer chosen there by `hebbnas.search.select.decide` (the control unless
a finalist's paired validation difference has a 95% t interval above zero). The answer's converged test
accuracy is the score; the plan is in finals-planning.md, fixed before any unit.

    tpe         hebbnas.strategies.tpe as it searches now (exact enqueued derivations, start-up draws after
                them: analysis/strategies.py's run_optuna with the strategy's own sampler)
    random      random search: K of the zoo's 24 random candidates drawn without replacement (seeded by the
                repeat), their zoo units on the repeat's seed (no training)
    reallocate  analysis/strategies.py's run (the paper's widths, then probe-proposed moves)
    slim        analysis/strategies.py's run (TPE over the energy of the global threshold)

A finalist trains seed 1 only when its seed-0 validation accuracy is above the paper's: below it, no second
seed can make the rule choose it (amendment 1 of the plan; `later_seed_units`).

Repeat r runs every strategy's search on the zoo's seed r (units cached with the zoo's and strategies'
units); the final stages of all repeats use converged seeds 0 and 1 (units cached with the converged run's).

    python analysis/finals.py --jobs 2              # the study (hours; cached, resumable, repeat by repeat)
    python analysis/finals.py --report-only         # finals.md from finals.csv
    python analysis/finals.py --smoke --out /tmp/f  # seconds (tests)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analysis import converged, strategies, zoo_protocol, zoo_units  # noqa: E402
from analysis.runlog import Session, command_line, log  # noqa: E402

RESULTS = ROOT / "analysis" / "results"
STRATEGIES = ("tpe", "random", "reallocate", "slim")
"""In the order they run within a repeat (the issue's three first, slim if the budget allows)."""
K = 16
REPEATS = (0, 1, 2)
FINAL_TOP = 2
FINAL_SEEDS = (0, 1)
CONTROL = "paper"


# ---------------------------------------------------------------------------------------------
# the search part of a run: units in order (topology, validation and test accuracy on the repeat's seed)


def random_run(zoo_main: Any, randoms: Sequence[Any], seed: int, k: int) -> list[dict[str, Any]]:
    """Random search on seed `seed`: k of the zoo's random candidates, drawn without replacement with a
    generator seeded by the repeat, in draw order, with their zoo units' accuracies (nothing trains)."""
    rng = np.random.default_rng(1000 + seed)
    pick = [randoms[i] for i in rng.permutation(len(randoms))[:k]]
    z = zoo_main[zoo_main["seed"] == seed].set_index("candidate")
    rows = []
    for i, c in enumerate(pick, 1):
        rows.append({"unit": i, "name": c.name, "topology_hash": c.topology.hash(),
                     "val_acc": float(z.loc[c.name, "val_acc"]), "test_acc": float(z.loc[c.name, "test_acc"]),
                     "topology": c.topology.to_json(indent=None)})
    return rows


def search_finalists(rows: Sequence[dict[str, Any]], control_hash: str, top: int = FINAL_TOP) -> list[dict[str, Any]]:
    """The run's top `top` distinct networks by validation accuracy (ties: the earlier unit), other than the
    control, which the final stage trains anyway. Pure; unit-tested."""
    pool = [r for r in rows if isinstance(r.get("topology"), str) and r["topology"]
            and not math.isnan(float(r["val_acc"]))]
    pool.sort(key=lambda r: (-float(r["val_acc"]), int(r["unit"])))
    out, seen = [], {control_hash}
    for r in pool:
        if len(out) >= top:
            break
        if r["topology_hash"] not in seen:
            seen.add(r["topology_hash"])
            out.append(r)
    return out


# ---------------------------------------------------------------------------------------------
# the final stage of a run, decided as hebbnas search decides


def decide_run(units: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One run's final stage from its unit rows (network, control, seed, val_acc, test_acc): the decision
    of `hebbnas.search.select.decide` and the chosen network's mean test accuracy. Pure; unit-tested."""
    from hebbnas.search.select import NetworkResult, decide

    nets: dict[str, dict[str, Any]] = {}
    for u in units:
        d = nets.setdefault(u["network"], {"control": bool(u["control"]), "rank": int(u.get("rank", 0)), "val": {},
                                           "test": {}})
        d["val"][int(u["seed"])] = u["val_acc"]
        d["test"][int(u["seed"])] = u["test_acc"]
    results = [NetworkResult(n, d["control"], d["val"], d["test"], d["rank"]) for n, d in nets.items()]
    dec = decide(results)
    chosen = next(r for r in results if r.name == dec.chosen)
    control = next(r for r in results if r.control)
    return {"chosen": dec.chosen, "kept_control": dec.kept_control, "sentence": dec.sentence,
            "chosen_test": chosen.mean_test(), "chosen_val": chosen.mean_val(),
            "control_test": control.mean_test(), "diff_test_pt": 100 * (chosen.mean_test() - control.mean_test())}


# ---------------------------------------------------------------------------------------------
# the study


def _search_rows(strategy: str, seed: int, zp: zoo_protocol.Protocol, cache: Path, zoo_cache: Path, zoo_main: Any,
                 randoms: Sequence[Any], k: int, threads: int) -> tuple[str, int, list[dict[str, Any]]]:
    if strategy == "random":
        return strategy, seed, random_run(zoo_main, randoms, seed, k)
    rows = strategies.run_strategy(zp, cache, zoo_cache, strategy, seed, k, threads, own_sampler=True)
    return strategy, seed, strategies.distinct_units([r for r in rows if isinstance(r.get("topology"), str)])


def run(out: Path, zoo_dir: Path, jobs: int, threads: int, smoke: bool, repeats: Sequence[int],
        strategy_names: Sequence[str], k: int, log: Any = print) -> Path:
    """Repeat by repeat: every strategy's search (two at a time), then the final stage's units (two at a
    time, deduplicated across strategies), then the rows of finals.csv; rewritten as repeats complete."""
    from concurrent.futures import FIRST_COMPLETED, wait

    import pandas as pd

    from hebbnas.topology import Topology

    if smoke:
        zp, cp, zoo_randoms = zoo_protocol.smoke_protocol(), converged.smoke_protocol(), ("random-00", "random-01", "random-02")
        cp = dataclasses.replace(cp, seeds=FINAL_SEEDS, focal_seeds=(), grow=())
    else:
        zp, cp, zoo_randoms = zoo_protocol.cpu_protocol(), converged.protocol(), None
    zoo_cache, scache, ccache = zoo_dir / "zoo-cache", out / "strategies-cache", out / "converged-cache"
    zoo_main = converged._zoo_main(zoo_dir)
    statics = zoo_protocol.static_candidates(zp)
    paper = statics[0].topology
    randoms = [c for c in statics if c.kind == "random" and (zoo_randoms is None or c.name in zoo_randoms)]
    names = {paper.hash(): CONTROL, **{c.topology.hash(): c.name for c in statics}}
    rows: list[dict[str, Any]] = []
    path = out / "finals.csv"
    for r in repeats:
        log(f"repeat {r}: searches ({', '.join(strategy_names)}, {k} units each, the zoo's seed {r})")
        runs: dict[str, list[dict[str, Any]]] = {}
        with zoo_units.executor(jobs) as ex:
            pending = [ex.submit(_search_rows, s, r, zp, scache, zoo_cache, zoo_main, randoms, k, threads)
                       for s in strategy_names]
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    pending.remove(f)
                    s, _, got = f.result()
                    runs[s] = got
                    best = max(got, key=lambda x: x["val_acc"])
                    log(f"  {s}: {len(got)} distinct units, best val {best['val_acc']:.4f}")
        plan: list[tuple[str, str, Any, int, int]] = []  # (strategy, network, topology, rank, seed)
        for s in strategy_names:
            fin = search_finalists(runs[s], paper.hash())
            nets = [(CONTROL, paper, 0)] + [(names.get(f["topology_hash"], f["topology_hash"]),
                                             Topology.from_json(f["topology"]), i + 1) for i, f in enumerate(fin)]
            plan += [(s, n, t, rank, seed) for seed in FINAL_SEEDS for n, t, rank in nets]
        recs: dict[tuple[str, int], dict[str, Any]] = {}
        first = {(t.hash(), seed): t for _, _, t, _, seed in plan if seed == FINAL_SEEDS[0]}
        log(f"repeat {r}: final stage, seed {FINAL_SEEDS[0]}: {len(first)} distinct units (cached ones are read)")
        _train(cp, ccache, first, jobs, threads, names, recs, log)
        rest = later_seed_units(plan, recs, paper.hash())
        skipped = sorted({names.get(t.hash(), t.hash()) for _, n, t, _, seed in plan
                          if seed != FINAL_SEEDS[0] and (t.hash(), seed) not in rest})
        log(f"repeat {r}: final stage, seeds {FINAL_SEEDS[1:]}: {len(rest)} distinct units; skipped (seed-0 "
            f"validation not above the paper's, so no later seed can make them win): {', '.join(skipped) or '-'}")
        _train(cp, ccache, rest, jobs, threads, names, recs, log)
        for s, n, t, rank, seed in plan:
            if (t.hash(), seed) not in recs:
                continue  # a later seed of a finalist that could not win (amendment 1)
            rec = recs[(t.hash(), seed)]
            rows.append({"strategy": s, "repeat": r, "network": n, "topology_hash": t.hash(), "rank": rank,
                         "seed": seed, "val_acc": rec["val_acc"], "test_acc": rec["test_acc"],
                         "control": n == CONTROL, "search_units": len(runs[s]),
                         "search_best_val": max(x["val_acc"] for x in runs[s]), "unit_s": rec.get("unit_s"),
                         "commit": rec.get("commit", ""), "topology": t.to_json(indent=None)})
        tmp = out / ".finals.csv.tmp"
        pd.DataFrame(rows).to_csv(tmp, index=False)
        tmp.replace(path)
        log(f"repeat {r}: complete ({len(rows)} final units so far)")
        if r == repeats[0]:
            machine_check(out, cp, paper, jobs, threads, log)
    return path


def later_seed_units(plan: Sequence[tuple[str, str, Any, int, int]], recs: dict[tuple[str, int], dict[str, Any]],
                     control_hash: str) -> dict[tuple[str, int], Any]:
    """The final stage's units after seed 0 that can still change a decision (amendment 1 of the plan): the
    control's, and a finalist's only when its seed-0 validation accuracy is above the control's. With margin 0
    the rule picks a finalist only when the lower end of its paired t interval is above zero, which needs every
    paired difference above zero (lo > 0 implies mean > t * sd / sqrt(n) >= half the spread, so the smallest
    difference is positive); a finalist at or below the control on seed 0 can never be chosen. Pure."""
    first = FINAL_SEEDS[0]
    ctrl = recs[(control_hash, first)]["val_acc"]
    out: dict[tuple[str, int], Any] = {}
    for _, _, t, _, seed in plan:
        h = t.hash()
        if seed != first and (h == control_hash or recs[(h, first)]["val_acc"] > ctrl):
            out[(h, seed)] = t
    return out


def _train(cp: zoo_protocol.Protocol, cache: Path, todo: dict[tuple[str, int], Any], jobs: int, threads: int,
           names: dict[str, str], recs: dict[tuple[str, int], dict[str, Any]], log: Any) -> None:
    """Train (or read from the cache) the units `todo`, two at a time, into `recs`."""
    from concurrent.futures import FIRST_COMPLETED, wait

    with zoo_units.executor(jobs) as ex:
        futs = {ex.submit(zoo_units.cached_unit, cp, cache, cp.main, t, key[1], threads): key for key, t in todo.items()}
        while futs:
            done, _ = wait(list(futs), return_when=FIRST_COMPLETED)
            for f in done:
                key = futs.pop(f)
                recs[key] = f.result()
                if recs[key].get("trained_now"):
                    log(f"  {names.get(key[0], key[0])} seed {key[1]}: val {recs[key]['val_acc']:.4f} test "
                        f"{recs[key]['test_acc']:.4f} ({recs[key]['unit_s']:.0f} s) [{len(futs)} left]")


def machine_check(out: Path, cp: zoo_protocol.Protocol, paper: Any, jobs: int, threads: int, log: Any = print) -> None:
    """The control's converged units retrained on this machine into their own cache (the plan's check of
    the machine effect; reported beside, never used to decide): finals-paper-here.csv."""
    import pandas as pd

    cache = out / "finals-paper-here-cache"
    log(f"machine check: paper on seeds {FINAL_SEEDS} retrained here ({cache.name})")
    with zoo_units.executor(jobs) as ex:
        recs = [f.result() for f in [ex.submit(zoo_units.cached_unit, cp, cache, cp.main, paper, s, threads)
                                     for s in FINAL_SEEDS]]
    pd.DataFrame([{"seed": s, "val_acc": r["val_acc"], "test_acc": r["test_acc"], "machine": r.get("machine", ""),
                   "commit": r.get("commit", "")} for s, r in zip(FINAL_SEEDS, recs)]).to_csv(
        out / "finals-paper-here.csv", index=False)


# ---------------------------------------------------------------------------------------------
# read-out


def summarise(df: Any) -> Any:
    """Per (strategy, repeat): the decision and the chosen network's converged test accuracy. Pure."""
    import pandas as pd

    out = []
    for (s, r), g in df.groupby(["strategy", "repeat"], sort=False):
        d = decide_run(g.to_dict("records"))
        seeds = g[g["control"].astype(str) != "True"].groupby("network")["seed"].nunique()
        out.append({"strategy": s, "repeat": r, **d, "units": int(g["search_units"].iloc[0]) + len(g),
                    "stopped": ", ".join(n for n, k in seeds.items() if k < len(FINAL_SEEDS))})
    return pd.DataFrame(out)


def mean_score(g: Any) -> float:
    """A strategy's score over its runs: the chosen networks' mean test accuracy, rounded so that runs that
    chose the same networks tie exactly (the default's rule and finals.md compare it with ==)."""
    return round(float(g["chosen_test"].mean()), 9)


def choose_default(runs: Any, complete: Sequence[int]) -> str | None:
    """The plan's rule for `--strategy`'s default: the highest mean score (the chosen network's converged
    test accuracy) over the complete repeats; equal means (the stages kept the same networks, e.g. paper in
    every run) go to the lower cost in trained units, then to the order of STRATEGIES. Pure; unit-tested."""
    done = runs[runs["repeat"].isin(list(complete))]
    if done.empty:
        return None
    scored = []
    for s, g in done.groupby("strategy", sort=False):
        if set(g["repeat"]) >= set(complete):
            order = STRATEGIES.index(s) if s in STRATEGIES else len(STRATEGIES)
            scored.append((-mean_score(g), float(g["units"].mean()), order, s))
    return min(scored)[3] if scored else None


def report(out: Path) -> Path:
    """finals.md from finals.csv (and finals-meta.json): per strategy over the complete repeats, the default."""
    import pandas as pd

    from hebbnas.search.select import paired_interval

    df = pd.read_csv(out / "finals.csv", keep_default_na=False)
    runs = summarise(df)
    meta = json.loads((out / "finals-meta.json").read_text()) if (out / "finals-meta.json").exists() else {}
    lines = ["# Confirmed winners: each strategy's final-stage answer at convergence", ""]
    for s in meta.get("sessions", []):
        lines.append(f"- session {s['started']}: `{s['command']}`, {s['wall_s'] / 60:.1f} min, code at {s['commit']}")
    commits = sorted({str(c) for c in df["commit"] if str(c)})
    lines += [f"- final units' code commits: {', '.join(commits) or '-'} (units from the converged run carry none: "
              "f20fdbb, an earlier machine)", ""]
    plan = out / "finals-planning.md"
    if plan.exists():
        lines += [plan.read_text().strip(), ""]
    required = {s for s in STRATEGIES[:3] if s in set(runs["strategy"])}  # the three (smoke: fewer)
    complete = sorted(r for r, g in runs.groupby("repeat") if set(g["strategy"]) >= required)
    lines += ["## Result", "", f"Complete repeats: {', '.join(map(str, complete)) or 'none'} (of {list(REPEATS)}).", "",
              "| strategy | repeats | paper kept | chosen network's converged test acc (mean) | chosen minus paper, "
              "test (pt) [95% t over repeats] | trained units per run |",
              "| --- | ---: | ---: | ---: | --- | ---: |"]
    means = {}
    for s, g in runs[runs["repeat"].isin(complete)].groupby("strategy", sort=False):
        m, lo, hi = paired_interval(list(g["diff_test_pt"]))
        means[s] = mean_score(g)
        ci = f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]" if not math.isnan(lo) else f"{m:+.2f}"
        lines.append(f"| {s} | {len(g)} | {int(g['kept_control'].sum())} of {len(g)} | {means[s]:.4f} | {ci} | "
                     f"{g['units'].mean():.0f} |")
    lines += ["", "Per run (strategy, repeat): the decision of the final stage.", "",
              "| strategy | repeat | chosen | test acc | paper test acc | stopped after seed 0 | decision |",
              "| --- | ---: | --- | ---: | ---: | --- | --- |"]
    for _, x in runs.iterrows():
        lines.append(f"| {x['strategy']} | {x['repeat']} | {x['chosen']} | {x['chosen_test']:.4f} | "
                     f"{x['control_test']:.4f} | {x['stopped'] or '-'} | {x['sentence']} |")
    here = out / "finals-paper-here.csv"
    if here.exists():
        h = pd.read_csv(here)
        ctrl = df[df["control"].astype(str) == "True"].drop_duplicates("seed").set_index("seed")["test_acc"]
        diffs = [100 * (float(ctrl[s]) - float(t)) for s, t in zip(h["seed"], h["test_acc"]) if s in ctrl.index]
        lines += ["", f"Machine check (the plan's): paper retrained on this study's machine gives test "
                  f"{', '.join(f'{t:.4f}' for t in h['test_acc'])} on seeds {', '.join(map(str, h['seed']))}; the "
                  f"reused control units minus these: {', '.join(f'{d:+.2f}' for d in diffs)} points."]
    best = choose_default(runs, complete)
    if best is not None:
        tied = sorted(s for s in means if means[s] == means[best])
        why = ("the highest mean score" if len(tied) == 1 else
               f"tied on the mean score with {', '.join(t for t in tied if t != best)}; the plan's tie-break: "
               "fewer trained units per run, then the order tpe, random, reallocate, slim")
        kept = bool(runs[runs["repeat"].isin(complete)]["kept_control"].all())
        lines += ["", f"The plan's default: **{best}** ({means[best]:.4f}; {why})."]
        if kept:
            lines.append("Every final stage of the complete repeats kept the paper's widths: no strategy's answer "
                         "beat them once confirmed.")
    path = out / "finals.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="seconds-long schema check (digits, tiny everything)")
    ap.add_argument("--report-only", action="store_true", help="rebuild finals.md from finals.csv in --out")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", default=",".join(map(str, REPEATS)), help="the zoo seeds of the repeats")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--out", type=Path, default=None, help="results folder (default analysis/results)")
    ap.add_argument("--zoo", type=Path, default=None, help="the zoo's results folder (default analysis/results; "
                    "with --smoke, --out)")
    args = ap.parse_args(argv)
    out = args.out or RESULTS
    if args.report_only:
        print(report(out).read_text())
        return 0
    import torch

    torch.set_num_threads(args.threads)
    zoo_dir = args.zoo or (out if args.smoke else RESULTS)
    session = Session(command_line("finals.py", argv))
    k = 4 if args.smoke else K
    run(out, zoo_dir, args.jobs, args.threads, args.smoke, [int(x) for x in args.repeats.split(",")],
        [x for x in args.strategies.split(",") if x], k, log)
    session.record(out / "finals-meta.json", jobs=args.jobs, threads=args.threads)
    print(report(out).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

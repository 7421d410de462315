"""Hebbian v3 (issue 31): the correlation argument with a trained probe, judged in the converged protocol.

The hebbian policies tested so far probe a seed trained for 2 epochs. This study probes the paper's
widths trained in the converged protocol (analysis/converged.py: the unit paper / seed 0, retrained here
with the probe and its weights kept; training is deterministic, so its record is the converged run's
unit again), on the zoo's probe images (the first 600 training images of seed 0's 5,000-image subset,
at 128 px), derives the candidates from that trained probe, fits them to the budget, and trains each on
the converged protocol's paired seeds. Everything else is imported from converged.py, zoo_protocol.py and
zoo_units.py: the protocol, the candidates' fit, the unit cache, the statistics.

Candidates (in training priority; the names say the policy, `tp-` = trained probe):
  paper                 the control (its units are the converged run's, read from its cache)
  hebbian-tp-split            `allocation="split"` (the converged run's hebbian-split, trained probe)
  hebbian-tp-split-partial    `allocation="split", partial=True`
  hebbian-tp-pca0.99          PCA width, energy 0.99 (hebbnas/policies.py)
  hebbian-tp-redundancy       redundancy-ranked reallocation, 4 moves of 5% of the Inception MACs
  hebbian-tp-pca0.95          PCA width, energy 0.95

A unit already in the converged run's cache (same topology, seed and recipe) is read from there, never
trained again; new units go to `--cache`. Candidates that fit to the same topology share their units.

    python analysis/hebbian_v3.py --jobs 2                 # the run (hours; cached, resumable)
    python analysis/hebbian_v3.py --report-only            # hebbian-v3.md from hebbian-v3.csv
    python analysis/hebbian_v3.py --smoke --out /tmp/h --converged /tmp/c   # seconds (tests)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analysis import converged, stats, zoo_protocol, zoo_units  # noqa: E402  (after the path: the script runs from anywhere)
from analysis.stats import holm, t_pvalue  # noqa: E402

RESULTS = ROOT / "analysis" / "results"
NAME = "hebbian-v3"
POLICIES: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = (
    ("tp-split", (("allocation", "split"),)),
    ("tp-split-partial", (("allocation", "split"), ("partial", True))),
    ("tp-pca0.99", (("allocation", "pca"), ("energy", 0.99))),
    ("tp-redundancy", (("allocation", "redundancy"), ("steps", 4), ("step_share", 0.05))),
    ("tp-pca0.95", (("allocation", "pca"), ("energy", 0.95))),
)
"""The derivations of the trained probe, in training priority (fixed in hebbian-v3-planning.md)."""
SEED_PROBE_TWIN = {"hebbian-tp-split": "hebbian-split", "hebbian-tp-split-partial": "hebbian-split-partial"}
"""The converged run's policy with the same knobs on the 2-epoch seed's probe: what probe timing changes."""
MARGIN = 0.005
"""The stated question's effect size: 0.5 point of test accuracy."""
CSV_COLUMNS = ("candidate", "seed", "val_acc", "test_acc", "proxy_macs", "kind", "policy", "macs", "params",
               "proxy_params", "topology_hash", "source", "commit", "unit_s")


def protocol(seeds: int = 5, device: str = "cpu") -> zoo_protocol.Protocol:
    """The converged protocol on seeds 0 .. seeds-1 for every candidate (no randoms are trained)."""
    p = converged.protocol(focal_seeds=seeds, device=device)
    return dataclasses.replace(p, grow=(), policies=POLICIES)


def smoke_protocol() -> zoo_protocol.Protocol:
    return dataclasses.replace(converged.smoke_protocol(), focal_seeds=(1,), grow=(), policies=POLICIES)


def all_seeds(p: zoo_protocol.Protocol) -> list[int]:
    return list(dict.fromkeys([*p.seeds, *p.focal_seeds]))


# ---------------------------------------------------------------------------------------------
# the trained probe, the candidates, the units


def paper_candidate(zoo_p: zoo_protocol.Protocol) -> zoo_protocol.Candidate:
    """The zoo's (and the converged run's) paper candidate: GoogLeNet's widths fitted to the budget."""
    return zoo_protocol.static_candidates(dataclasses.replace(zoo_p, n_random=0))[0]


def probe_unit_args(p: zoo_protocol.Protocol, zoo_p: zoo_protocol.Protocol, cache: Path, paper: zoo_protocol.Candidate,
                    threads: int = 0) -> tuple[Any, ...]:
    """`zoo_units.cached_unit`'s arguments for the probe unit: paper on seed 0, trained (or read) with its probe
    on the zoo's probe images (seed 0's `zoo_p.main.train_images`-image subset) and its weights."""
    return p, cache, p.main, paper.topology, 0, threads, True, zoo_p.main.train_images


def trained_probe(p: zoo_protocol.Protocol, paper: zoo_protocol.Candidate, rec: dict[str, Any]) -> tuple[Any, Any]:
    """(the probed network: paper's trained narrow copy, its probe) from the probe unit's record."""
    from hebbnas.probe import load_probe

    probed = paper.topology if p.main.width == 1 else paper.topology.narrowed(p.main.width)
    probe = load_probe(rec["probe_path"])
    if probe.topology_hash != probed.hash():
        raise SystemExit(f"{NAME}: the probe {rec['probe_path']} was taken on another network")
    return probed, probe


def candidates(p: zoo_protocol.Protocol, probed: Any, probe: Any) -> list[zoo_protocol.Candidate]:
    """The derivations of the trained probe (zoo.py's hebbian candidates, with this study's policies)."""
    return zoo_protocol.hebbian_candidates(dataclasses.replace(p, policies=POLICIES), probed, probe)


def write_derivation_reports(out: Path, p: zoo_protocol.Protocol, probed: Any, probe: Any) -> None:
    """The cluster-to-branch report of every derivation (its signal per module), without plots."""
    from hebbnas.derive import Policy, derive, fit
    from hebbnas.report import write_report

    for name, knobs in POLICIES:
        policy = Policy(**dict(knobs))
        d = derive(probed, probe, policy, name=f"hebbian-{name}")
        fitted = fit(d.topology, p.budget, p.deploy_input, multiple=p.multiple, name=f"hebbian-{name}")
        write_report(out / f"{NAME}-reports" / name, d, fitted, None, p.deploy_input, p.budget,
                     title=f"hebbian v3, {name}: the trained probe's derivation", plots=False)


def find_unit(p: zoo_protocol.Protocol, caches: Sequence[Path], topology: Any, seed: int) -> tuple[dict[str, Any], Path] | None:
    """A unit already trained in one of `caches` (the first that has it), with that cache."""
    for c in caches:
        path = zoo_units.unit_path(c, p.main, topology, seed, zoo_units.recipe_tag(p))
        if path.exists():
            return json.loads(path.read_text()), c
    return None


def row(cand: zoo_protocol.Candidate, rec: dict[str, Any], source: str) -> dict[str, Any]:
    r = {"candidate": cand.name, "kind": cand.kind, "policy": json.dumps(cand.policy, sort_keys=True) if cand.policy
         else "", "source": source, **{k: rec.get(k) for k in ("seed", "val_acc", "test_acc", "proxy_macs", "macs",
                                                                 "params", "proxy_params", "topology_hash", "commit",
                                                                 "unit_s")}}
    return {k: r.get(k) for k in CSV_COLUMNS}


def run(p: zoo_protocol.Protocol, zoo_p: zoo_protocol.Protocol, out: Path, cache: Path, old_caches: Sequence[Path], jobs: int,
        threads: int, log: Any = print) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The probe unit first (paper seed 0, with the probe), then every candidate seed by seed; units
    found in `old_caches` or `cache` are read; the CSV is rewritten as units finish. Returns the rows
    and what the probe unit said."""
    from concurrent.futures import FIRST_COMPLETED, wait

    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    paper = paper_candidate(zoo_p)
    seeds = all_seeds(p)
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    order: list[tuple[str, int]] = []
    caches = [*old_caches, cache]

    def flush() -> None:
        df = pd.DataFrame([rows[k] for k in order if k in rows], columns=list(CSV_COLUMNS))
        tmp = out / f".{NAME}.csv.tmp"
        df.to_csv(tmp, index=False)
        tmp.replace(out / f"{NAME}.csv")

    t0 = time.time()
    with zoo_units.executor(jobs) as ex:
        pending: dict[Any, tuple[str, Any]] = {
            ex.submit(zoo_units.cached_unit, *probe_unit_args(p, zoo_p, cache, paper, threads)): ("probe", None)}
        waiting: dict[tuple[str, int], list[zoo_protocol.Candidate]] = {}  # (topology hash, seed) -> candidates sharing it

        def want(cands: list[zoo_protocol.Candidate], seed: int) -> None:
            for c in cands:
                key = (c.name, seed)
                order.append(key)
                found = find_unit(p, caches, c.topology, seed)
                if found is not None:
                    rows[key] = row(c, found[0], found[1].name)
                    continue
                unit = (c.topology.hash(), seed)
                if unit not in waiting:
                    waiting[unit] = []
                    pending[ex.submit(zoo_units.cached_unit, p, cache, p.main, c.topology, seed, threads)] = ("unit", unit)
                waiting[unit].append(c)

        order.append(("paper", 0))  # seed 0: the converged run's unit, else the probe unit's own record
        found0 = find_unit(p, caches, paper.topology, 0)
        if found0 is not None:
            rows[("paper", 0)] = row(paper, found0[0], found0[1].name)
        for s in seeds:
            if s != 0:
                want([paper], s)
        probe_info: dict[str, Any] = {}
        while pending:
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for f in finished:
                what, unit = pending.pop(f)
                rec = f.result()
                if what == "probe":
                    rows.setdefault(("paper", 0), row(paper, rec, cache.name))
                    probed, probe = trained_probe(p, paper, rec)
                    cands = candidates(p, probed, probe)
                    write_derivation_reports(out, p, probed, probe)
                    probe_info = {"probe_path": Path(rec["probe_path"]).name, "weights_path": Path(rec["weights_path"]).name,
                                  "val_acc": rec["val_acc"], "test_acc": rec["test_acc"], "commit": rec.get("commit"),
                                  "candidates": {c.name: {"topology_hash": c.topology.hash(),
                                                          "widths": c.topology.widths()} for c in cands}}
                    log(f"{NAME}: trained probe from paper seed 0 (val {rec['val_acc']:.4f}, test {rec['test_acc']:.4f}); "
                        f"{len(cands)} candidates: " + ", ".join(f"{c.name} {c.topology.hash()}" for c in cands))
                    for s in seeds:  # seed by seed: a stop leaves complete seeds
                        want(cands, s)
                    continue
                sharing = waiting.pop(unit)
                for c in sharing:
                    rows[(c.name, unit[1])] = row(c, rec, cache.name)
                if rec.get("trained_now"):
                    log(f"  {'/'.join(c.name for c in sharing)} seed {unit[1]}: val {rec['val_acc']:.4f} test "
                        f"{rec['test_acc']:.4f} ({rec['unit_s']:.0f} s) [{len(pending)} left]")
            flush()
    flush()
    log(f"{NAME}: {len(rows)} rows in {(time.time() - t0) / 60:.1f} min")
    return [rows[k] for k in order if k in rows], probe_info


# ---------------------------------------------------------------------------------------------
# statistics and the read-out


def versus_paper(acc: Any, cands: Sequence[str], margin: float = MARGIN) -> list[dict[str, Any]]:
    """Each candidate against paper on their shared seeds: mean paired difference of test accuracy, its
    95% t interval (hebbnas.search.select.paired_interval), the t test's p-value, Holm's adjustment over
    `cands`, and whether it beats paper by >= `margin` with the interval above zero."""
    from hebbnas.search.select import paired_interval

    out = []
    for c in cands:
        d, seeds = stats.pair_diff(acc, c, "paper")
        mean, lo, hi = paired_interval(d) if d.size else (math.nan,) * 3
        out.append({"candidate": c, "seeds": list(seeds), "n": int(d.size), "mean": mean, "lo": lo, "hi": hi,
                    "p": t_pvalue(d) if d.size >= 2 else math.nan})
    ps = [r["p"] for r in out]
    finite = [i for i, x in enumerate(ps) if not math.isnan(x)]
    adj = holm([ps[i] for i in finite]) if finite else []
    for r in out:
        r["p_holm"] = math.nan
    for i, a in zip(finite, adj):
        out[i]["p_holm"] = a
    for r in out:
        r["beats"] = bool(r["n"] >= 2 and r["mean"] >= margin and r["lo"] > 0)
    return out


def answer(comparisons: Sequence[dict[str, Any]], margin: float = MARGIN) -> str:
    """The stated question's answer in one sentence."""
    won = [r for r in comparisons if r["beats"]]
    q = f"Does any trained-probe derivation beat paper by >= {100 * margin:.1f} point with an interval above zero?"
    if not comparisons:
        return f"{q} **Not answered**: no candidate has units yet."
    if won:
        names = ", ".join(f"{r['candidate']} ({100 * r['mean']:+.2f} pt [{100 * r['lo']:+.2f}, {100 * r['hi']:+.2f}]"
                          f"{'' if r['p_holm'] < 0.05 else '; not below 0.05 after Holm'})" for r in won)
        return f"{q} **Yes**: {names}."
    best = max(comparisons, key=lambda r: -math.inf if math.isnan(r["mean"]) else r["mean"])
    return (f"{q} **No**. The closest, {best['candidate']}, is {100 * best['mean']:+.2f} pt "
            f"[{100 * best['lo']:+.2f}, {100 * best['hi']:+.2f}] against paper over {best['n']} paired seeds.")


def _pt(m: float, lo: float, hi: float) -> str:
    return "-" if math.isnan(m) else stats.ci_text(m, lo, hi)


def report(out: Path, converged_dir: Path | None, n_boot: int = 4000) -> Path:
    """hebbian-v3.md from hebbian-v3.csv (and the converged run's converged.csv: randoms and seed-probe twins)."""
    import numpy as np
    import pandas as pd

    df = pd.read_csv(out / f"{NAME}.csv", keep_default_na=False)
    meta_path = out / f"{NAME}-meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    acc = df.pivot_table(index="candidate", columns="seed", values="test_acc")
    val = df.pivot_table(index="candidate", columns="seed", values="val_acc")
    order = list(dict.fromkeys(df["candidate"]))
    cands = [c for c in order if c != "paper"]
    conv = None
    if converged_dir is not None and (converged_dir / "converged.csv").exists():
        conv = pd.read_csv(converged_dir / "converged.csv", keep_default_na=False)
    lines = ["# Hebbian v3: derivations of a trained probe against paper, in the converged protocol", ""]
    for s in meta.get("sessions", []):
        lines.append(f"- session {s['started']}: `{s['command']}`, {s['wall_s'] / 60:.1f} min, {s['units']} rows, "
                     f"{s['jobs']} job(s) x {s['threads']} thread(s), code at {s['commit']}")
    probe = meta.get("probe", {})
    if probe:
        p0 = df[(df["candidate"] == "paper") & (df["seed"] == 0)]
        same = ""
        if len(p0):
            r0 = p0.iloc[0]
            same = (f"; the paper seed-0 unit compared here ({r0['source']}) has val {r0['val_acc']:.4f}, test "
                    f"{r0['test_acc']:.4f}: " + ("the retrained unit reproduces it" if
                    (r0["val_acc"], r0["test_acc"]) == (probe["val_acc"], probe["test_acc"]) else "**they differ**"))
        lines.append(f"- trained probe: paper seed 0 retrained with its probe (`{probe.get('probe_path')}`, weights "
                     f"`{probe.get('weights_path')}`): val {probe['val_acc']:.4f}, test {probe['test_acc']:.4f}{same}")
    plan = out / f"{NAME}-planning.md"
    if plan.exists():
        lines += ["", plan.read_text().strip()]

    lines += ["", "## Accuracy", "", "| candidate | seeds | val acc (mean) | test acc (mean) | sd | proxy MACs | source |",
              "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for c in order:
        sub = df[df["candidate"] == c]
        lines.append(f"| {c} | {len(sub)} | {sub['val_acc'].mean():.4f} | {sub['test_acc'].mean():.4f} | "
                     f"{sub['test_acc'].std(ddof=1) if len(sub) > 1 else math.nan:.4f} | {int(sub['proxy_macs'].iloc[0]):,} | "
                     f"{', '.join(sorted(set(sub['source'].astype(str))))} |")
    if "paper" in acc.index:
        pm = float(acc.loc["paper"].mean())
        lines += ["", f"Paper's mean test accuracy: **{pm:.4f}** ({'meets' if pm >= 0.89 else 'BELOW'} the protocol's "
                  ">= 0.89)."]

    comps = versus_paper(acc, cands) if "paper" in acc.index else []
    vcomps = {r["candidate"]: r for r in versus_paper(val, cands)} if "paper" in val.index else {}
    twins = {}
    if conv is not None:
        cacc = conv.pivot_table(index="candidate", columns="seed", values="test_acc")
        for c, twin in SEED_PROBE_TWIN.items():
            if twin in cacc.index and "paper" in cacc.index and c in acc.index:
                shared = [s for s in acc.columns if s in cacc.columns and not math.isnan(acc.loc[c, s])]
                d, _ = stats.pair_diff(cacc[shared], twin, "paper")
                if d.size:
                    twins[c] = (twin, float(d.mean()), d.size)
    lines += ["", "## Each candidate against paper", "",
              "Test accuracy, mean of the seed-wise differences with the 95% t interval from their own scatter; "
              "p: paired t test, Holm-adjusted over the candidates. Validation differences beside them.", "",
              "| candidate | vs paper, test [95% t] (seeds) | p (Holm) | vs paper, val [95% t] | beats by >= 0.5 pt | "
              "seed-probe twin (converged run, same seeds) | what became of it |",
              "| --- | --- | ---: | --- | --- | --- | --- |"]
    for r in comps:
        v = vcomps.get(r["candidate"], {})
        tw = twins.get(r["candidate"])
        twin_text = f"{tw[0]} {100 * tw[1]:+.2f} pt ({tw[2]})" if tw else "-"
        what = converged.verdict(tw[1], r["lo"], r["hi"]) if tw and r["n"] >= 2 else "-"
        p_text = "-" if math.isnan(r["p"]) else f"{r['p']:.3f} ({r['p_holm']:.3f})"
        lines.append(f"| {r['candidate']} | {_pt(r['mean'], r['lo'], r['hi'])} ({r['n']}) | {p_text} | "
                     f"{_pt(v.get('mean', math.nan), v.get('lo', math.nan), v.get('hi', math.nan))} | "
                     f"{'yes' if r['beats'] else 'no'} | {twin_text} | {what} |")

    # against the random median of the converged run
    lines += ["", "## Against the converged run's random candidates", ""]
    randoms = [] if conv is None else sorted(set(conv.loc[conv["kind"] == "random", "candidate"]))
    if len(randoms) >= 2:
        racc = conv[conv["kind"] == "random"].pivot_table(index="candidate", columns="seed", values="test_acc")
        table = pd.concat([acc.loc[[c for c in order if c in acc.index]], racc]).sort_index(axis=1)
        arms = [[table.index.get_loc(c)] for c in order]
        rows_r = [table.index.get_loc(c) for c in randoms]
        med = stats.diff_to_median_additive(table.values, arms, rows_r, n_boot=n_boot, rng=np.random.default_rng(0))
        pct, seeds = converged.shared_seed_percentiles(table, order, randoms)
        lines += ["| candidate | vs random median [95%] | percentile among the randoms |", "| --- | --- | ---: |"]
        for c, m in zip(order, med):
            lines.append(f"| {c} | {_pt(*m)} | {pct[c]:.0f} |")
        lines += ["", f"{len(randoms)} randoms of the converged run ({', '.join(randoms)}), on seeds "
                  f"{', '.join(map(str, seeds)) or '-'} each. Vs the median: candidate effects from an additive "
                  "candidate + seed fit over every unit minus the median random effect, bootstrap over random "
                  "candidates and seeds (zoo.py's `diff_to_median_additive`); percentiles rank means over the "
                  "seeds every candidate here and every random has."]
    else:
        lines.append("No converged run with at least two random candidates was given (`--converged`).")
    lines += ["", "## The stated question", "", answer(comps)]
    path = out / f"{NAME}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="seconds-long schema check (digits, tiny everything)")
    ap.add_argument("--report-only", action="store_true", help="rebuild hebbian-v3.md from hebbian-v3.csv in --out")
    ap.add_argument("--seeds", type=int, default=5, metavar="N", help="paired seeds 0..N-1 for every candidate")
    ap.add_argument("--device", default="cpu", help="cpu (default), auto or cuda (a new recipe tag: no reuse)")
    ap.add_argument("--jobs", type=int, default=1, help="units trained in parallel, one process each")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default analysis/results)")
    ap.add_argument("--cache", type=Path, default=None, help="new units' cache (default <out>/hebbian-v3-cache)")
    ap.add_argument("--converged", type=Path, default=None,
                    help="the converged run's results folder: its converged.csv (randoms, seed-probe twins) and "
                    "converged-cache/ (units reused, read only); default analysis/results, none with --smoke")
    args = ap.parse_args(argv)
    if args.jobs < 1 or args.threads < 1 or args.seeds < 2:
        ap.error("--jobs and --threads must be at least 1, --seeds at least 2")
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or RESULTS
    conv_dir = args.converged or (None if args.smoke else RESULTS)
    if args.report_only:
        print(report(out, conv_dir).read_text())
        return 0
    command = "python analysis/hebbian_v3.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))

    def log(msg: str) -> None:
        print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)

    if args.smoke:
        zoo_p, p = zoo_protocol.smoke_protocol(), smoke_protocol()
    else:
        zoo_p, p = zoo_protocol.cpu_protocol(), protocol(args.seeds, args.device)
    cache = args.cache or (out / f"{NAME}-cache")
    old = [conv_dir / "converged-cache"] if conv_dir is not None and (conv_dir / "converged-cache").is_dir() else []
    started, t0 = dt.datetime.now().strftime("%Y-%m-%d %H:%M"), time.time()
    rows, probe_info = run(p, zoo_p, out, cache, old, args.jobs, args.threads, log=log)
    converged.write_meta(out, p, command, started, time.time() - t0, args.jobs, args.threads, len(rows),
                         name=f"{NAME}-meta.json")
    meta_path = out / f"{NAME}-meta.json"
    meta = json.loads(meta_path.read_text())
    meta["probe"] = probe_info
    meta_path.write_text(json.dumps(meta, indent=1))
    print(report(out, conv_dir, n_boot=200 if args.smoke else 4000).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

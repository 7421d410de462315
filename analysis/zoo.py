"""The zoo: a tabular benchmark of GoogLeNet's width space at one MAC budget (issue 11).

Every candidate is a full-width topology fitted to the budget (3e8 MACs at 3x224x224 by default):
  random-NN   the random strategy's sampler: every non-zero Inception width of GoogLeNet times its
              own multiplier, log-uniform in [0.25, 2], then fitted;
  paper       GoogLeNet's own widths (Table 1), fitted;
  hebbian-*   the derivation of ONE shared probe under several policies (default knobs, a spread,
              and the split-only policy `allocation="split"`), fitted.

All candidates train with one fixed recipe (AdamW, fixed lr / weight decay / batch / epochs, nothing
sampled) on the width proxy: a uniformly narrowed copy (`Topology.narrowed`) at a resolution where
every Inception module sees maps of at least 4x4 (1/4 width at 128 px: 16/8/4). Seeds are paired:
seed s gives every candidate the same training subset, validation split, shuffling order and
initialisation seed. Every candidate gets `seeds`; paper and the hebbian policies (the comparisons the
zoo exists for) also get `focal_seeds`, and `grow` gives single focal candidates the further seeds
their own noisier pairs need. Validation accuracy is measured once after training on the
whole validation split, test accuracy on all 10,000 test images.

The fidelity part trains the probe-independent candidates (1 seed) on today's proxy (full width at
32 px) and on a cheaper width proxy (the zoo v1 protocol), and ranks each against the main run.

Every (phase, topology, seed) unit is cached as one JSON file (`--cache`), so a killed run resumes
and a grown candidate list only trains what is new; `--jobs N` trains N units at once, one process
each. Identical topologies share their units.

    python analysis/zoo.py --jobs 2              # the CPU protocol (about 2 h on 2 cores)
    python analysis/zoo.py --noise 4 --jobs 2    # noise floor: the paper candidate, 4 seeds
    python analysis/zoo.py --jobs 2 --seeds 13 --focal-seeds 7 --grow paper=57,hebbian-default=57,\
        hebbian-partial=63,hebbian-threshold0.7=46,hebbian-split=42,hebbian-exponent0.5=33,hebbian-split-partial=63
                                                 # the committed zoo (analysis/results; cached units are read)
    python analysis/zoo.py --collect             # CSVs and read-out from the cached units, training nothing
    python analysis/zoo.py --report-only         # rebuild zoo.md and plots from the CSVs
    python analysis/zoo.py --smoke --out /tmp/z  # seconds, schema check (tests)
    python analysis/zoo.py --full --out analysis/results-gpu   # full size, GPU

This file is the script: the plan, the run and the read-out. Its protocol and candidates are in
zoo_protocol.py, its units (training, cache, probe, executor) in zoo_units.py, the statistics in stats.py;
the later studies import those, not this script.
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analysis.stats import (  # noqa: E402  (after the path: the script runs from anywhere)
    ci_text,
    diff_to_median_additive,
    pair_diff,
    paired_accuracy,
    paired_diff,
    paired_diff_to_median,
    paired_halfwidth,
    paired_noise,
    percentile_within,
    seeds_for_halfwidth,
    seeds_for_paired_t,
    spearman,
    spearman_boot,
    t_interval,
)
from analysis.zoo_protocol import (  # noqa: E402
    DEFAULT_OUT,
    Candidate,
    Protocol,
    cpu_protocol,
    full_protocol,
    hebbian_candidates,
    smoke_protocol,
    static_candidates,
)
from analysis.zoo_units import (  # noqa: E402
    LEGACY_RECIPE,
    Unit,
    cached_unit,
    executor,
    probe_seed,
    recipe_tag,
    unit_path,
    unit_row,
)

COLUMNS = ("candidate", "kind", "policy", "seed", "proxy", "phase", "lr", "weight_decay", "batch_size", "epochs",
           "train_images", "val_images", "test_images", "val_acc", "test_acc", "macs", "params", "proxy_macs",
           "proxy_params", "train_s", "eval_s", "device", "topology_hash")


# ---------------------------------------------------------------------------------------------
# the run


def fidelity_subset(cands: list[Candidate], k: int) -> list[Candidate]:
    """The first k probe-independent candidates: paper, then the randoms in order (so the fidelity units
    of an earlier zoo with another probe stay valid)."""
    order = [c for c in cands if c.name == "paper"] + [c for c in cands if c.kind == "random"]
    return order[:k]


def plan_units(p: Protocol, static: list[Candidate], hebbian: list[Candidate]) -> list[Unit]:
    """Every unit in priority order: all candidates seed by seed (an interrupted run has complete seeds
    first), then the first two focal seeds of paper and the hebbian policies, the fidelity units, and
    the remaining focal seeds (the first to go when time runs out)."""
    cands = static[:1] + hebbian + static[1:]
    units = [Unit("main", p.main.name, p.main, c, s) for s in p.seeds for c in cands]
    focal = [c for c in cands if c.kind != "random"]
    units += [Unit("main", p.main.name, p.main, c, s) for s in p.focal_seeds[:2] for c in focal]
    fid = fidelity_subset(cands, p.fidelity_candidates)
    units += [Unit("fidelity", "today", p.today, c, p.fidelity_seed) for c in fid]
    units += [Unit("fidelity", "cheap", p.cheap, c, s) for s in p.fidelity_seeds for c in fid]
    units += [Unit("main", p.main.name, p.main, c, s) for s in p.focal_seeds[2:] for c in focal]
    # then `grow`, seed by seed, so that a run stopped early has each grown pair on consecutive seeds
    have = {(u.cand.name, u.seed) for u in units if u.phase == "main"}
    target = dict(p.grow)
    units += [Unit("main", p.main.name, p.main, c, s) for s in range(max(target.values(), default=0))
              for c in focal if s < target.get(c.name, 0) and (c.name, s) not in have]
    return units


def parse_grow(text: str, p: Protocol) -> tuple[tuple[str, int], ...]:
    """`--grow paper=57,hebbian-default=57` as (name, n) pairs, checked against the focal candidates."""
    focal = ["paper"] + [f"hebbian-{name}" for name, _ in p.policies]
    out: dict[str, int] = {}
    for item in (x.strip() for x in text.split(",") if x.strip()):
        name, sep, n = item.partition("=")
        if not sep or not n.strip().isdigit():
            raise ValueError(f"--grow: expected NAME=N, got {item!r}")
        if name.strip() not in focal:
            raise ValueError(f"--grow: {name.strip()!r} is not a focal candidate (one of {', '.join(focal)})")
        out[name.strip()] = int(n)
    return tuple(out.items())


def _probe_task(p: Protocol, cache: Path, threads: int) -> tuple[Any, Any, dict[str, Any]]:
    if threads:
        import torch

        torch.set_num_threads(threads)
    return probe_seed(p, cache, print)


GROWTH = ("seeds", "focal_seeds", "grow")  # protocol fields that grow the same zoo: its sessions are kept


def write_meta(out: Path, p: Protocol, cache: Path, command: str, started: str, first_start: str, wall: float | None,
               probe_meta: dict[str, Any], jobs: int, threads: int, units_total: int, units_done: int,
               units_trained: int, note: str = "") -> None:
    """zoo-meta.json: the protocol, and one entry per session of the same zoo (more seeds are the same zoo;
    a session that was killed keeps its start with `wall_s` null; `note` records what a person did
    between sessions, e.g. a stop by hand)."""
    import torch

    first_wall = (dt.datetime.now() - dt.datetime.fromisoformat(first_start)).total_seconds()
    meta = {"command": command, "started": first_start.replace("T", " ")[:16],
            "finished": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "wall_s": None if wall is None else round(wall, 1),
            "wall_since_first_start_s": round(first_wall, 1), "protocol": p.to_dict(), "probe": probe_meta,
            "jobs": jobs, "threads": threads, "torch": torch.__version__, "cache": str(cache),
            "units_total": units_total, "units_done": units_done}
    prev = out / "zoo-meta.json"
    if prev.exists():  # a resumed run: keep the first start and add the wall time of every session
        old = json.loads(prev.read_text())
        same = {k: v for k, v in {**LEGACY_RECIPE, **old.get("protocol", {})}.items() if k not in GROWTH}
        if same == {k: v for k, v in json.loads(json.dumps(meta["protocol"])).items() if k not in GROWTH}:
            meta["sessions"] = [x for x in old.get("sessions", []) if x.get("started") != started or x["command"] != command]
    meta.setdefault("sessions", [])
    meta["sessions"].append({"command": command, "started": started, "wall_s": None if wall is None else round(wall, 1),
                             "units_trained": units_trained, **({"note": note} if note else {})})
    tmp = out / ".zoo-meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(prev)


def run(p: Protocol, out: Path, cache: Path, command: str, log: Any = print, n_boot: int = 4000,
        train_missing: bool = True, jobs: int = 1, threads: int = 1, note: str = "") -> None:
    """Train (or read) every unit, `jobs` at a time, write zoo.csv / zoo-fidelity.csv as units finish,
    then zoo-meta.json and the read-out."""
    from concurrent.futures import FIRST_COMPLETED, wait

    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    started = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    first = out / "zoo-started.txt"  # the first session's start, so a resumed run reports its whole wall time
    if first.exists():
        first_start = first.read_text().strip()
    else:
        first_start = dt.datetime.now().isoformat(timespec="seconds")
        first.write_text(first_start + "\n")
    log(f"zoo: {p.dataset}, budget {p.budget:.3g} MACs at {'x'.join(map(str, p.deploy_input))}, "
        f"{jobs} job(s) x {threads} torch thread(s), cache {cache}")
    static = static_candidates(p)
    done: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    order: list[Unit] = []

    def flush() -> None:
        import pandas as pd

        for phase, name in (("main", "zoo.csv"), ("fidelity", "zoo-fidelity.csv")):
            rs = [unit_row(u.cand, done[u.key], u.phase, u.label) for u in order if u.key in done and u.phase == phase]
            if rs:
                df = pd.DataFrame(rs)
                cols = [c for c in COLUMNS if c in df.columns] + [c for c in df.columns if c not in COLUMNS]
                tmp = out / f".{name}.tmp"
                df[cols].to_csv(tmp, index=False)
                tmp.replace(out / name)

    pool = executor(jobs)
    with pool as ex:
        pending: dict[Any, Unit] = {}

        def submit(units: list[Unit]) -> None:
            for u in units:
                order.append(u)
                if not train_missing and not unit_path(cache, u.proxy, u.cand.topology, u.seed, recipe_tag(p)).exists():
                    continue
                pending[ex.submit(cached_unit, p, cache, u.proxy, u.cand.topology, u.seed, threads)] = u

        def collect(futures: Any) -> None:
            for f in futures:
                u = pending.pop(f)
                rec = f.result()
                done[u.key] = rec
                if rec.get("trained_now"):
                    log(f"  {u.label:6s} {u.cand.name:26s} seed {u.seed}: val {rec['val_acc']:.4f} "
                        f"test {rec['test_acc']:.4f} ({rec['unit_s']:.0f} s, params {rec['params']:,}) "
                        f"[{len(done)} done, {len(pending)} queued]")
            flush()

        probe_f = ex.submit(_probe_task, p, cache, threads)
        # the probe trains in one worker while the others start on the probe-independent seed-0 units
        submit([Unit("main", p.main.name, p.main, c, p.seeds[0]) for c in static])
        while not probe_f.done():
            finished, _ = wait(list(pending) + [probe_f], return_when=FIRST_COMPLETED)
            collect([f for f in finished if f is not probe_f])
        probed, probe, probe_meta = probe_f.result()
        log(f"  probe: seed val {probe_meta['seed_val_acc']:.4f}, maps {probe_meta['maps']}")
        hebbian = hebbian_candidates(p, probed, probe)
        cands = static[:1] + hebbian + static[1:]
        (out / "zoo-candidates.json").write_text(json.dumps(
            [{"candidate": c.name, "kind": c.kind, "policy": c.policy, "meta": c.meta,
              "macs": c.topology.macs(p.deploy_input), "params": c.topology.params(), "widths": c.topology.widths(),
              "stem": dataclasses.asdict(c.topology.stem)} for c in cands], indent=1))
        write_meta(out, p, cache, command, started, first_start, None, probe_meta, jobs, threads, 0, 0, 0, note)
        already = {u.key for u in order}
        plan = plan_units(p, static, hebbian)
        submit([u for u in plan if u.key not in already])
        rank = {u.key: i for i, u in enumerate(plan)}
        order.sort(key=lambda u: rank[u.key])
        while pending:
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            collect(finished)
    flush()
    wall = time.time() - t_start
    write_meta(out, p, cache, command, started, first_start, wall, probe_meta, jobs, threads, len(order), len(done),
               sum(1 for r in done.values() if r.get("trained_now")), note)
    log(f"zoo done in {wall / 60:.1f} min ({len(done)} of {len(order)} units)")
    report(out, n_boot)


def noise_floor(p: Protocol, cache: Path, n_seeds: int, extra: Sequence[str] = (), log: Any = print,
                jobs: int = 1, threads: int = 1) -> None:
    """The paper candidate on the main proxy with seeds 0..n-1, and `extra` random candidates on the
    paired seeds (cached, shared with the zoo): the noise floor that fixes epochs and seeds."""
    static = {c.name: c for c in static_candidates(p)}
    unknown = [n for n in extra if n not in static]
    if unknown:
        raise SystemExit(f"zoo: unknown candidate(s) for --noise-extra: {', '.join(unknown)}")
    units = [(static["paper"], s) for s in range(n_seeds)] + [(static[n], s) for n in extra for s in p.seeds]
    pool = executor(jobs)
    with pool as ex:
        futs = [ex.submit(cached_unit, p, cache, p.main, c.topology, s, threads) for c, s in units]
        recs = [f.result() for f in futs]
    for (c, s), r in zip(units, recs):
        log(f"noise: {c.name:10s} seed {s} test {r['test_acc']:.4f} val {r['val_acc']:.4f} train_s {r['train_s']} "
            f"eval_s {r['eval_s']} final train acc {r.get('final_train_acc')}")
    a = np.array([r["test_acc"] for (c, _), r in zip(units, recs) if c.name == "paper"])
    log(f"noise floor ({p.main.label()}): paper test mean {a.mean():.4f}, sd {a.std(ddof=1) if a.size > 1 else 0:.4f}, "
        f"range {a.max() - a.min():.4f}")
    for n in extra:
        v = [r["test_acc"] for (c, _), r in zip(units, recs) if c.name == n]
        pv = [r["test_acc"] for (c, s), r in zip(units, recs) if c.name == "paper" and s in p.seeds]
        log(f"  {n}: seeds {p.seeds} test {', '.join(f'{x:.4f}' for x in v)}; minus paper, paired: "
            f"{', '.join(f'{100 * (x - y):+.2f} pt' for x, y in zip(v, pv))}")


# ---------------------------------------------------------------------------------------------
# read-out


def report(out: Path, n_boot: int = 4000) -> Path:
    """zoo.md and the plots, from zoo.csv, zoo-fidelity.csv and zoo-meta.json in `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.read_csv(out / "zoo.csv", keep_default_na=False)
    meta = json.loads((out / "zoo-meta.json").read_text()) if (out / "zoo-meta.json").exists() else {}
    prot = meta.get("protocol", {})
    lines: list[str] = ["# The zoo: GoogLeNet's width space at one MAC budget", ""]
    wall = meta.get("wall_since_first_start_s", meta.get("wall_s", float("nan")))
    sessions = meta.get("sessions", [])
    lines += [
        f"- date: {meta.get('started', '?')} to {meta.get('finished', '?')}; wall time {wall / 60:.1f} min from the "
        f"first start to the end ({len(sessions)} session(s); a resumed run reads finished units from the cache), "
        f"torch {meta.get('torch', '?')}, {meta.get('jobs', 1)} job(s) x {meta.get('threads', '?')} thread(s) on a 2-core machine",
        f"- command: `{meta.get('command', '?')}`",
    ]
    for x in sessions:
        w = "killed or still running" if x.get("wall_s") is None else f"{x['wall_s'] / 60:.1f} min"
        lines.append(f"  - session {x['started']}: `{x['command']}`, {w}, {x.get('units_trained', '?')} units trained"
                     + (f"; {x['note']}" if x.get("note") else ""))
    if prot:
        m = prot["main"]
        lines += [
            f"- dataset {prot['dataset']}, budget {prot['budget']:.3g} MACs of the full-width topology at "
            f"{'x'.join(map(str, prot['deploy_input']))}; every candidate fitted with `fit(t, budget, deploy, multiple={prot['multiple']})`",
            f"- main proxy (width proxy): narrowed copy x{m['width']:g} at {m['resolution']} px, {m['epochs']} epochs on "
            f"{m['train_images']} training images; {prot['val_images']} validation images, "
            f"{'all 10,000' if prot['test_images'] is None else prot['test_images']} test images",
            f"- one recipe for all: AdamW lr {prot['lr']:g}, weight decay {prot['weight_decay']:g}, batch {prot['batch_size']}, "
            f"warmup {prot['warmup_epochs']:g} epoch then cosine, aux heads 0.3; seeds planned: {prot['seeds']} for every "
            f"candidate and {prot.get('focal_seeds', [])} too for paper and the hebbian policies"
            + (", grown further (seeds 0 to n - 1): " + ", ".join(f"{c} {n}" for c, n in prot["grow"]) if prot.get("grow") else "")
            + " (the seeds trained are listed below), paired (seed s gives every candidate the same subset, validation carve, order and init seed)",
            f"- hebbian seed: GoogLeNet fitted to the budget, narrowed x{m['width']:g}, {prot['seed_epochs']} epochs, "
            f"probed on {meta.get('probe', {}).get('probe_images', '?')} images at {prot['probe_resolution']} px "
            f"(maps {meta.get('probe', {}).get('maps', '?')})",
        ]
    lines.append("")
    main = df[df["phase"] == "main"] if "phase" in df.columns else df
    acc, seeds_complete = paired_accuracy(main)
    kinds = main.groupby("candidate")["kind"].first()
    params = main.groupby("candidate")["params"].first()
    acc_c = acc[seeds_complete]
    mean = acc_c.mean(axis=1)
    focal = [c for c in acc.index if kinds[c] != "random"]
    fseeds = [s for s in acc.columns if acc.loc[focal, s].notna().all()] if focal else []
    acc_f = acc.loc[focal, fseeds]
    more = {c: int(n) for c, n in acc.notna().sum(axis=1).items() if n > len(fseeds) and kinds[c] != "random"}
    lines += [f"Units: {len(main)} rows, {acc.shape[0]} candidates; seeds with every candidate: {seeds_complete}; "
              f"seeds with paper and every hebbian policy: {fseeds}"
              + ("; seeds trained beyond those: " + ", ".join(f"{c} {n}" for c, n in more.items()) if more else "")
              + ".", ""]

    plan = out / "zoo-planning.md"
    if plan.exists():
        lines += [plan.read_text().strip(), ""]
    rng = np.random.default_rng(0)
    # noise floor and resolution
    lines += ["## Noise floor and resolution", ""]
    noise = _noise_rows(out, df)
    if noise is not None:
        a = np.asarray(noise, dtype=float)
        lines.append(f"The paper candidate on the main proxy, {a.size} seeds: test accuracy "
                     f"{', '.join(f'{v:.4f}' for v in a)}; mean {a.mean():.4f}, sd {a.std(ddof=1):.4f}, "
                     f"range {a.max() - a.min():.4f}.")
    sig_all = sig_f = None
    if len(seeds_complete) >= 2 and len(acc_c) >= 2:
        d = acc_c[seeds_complete[0]] - acc_c[seeds_complete[1]]
        sig_all = paired_noise(acc_c.values)
        big = d.abs().sort_values(ascending=False).head(5)
        lines.append(f"All {len(acc_c)} candidates on seeds {seeds_complete}: seed {seeds_complete[0]} minus seed "
                     f"{seeds_complete[1]} has sd {100 * d.std(ddof=1):.2f} pt (median |difference| "
                     f"{100 * d.abs().median():.2f} pt; largest " + ", ".join(f"{c} {100 * d[c]:+.1f}" for c in big.index)
                     + f"); between-candidate sd of the seed-mean {100 * mean.std(ddof=1):.2f} pt.")
    if len(fseeds) >= 2 and len(acc_f) >= 2:
        sig_f = paired_noise(acc_f.values)
    if sig_all or sig_f:
        lines += ["", "After pairing (candidate + seed effects removed), one unit's test accuracy scatters by sigma; "
                  "the 95% half-width of a paired difference of two candidates' means over S seeds is "
                  "t(df) * sigma * sqrt(2 / S). That half-width is the smallest difference the zoo tells from none:", "",
                  "| comparison | units pooled | sigma | df | seeds S | 95% half-width | tells 1 pt from none |",
                  "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
        if sig_all:
            hw = paired_halfwidth(sig_all[0], len(seeds_complete), sig_all[1])
            lines.append(f"| any two candidates (random included) | {len(acc_c)} candidates x {len(seeds_complete)} seeds | "
                         f"{100 * sig_all[0]:.2f} pt | {sig_all[1]} | {len(seeds_complete)} | +-{100 * hw:.2f} pt | "
                         f"{'yes' if hw <= 0.01 else 'no'} |")
        if sig_f:
            hw = paired_halfwidth(sig_f[0], len(fseeds), sig_f[1])
            lines.append(f"| paper and hebbian policies, among themselves | {len(acc_f)} candidates x {len(fseeds)} seeds | "
                         f"{100 * sig_f[0]:.2f} pt | {sig_f[1]} | {len(fseeds)} | +-{100 * hw:.2f} pt | "
                         f"{'yes' if hw <= 0.01 else 'no'} |")
        sig = sig_f or sig_all
        need = seeds_for_halfwidth(sig[0], sig[1], 0.01)
        heb_n = sum(1 for c in focal if kinds[c] == "hebbian")
        need_g = seeds_for_halfwidth(sig[0] * math.sqrt((1 + 1 / max(heb_n, 1)) / 2), sig[1], 0.01)
        lines += ["", f"At sigma = {100 * sig[0]:.2f} pt, a +-1 pt half-width takes {need} paired seeds per candidate "
                  f"for one policy against paper, and {need_g} for the mean of the {heb_n} policies against paper "
                  "(`--focal-seeds N` grows the focal seeds of a cached zoo, `--grow NAME=N` one candidate's)."]
    comps = _paired_comparisons(acc, kinds)
    if comps:
        lines += ["", "Per pair: the pooled sigma assumes every pair is equally noisy, and the seed-wise differences "
                  "say otherwise. The paired t interval of each comparison from its own differences over the seeds "
                  "both sides have (S - 1 df) makes no such assumption:", "",
                  "| comparison | seeds S | mean difference [95% CI] | sd of the differences | 95% half-width "
                  "| tells 1 pt from none | seeds for +-1 pt |", "| --- | ---: | --- | ---: | ---: | --- | ---: |"]
        n_ok = 0
        for label, dd, ss in comps:
            m, lo, hi = t_interval(dd)
            hw = (hi - lo) / 2
            n_ok += hw <= 0.01
            lines.append(f"| {label} | {len(ss)} | {ci_text(m, lo, hi)} | {100 * dd.std(ddof=1):.2f} pt | +-{100 * hw:.2f} pt | "
                         f"{'yes' if hw <= 0.01 else 'no'} | {seeds_for_paired_t(float(dd.std(ddof=1)), 0.01)} |")
        lines += ["", f"{n_ok} of {len(comps)} comparisons tell a 1-point difference from none (95% half-width at most "
                  "1.00 pt)."]
    lines.append("")

    rand = acc_c[kinds.reindex(acc_c.index) == "random"]
    heb = [c for c in acc.index if kinds[c] == "hebbian"]
    sigma_pop = sig_all[0] if sig_all else None
    fmean = acc_f.mean(axis=1) if len(fseeds) else mean
    if len(rand) and len(seeds_complete):
        rows_to_show = heb + (["paper"] if "paper" in acc.index else [])
        n_seeds = acc.notna().sum(axis=1)
        lines += ["## Hebbian policies against random and hand-set widths", "",
                  f"Random candidates: {len(rand)}; their mean test accuracy over seeds {seeds_complete} ranges "
                  f"{rand.mean(axis=1).min():.4f} to {rand.mean(axis=1).max():.4f}, median {rand.mean(axis=1).median():.4f}.",
                  f"- percentile: share of random candidates with a lower mean test accuracy on seeds {seeds_complete} (ties half);",
                  "- vs random median (headline): candidate effects from the least-squares fit accuracy = candidate + "
                  "seed over every main unit (a candidate's extra seeds count; the seed effects beyond the random "
                  "population's seeds come from the candidates trained there), the candidate's effect minus the "
                  "median effect of the random candidates; 95% interval by bootstrap over random candidates and, "
                  "within each group of seeds with the same candidates trained, over seeds (each candidate's own "
                  "scatter, not a pooled sigma);",
                  f"- vs random median, v2.3 method: per seed in {seeds_complete}, the candidate minus the median of the "
                  "random candidates, averaged; 95% interval by bootstrap over random candidates plus the pooled "
                  "sigma above as the candidate's noise (kept for comparison; it understates the noisiest candidates);",
                  "- vs paper: paired by seed over the seeds both have (S); 95% interval first from this pair's own "
                  "seed-wise differences (paired t, S - 1 df), then t(df) * sigma * sqrt(2 / S) with the sigma pooled "
                  "over paper and the hebbian policies, then the bootstrap over seeds.", "",
                  f"| candidate | params | test acc, mean of {fseeds} | percentile in random | seeds | vs random median [95% CI] "
                  "| vs random median, v2.3 method | vs paper: S, paired t [95% CI] | vs paper, pooled sigma "
                  "| vs paper, seed bootstrap |",
                  "| --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- | --- |"]
        names = list(acc.index)
        arms = [[names.index(c)] for c in rows_to_show] + ([[names.index(c) for c in heb]] if len(heb) > 1 else [])
        additive = diff_to_median_additive(acc.values, arms, [names.index(c) for c in rand.index], n_boot=n_boot,
                                           rng=np.random.default_rng(2))
        for i, c in enumerate(rows_to_show):
            pct = percentile_within(mean[c], rand.mean(axis=1).values) if c in mean.index else float("nan")
            dm = paired_diff_to_median(acc_c.loc[c].values, rand.values, rng=rng, n_boot=n_boot, noise_sd=sigma_pop)
            cells = [f"| {c} | {int(params[c]):,} | {fmean.get(c, float('nan')):.4f} | {pct:.0f} | {n_seeds[c]} | "
                     f"{ci_text(*additive[i])} | {ci_text(*dm)} | "]
            dd, ss = pair_diff(acc, c, "paper") if c != "paper" and "paper" in acc.index else (np.zeros(0), [])
            if len(ss) >= 2 and sig_f:
                hw = paired_halfwidth(sig_f[0], len(ss), sig_f[1])
                bs = paired_diff(dd, np.zeros_like(dd), rng=rng, n_boot=n_boot)
                cells.append(f"{len(ss)}, {ci_text(*t_interval(dd))} | {ci_text(dd.mean(), dd.mean() - hw, dd.mean() + hw)} | "
                             f"[{100 * bs[1]:+.2f}, {100 * bs[2]:+.2f}] |")
            else:
                cells.append("- | - | - |")
            lines.append("".join(cells))
        if len(heb) > 1:
            hm = acc_c.loc[heb].mean(axis=0)  # all hebbian policies pooled, per seed
            dm = paired_diff_to_median(hm.values, rand.values, rng=rng, n_boot=n_boot,
                                       noise_sd=None if sigma_pop is None else sigma_pop / math.sqrt(len(heb)))
            line = (f"| all hebbian (mean of {len(heb)} policies) | - | {acc_f.loc[heb].mean(axis=0).mean() if len(fseeds) else hm.mean():.4f} | "
                    f"{percentile_within(hm.mean(), rand.mean(axis=1).values):.0f} | - | {ci_text(*additive[-1])} | {ci_text(*dm)} | ")
            hf, ss = pair_diff(acc, heb, "paper") if "paper" in acc.index else (np.zeros(0), [])
            if len(ss) >= 2 and sig_f:
                hw = paired_halfwidth(sig_f[0], len(ss), sig_f[1]) * math.sqrt((1 + 1 / len(heb)) / 2)
                bs = paired_diff(hf, np.zeros_like(hf), rng=rng, n_boot=n_boot)
                line += (f"{len(ss)}, {ci_text(*t_interval(hf))} | {ci_text(hf.mean(), hf.mean() - hw, hf.mean() + hw)} | "
                         f"[{100 * bs[1]:+.2f}, {100 * bs[2]:+.2f}] |")
            else:
                line += "- | - | - |"
            lines.append(line)
        lines.append("")
        wide = [(c, additive[i]) for i, c in enumerate(rows_to_show) if (additive[i][2] - additive[i][1]) / 2 > 0.01]
        lines += ["Headline 'vs random median' intervals above +-1 pt: "
                  + (", ".join(f"{c} +-{50 * (h - lo):.2f}" for c, (_, lo, h) in wide) if wide else "none") + ".", ""]
        if sigma_pop is not None:
            # the arm only shifts each seed's median, so resampling the randoms gives the same spread for all
            _, lo, hi = paired_diff_to_median(np.zeros(len(seeds_complete)), rand.values, rng=np.random.default_rng(1),
                                              n_boot=n_boot, noise_sd=0.0)
            own = 1.96 * sigma_pop / math.sqrt(len(seeds_complete))
            lines += [f"What sets the width of the v2.3 'vs random median' intervals: resampling the {len(rand)} random "
                      f"candidates alone gives +-{100 * (hi - lo) / 2:.2f} pt; the candidate's own noise (sigma "
                      f"{100 * sigma_pop:.2f} pt on {len(seeds_complete)} seeds) +-{100 * own:.2f} pt. The noise part "
                      f"alone reaches +-1 pt at {math.ceil((1.96 * sigma_pop / 0.01) ** 2)} seeds for every candidate. "
                      "The headline intervals replace the pooled sigma with each candidate's own scatter; a noisy "
                      "candidate's link to the random population runs through the seeds the randoms have, so its "
                      "extra seeds narrow that interval less than they narrow its paired difference to paper.", ""]
        pairs = [(a, b) for a, b in WHICH_HALF if a in acc.index and b in acc.index]
        if pairs and sig_f:
            lines += ["Which half of the derivation matters, paired over the seeds both sides have (paired t interval "
                      "from the pair's own differences; the pooled-sigma interval after it): "
                      "split only keeps the probed GoogLeNet's module widths and takes the branch split from the clusters; "
                      "the full derivation takes module widths from cluster counts too.", ""]
            for a, b in pairs:
                dd, ss = pair_diff(acc, a, b)
                hw = paired_halfwidth(sig_f[0], len(ss), sig_f[1])
                what = (" (same module widths, split from the clusters vs the paper's split)" if b == "paper" else
                        " (the seed's module widths vs widths from cluster counts, both split from the clusters)")
                lines.append(f"- `{a}` - `{b}`{what}, {len(ss)} seeds: {ci_text(*t_interval(dd))}; pooled "
                             f"{ci_text(dd.mean(), dd.mean() - hw, dd.mean() + hw)}; per seed "
                             + ", ".join(f"{100 * v:+.1f}" for v in dd))
            lines.append("")
        pol = main.groupby("candidate")["policy"].first()
        lines += ["Policies (knobs different from the default `Policy()`):", ""]
        from hebbnas.derive import Policy

        default = dataclasses.asdict(Policy())
        for c in heb:
            knobs = json.loads(pol[c]) if pol[c] else {}
            diff = {k: v for k, v in knobs.items() if default.get(k) != v}
            lines.append(f"- `{c}`: {json.dumps(diff) if diff else 'default'}")
        lines.append("")

    # accuracy vs params
    fit_mask = np.array([kinds[c] != "hebbian" for c in mean.index], dtype=bool)
    if fit_mask.sum() >= 3:
        x = np.log10(params[mean.index].values.astype(float))
        y = mean.values
        slope, icept = np.polyfit(x[fit_mask], y[fit_mask], 1)
        resid = y - (icept + slope * x)
        rsd = float(np.std(resid[fit_mask], ddof=2)) if fit_mask.sum() > 2 else float("nan")
        r_params = spearman(params[rand.index].values, rand.mean(axis=1).values) if len(rand) > 2 else float("nan")
        lines += ["## Test accuracy against parameters", "",
                  f"Mean over seeds {seeds_complete}. Line fitted on random + paper candidates: acc = {icept:.4f} + "
                  f"{slope:.4f} * log10(params) (residual sd {rsd:.4f}); Spearman(params, accuracy) among random "
                  f"candidates {r_params:.2f}.", "",
                  "| candidate | params | test acc | predicted from params | residual | residual / sd |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for i, c in enumerate(mean.index):
            if kinds[c] in ("hebbian", "paper"):
                lines.append(f"| {c} | {int(params[c]):,} | {y[i]:.4f} | {icept + slope * x[i]:.4f} | {100 * resid[i]:+.2f} pt | {resid[i] / rsd:+.1f} |")
        hres = resid[~fit_mask]
        if hres.size:
            lines += ["", f"Hebbian residuals: mean {100 * hres.mean():+.2f} pt, {int((hres > 0).sum())} of {hres.size} above the line."]
        lines.append("")
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for kind, color, marker in (("random", "tab:gray", "o"), ("paper", "tab:blue", "s"), ("hebbian", "tab:red", "^")):
            sel = np.array([kinds[c] == kind for c in mean.index])
            if sel.any():
                ax.scatter(10 ** x[sel], y[sel], c=color, marker=marker, label=kind, zorder=3)
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(10 ** xs, icept + slope * xs, "k--", lw=1, label="fit (random + paper)")
        ax.set_xscale("log")
        ax.set_xlabel("parameters (full-width topology)")
        ax.set_ylabel(f"test accuracy (mean of seeds {seeds_complete})")
        ax.set_title(f"zoo at {prot.get('budget', 3e8):.3g} MACs")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "zoo_acc_vs_params.png", dpi=120)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(7, 3.2))
        order = mean.sort_values()
        colors = ["tab:red" if kinds[c] == "hebbian" else "tab:blue" if kinds[c] == "paper" else "tab:gray" for c in order.index]
        ax.bar(range(len(order)), order.values, color=colors)
        for i, c in enumerate(order.index):
            ax.errorbar(i, order[c], yerr=[[order[c] - acc_c.loc[c].min()], [acc_c.loc[c].max() - order[c]]], c="k", lw=0.7)
        ax.set_ylim(max(0.0, order.min() - 0.03), min(1.0, order.max() + 0.01))
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([c.replace("hebbian-", "h-").replace("random-", "r") for c in order.index], rotation=90, fontsize=6)
        ax.set_ylabel("test acc (seed range)")
        fig.tight_layout()
        fig.savefig(out / "zoo_ranking.png", dpi=120)
        plt.close(fig)
        lines += ["Plots: `zoo_acc_vs_params.png` (accuracy against parameters, fitted line), "
                  "`zoo_ranking.png` (every candidate sorted, bars = seed range).", ""]

    fpath = out / "zoo-fidelity.csv"
    if fpath.exists():
        f = pd.read_csv(fpath, keep_default_na=False)
        lines += _fidelity_section(f, main, out, prot, plt, n_boot)
    text = "\n".join(lines) + "\n"
    (out / "zoo.md").write_text(text)
    return out / "zoo.md"


WHICH_HALF = (("hebbian-split", "hebbian-default"), ("hebbian-split-partial", "hebbian-partial"),
              ("hebbian-split", "paper"), ("hebbian-split-partial", "paper"))


def _paired_comparisons(acc: Any, kinds: Any) -> list[tuple[str, np.ndarray, list[int]]]:
    """(label, seed-wise differences, seeds) of every comparison the read-out makes among the focal
    candidates: each hebbian policy and their mean against paper, and the which-half pairs."""
    if "paper" not in acc.index:
        return []
    heb = [c for c in acc.index if kinds[c] == "hebbian"]
    pairs: list[tuple[str, Any, str]] = [(f"{c} - paper", c, "paper") for c in heb]
    if len(heb) > 1:
        pairs.append((f"mean of {len(heb)} policies - paper", heb, "paper"))
    pairs += [(f"{a} - {b}", a, b) for a, b in WHICH_HALF if a in acc.index and b in acc.index and b != "paper"]
    out = [(label, *pair_diff(acc, a, b)) for label, a, b in pairs]
    return [x for x in out if len(x[2]) >= 2]


def _noise_rows(out: Path, df: Any) -> list[float] | None:
    """Test accuracies of the paper candidate on the main proxy over every cached seed (noise-floor run)."""
    meta = json.loads((out / "zoo-meta.json").read_text()) if (out / "zoo-meta.json").exists() else {}
    cache = Path(meta.get("cache", "")) if meta.get("cache") else None
    vals: dict[int, float] = {}
    sel = df[(df["candidate"] == "paper") & (df.get("phase", "main") == "main")]
    for _, r in sel.iterrows():
        vals[int(r["seed"])] = float(r["test_acc"])
    if cache is not None and len(sel):
        m = sel.iloc[0]
        tag = f"width-w{m['width']:g}-r{m['resolution']}-e{m['epochs']}-n{m['train_images']}"
        for path in (cache / tag).glob(f"{m['topology_hash']}-s*.json"):
            rec = json.loads(path.read_text())
            vals.setdefault(int(rec["seed"]), float(rec["test_acc"]))
    return [vals[k] for k in sorted(vals)] if len(vals) >= 2 else None


def _fidelity_section(f: Any, main: Any, out: Path, prot: dict[str, Any], plt: Any, n_boot: int = 4000) -> list[str]:
    """Rank agreement of (a) today's proxy and (b) a cheaper width proxy with the main run."""
    lines = ["## Proxy fidelity", ""]
    fseed = prot.get("fidelity_seed", 0)
    today = f[f["proxy"] == "today"].set_index("candidate")["test_acc"]
    cheap = f[f["proxy"] == "cheap"]
    cheap0 = cheap[cheap["seed"] == fseed].set_index("candidate")["test_acc"]
    cheapm = cheap.groupby("candidate")["test_acc"].mean()
    ref, ref_seeds = paired_accuracy(main)
    ref = ref[ref_seeds].mean(axis=1)
    common = [c for c in today.index if c in cheap0.index and c in ref.index]
    if len(common) < 4:
        return lines + [f"Only {len(common)} candidates have all three runs so far.", ""]
    t, w, h, wm = today[common].values, cheap0[common].values, ref[common].values, cheapm[common].values
    rng = np.random.default_rng(0)
    ra = spearman_boot(t, h, rng=rng, n_boot=n_boot)
    rb = spearman_boot(w, h, rng=rng, n_boot=n_boot)
    rbm = spearman_boot(wm, h, rng=rng, n_boot=n_boot)
    label = lambda d: f"x{d.get('width', '?'):g} width at {d.get('resolution', '?')} px, {d.get('epochs', '?')} epochs, {d.get('train_images', '?')} images" if d else "?"
    diffs = []
    for _ in range(n_boot):
        i = rng.integers(0, len(common), size=len(common))
        a, b = spearman(t[i], h[i]), spearman(w[i], h[i])
        if not (math.isnan(a) or math.isnan(b)):
            diffs.append(b - a)
    dlo, dhi = np.percentile(diffs, [2.5, 97.5]) if diffs else (float("nan"), float("nan"))
    winner = "the width proxy" if rb[0] > ra[0] else "today's proxy" if ra[0] > rb[0] else "neither"
    lines += [
        f"{len(common)} probe-independent candidates (paper and randoms), seed {fseed}. Reference: the main run "
        f"({label(prot.get('main', {}))}), mean of seeds {ref_seeds}. (a) today's proxy: {label(prot.get('today', {}))}. "
        f"(b) the cheap width proxy (the zoo v1 main proxy): {label(prot.get('cheap', {}))}. Each costs about what "
        "today's does. Spearman against the reference, 95% bootstrap interval over candidates:", "",
        "| proxy | Spearman vs reference [95% CI] |", "| --- | --- |",
        f"| (a) today's proxy, seed {fseed} | {ra[0]:.2f} [{ra[1]:.2f}, {ra[2]:.2f}] |",
        f"| (b) width proxy, seed {fseed} | {rb[0]:.2f} [{rb[1]:.2f}, {rb[2]:.2f}] |",
        f"| (b) width proxy, mean of its seeds | {rbm[0]:.2f} [{rbm[1]:.2f}, {rbm[2]:.2f}] |",
        f"| (b) - (a), seed {fseed} | {rb[0] - ra[0]:+.2f} [{dlo:+.2f}, {dhi:+.2f}] |", "",
        f"Which won: **{winner}** by point estimate"
        + (" (the interval of the difference excludes 0)." if dlo > 0 or dhi < 0 else " (the interval of the difference includes 0, so not decisively)."),
        f"The reference shares the width proxy's narrowing (x{prot.get('main', {}).get('width', 0):g}), which favours (b); the zoo v1 read-out "
        "(`zoo-v1/zoo.md`) measured the same question against a 1/2-width reference.",
        f"Mean test accuracy of these candidates: today's proxy {t.mean():.4f}, width proxy {w.mean():.4f}, reference {h.mean():.4f}.", "",
        "| candidate | (a) today | (b) width | reference |", "| --- | ---: | ---: | ---: |",
    ]
    for c in common:
        lines.append(f"| {c} | {today[c]:.4f} | {cheap0[c]:.4f} | {ref[c]:.4f} |")
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), sharey=True)
    for ax, xv, name, r in ((axes[0], t, "(a) today's proxy", ra), (axes[1], w, "(b) cheap width proxy", rb)):
        ax.scatter(xv, h)
        ax.set_xlabel(f"{name} test acc")
        ax.set_title(f"Spearman {r[0]:.2f} [{r[1]:.2f}, {r[2]:.2f}]", fontsize=9)
    axes[0].set_ylabel("main run test acc (reference)")
    fig.tight_layout()
    fig.savefig(out / "zoo_fidelity.png", dpi=120)
    plt.close(fig)
    lines += ["", "Plot: `zoo_fidelity.png`.", ""]
    return lines


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="seconds-long schema check (tiny everything)")
    mode.add_argument("--full", action="store_true", help="the full-size protocol (GPU, device auto)")
    ap.add_argument("--report-only", action="store_true", help="rebuild zoo.md and plots from the CSVs in --out")
    ap.add_argument("--collect", action="store_true",
                    help="write the CSVs and read-out from the cached units only, training nothing")
    ap.add_argument("--jobs", type=int, default=1, help="units trained in parallel, one process each")
    ap.add_argument("--note", default="", help="recorded with this session in zoo-meta.json and zoo.md (e.g. a stop by hand)")
    ap.add_argument("--noise", type=int, default=0, metavar="N", help="only measure the noise floor: paper, N seeds")
    ap.add_argument("--noise-extra", default="", metavar="NAMES",
                    help="with --noise: comma-separated random candidates trained on the paired seeds too")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default analysis/results)")
    ap.add_argument("--cache", type=Path, default=None, help="unit cache (default <out>/zoo-cache)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job (CPU)")
    ap.add_argument("--epochs", type=int, default=None, help="override the main proxy's epochs")
    ap.add_argument("--train-images", type=int, default=None, help="override the main proxy's training images")
    ap.add_argument("--width", type=float, default=None, help="override the main proxy's width")
    ap.add_argument("--resolution", type=int, default=None, help="override the main proxy's resolution")
    ap.add_argument("--random", type=int, default=None, help="override the number of random candidates")
    ap.add_argument("--seeds", type=int, default=None, help="override the number of seeds")
    ap.add_argument("--focal-seeds", type=int, default=None, metavar="N",
                    help="extra seeds for paper and the hebbian policies (the N seeds after --seeds); grows a cached zoo")
    ap.add_argument("--grow", default="", metavar="NAME=N,...",
                    help="seeds 0..N-1 for single focal candidates (paper, hebbian-<policy>), trained seed by seed "
                         "after everything else; grows a cached zoo")
    ap.add_argument("--fidelity", type=int, default=None, help="override the number of fidelity candidates")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the training forward (opt-in; another recipe, so its own cache folder)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = args.out
    if out is None:
        if args.smoke:
            import tempfile

            out = Path(tempfile.mkdtemp(prefix="zoo-smoke-"))
        else:
            out = DEFAULT_OUT
    if args.report_only:
        print(report(out).read_text())
        return 0
    p = smoke_protocol() if args.smoke else full_protocol() if args.full else cpu_protocol()
    main_proxy = p.main
    for key, val in (("epochs", args.epochs), ("train_images", args.train_images), ("width", args.width),
                     ("resolution", args.resolution)):
        if val is not None:
            main_proxy = dataclasses.replace(main_proxy, **{key: val})
    p = dataclasses.replace(p, main=main_proxy)
    if args.random is not None:
        p = dataclasses.replace(p, n_random=args.random)
    if args.seeds is not None:
        p = dataclasses.replace(p, seeds=tuple(range(args.seeds)))
    if args.focal_seeds is not None:
        p = dataclasses.replace(p, focal_seeds=tuple(range(len(p.seeds), len(p.seeds) + args.focal_seeds)))
    if args.fidelity is not None:
        p = dataclasses.replace(p, fidelity_candidates=args.fidelity)
    if args.compile:
        p = dataclasses.replace(p, compile=True)
    if args.grow:
        try:
            p = dataclasses.replace(p, grow=parse_grow(args.grow, p))
        except ValueError as e:
            ap.error(str(e))
    cache = args.cache or (out / "zoo-cache")
    command = "python analysis/zoo.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))

    def log(msg: str) -> None:
        print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)

    if args.jobs < 1 or args.threads < 1:
        ap.error("--jobs and --threads must be at least 1")
    if args.noise:
        noise_floor(p, cache, args.noise, [n for n in args.noise_extra.split(",") if n], log, args.jobs, args.threads)
        return 0
    run(p, out, cache, command, log, n_boot=200 if args.smoke else 4000, train_missing=not args.collect,
        jobs=args.jobs, threads=args.threads, note=args.note)
    print(f"wrote {out / 'zoo.csv'}, {out / 'zoo.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The converged protocol (issue 22): does the zoo's verdict hold when the networks are trained to convergence?

The 2-epoch zoo (analysis/zoo.py) ranks how fast a network starts to learn: there the paper's widths
reach 0.78 test accuracy. This protocol trains twelve of the zoo's candidates long enough that the
paper's widths reach at least 0.89, with everything else as in the zoo: the same candidates (the same
fitted topologies: the hebbian ones are derived from the zoo's cached probe), the same budget (3e8 MACs
at 3x224x224), the same width proxy (1/4 width at 128 px), the same paired seeds and data subsets, one
fixed recipe (the zoo's AdamW with its cosine schedule, plus random crop and horizontal flip), and the
same unit cache, training and statistics code (imported from zoo_units.py and stats.py, not copied). Only the length of
training and the augmentation change. Validation accuracy on the whole validation split is recorded
after every epoch of every unit (the learning curves), so the read-out can also say after how many
epochs the ranking stops moving (the fidelity curve).

Candidates: paper; the hebbian policies split + partial, split and default (the zoo's best, middle and
shipped default); eight random candidates spanning the zoo's range by their 13-seed means (the two
best, the four around the median, the two worst). Paper and the three policies get `focal_seeds`, the
randoms `seeds`.

    python analysis/converged.py --pilot --epochs 10 --train-images 20000    # the recipe, on paper alone
    python analysis/converged.py --jobs 2                                    # the run (hours; cached, resumable)
    python analysis/converged.py --report-only                               # converged.md from converged.csv
    python analysis/converged.py --smoke --out /tmp/c                        # seconds (tests)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analysis import stats, zoo_protocol, zoo_units  # noqa: E402  (after the path: the script runs from anywhere)

RESULTS = ROOT / "analysis" / "results"
RANDOMS = ("random-22", "random-15", "random-07", "random-10", "random-21", "random-18", "random-19", "random-13")
"""The zoo's two best, four around the median and two worst random candidates by 13-seed mean test
accuracy (analysis/results/zoo.csv, seeds 0-12), in that order; fixed in converged-planning.md."""
POLICIES = ("split-partial", "split", "default")
FOCAL = ("paper",) + tuple(f"hebbian-{p}" for p in POLICIES)
EPOCHS = 10
TRAIN_IMAGES = 20000


def protocol(epochs: int = EPOCHS, train_images: int = TRAIN_IMAGES, focal_seeds: int = 5, random_seeds: int = 2,
             compile_: bool = False, width: float | None = None, resolution: int | None = None,
             device: str = "cpu") -> zoo_protocol.Protocol:
    """The zoo's protocol with the converged recipe: longer training, crop + flip, the learning curve.

    Seed 0 for every candidate; paper and the policies then get seeds 1 .. focal_seeds - 1, and the
    randoms seeds 1 .. random_seeds - 1 after them (`grow`, in the zoo's sense: the late seeds).
    channels_last is fixed (True: measured faster for this network on the 2-core machine), not measured
    per unit, so every unit of the comparison trains the same way."""
    base = zoo_protocol.cpu_protocol()
    return dataclasses.replace(
        base, main=zoo_protocol.Proxy("converged", width or base.main.width, resolution or base.main.resolution, epochs,
                             train_images), device=device,
        seeds=(0,), focal_seeds=tuple(range(1, focal_seeds)), grow=(("random", random_seeds),), augment=True,
        channels_last=True, fused=True, compile=compile_, curve=True,
        policies=tuple(x for x in base.policies if x[0] in POLICIES))


def smoke_protocol() -> zoo_protocol.Protocol:
    p = zoo_protocol.smoke_protocol()
    return dataclasses.replace(p, main=dataclasses.replace(p.main, name="converged", epochs=3), seeds=(0,),
                               focal_seeds=(1, 2), grow=(("random", 2),), augment=True, channels_last=True,
                               fused=True, curve=True)


# ---------------------------------------------------------------------------------------------
# candidates and units


def candidates(p: zoo_protocol.Protocol, zoo_p: zoo_protocol.Protocol, zoo_cache: Path, randoms: Sequence[str]) -> list[zoo_protocol.Candidate]:
    """paper, the hebbian policies (derived from the zoo's own probe: the same topologies), the randoms."""
    static = {c.name: c for c in zoo_protocol.static_candidates(zoo_p)}
    probed, probe, _ = zoo_units.probe_seed(zoo_p, zoo_cache)
    hebbian = {c.name: c for c in zoo_protocol.hebbian_candidates(p, probed, probe)}
    missing = [n for n in randoms if n not in static]
    if missing:
        raise SystemExit(f"converged: unknown random candidate(s): {', '.join(missing)}")
    return [static["paper"], *(hebbian[f"hebbian-{n}"] for n, _ in p.policies), *(static[n] for n in randoms)]


def plan_units(p: zoo_protocol.Protocol, cands: list[zoo_protocol.Candidate]) -> list[zoo_units.Unit]:
    """Seed by seed: every candidate on `seeds`, then paper and the policies on each focal seed in turn,
    then the randoms on their further seeds (`grow`: ("random", n) gives them seeds below n)."""
    units = [zoo_units.Unit("main", p.main.name, p.main, c, s) for s in p.seeds for c in cands]
    units += [zoo_units.Unit("main", p.main.name, p.main, c, s) for s in p.focal_seeds for c in cands if c.kind != "random"]
    n_random = dict(p.grow).get("random", 0)
    return units + [zoo_units.Unit("main", p.main.name, p.main, c, s) for s in range(n_random) for c in cands
                    if c.kind == "random" and s not in p.seeds]


def run(p: zoo_protocol.Protocol, cands: list[zoo_protocol.Candidate], out: Path, cache: Path, command: str, jobs: int, threads: int,
        csv_name: str = "converged.csv", log: Any = print) -> list[dict[str, Any]]:
    """Train (or read) every planned unit, `jobs` at a time; rewrite the CSV as units finish."""
    from concurrent.futures import FIRST_COMPLETED, wait

    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    units = plan_units(p, cands)
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    t0 = time.time()

    def flush() -> None:
        ordered = [rows[(u.cand.name, u.seed)] for u in units if (u.cand.name, u.seed) in rows]
        df = pd.DataFrame(ordered)
        for col in ("val_curve", "train_curve", "epoch_s"):
            if col in df.columns:
                df[col] = df[col].map(json.dumps)
        tmp = out / f".{csv_name}.tmp"
        df.to_csv(tmp, index=False)
        tmp.replace(out / csv_name)

    log(f"converged: {len(units)} units ({p.main.label()}), {jobs} job(s) x {threads} thread(s), cache {cache}")
    with zoo_units.executor(jobs) as ex:
        pending = {ex.submit(zoo_units.cached_unit, p, cache, u.proxy, u.cand.topology, u.seed, threads): u for u in units}
        while pending:
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for f in finished:
                u = pending.pop(f)
                rec = f.result()
                rows[(u.cand.name, u.seed)] = zoo_units.unit_row(u.cand, rec, "main", p.main.label())
                if rec.get("trained_now"):
                    log(f"  {u.cand.name:24s} seed {u.seed}: val {rec['val_acc']:.4f} test {rec['test_acc']:.4f} "
                        f"train {rec['final_train_acc']:.4f} ({rec['unit_s']:.0f} s) [{len(rows)} done, "
                        f"{len(pending)} left]")
            flush()
    log(f"converged: {len(rows)} units in {(time.time() - t0) / 60:.1f} min")
    return [rows[(u.cand.name, u.seed)] for u in units]


def write_meta(out: Path, p: zoo_protocol.Protocol, command: str, started: str, wall: float, jobs: int, threads: int,
               units: int, name: str = "converged-meta.json") -> None:
    """The protocol, the code commit and one entry per session (a resumed run keeps the earlier ones)."""
    import torch

    path = out / name
    old = json.loads(path.read_text()) if path.exists() else {}
    sessions = old.get("sessions", []) if old.get("protocol") == json.loads(json.dumps(p.to_dict())) else []
    sessions.append({"command": command, "started": started, "wall_s": round(wall, 1), "jobs": jobs,
                     "threads": threads, "units": units, "commit": _commit()})
    meta = {"protocol": p.to_dict(), "torch": torch.__version__, "sessions": sessions}
    path.write_text(json.dumps(meta, indent=1))


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ---------------------------------------------------------------------------------------------
# statistics (pure; unit-tested)


def fidelity_curve(curves: Any, final: Any) -> list[float]:
    """Spearman between the candidates' ranking by mean validation accuracy after each epoch and their
    final ranking (mean test accuracy). `curves` is (candidates, epochs), `final` (candidates,)."""
    c = np.asarray(curves, dtype=float)
    return [stats.spearman(c[:, e], final) for e in range(c.shape[1])]


def first_epoch_above(values: Sequence[float], level: float = 0.8) -> int | None:
    """The first epoch (1-based) whose value exceeds `level` and stays above it for every later epoch."""
    ok = [v > level for v in values]
    for e in range(len(ok)):
        if all(ok[e:]):
            return e + 1
    return None


def levelled_off(train_curve: Sequence[float], epochs: int = 2, gain: float = 0.01) -> bool:
    """The pilot's rule (converged-planning.md): training accuracy gained less than `gain` (1 point) over
    the last `epochs` epochs (the last value minus the value `epochs` earlier)."""
    c = [float(x) for x in train_curve]
    if len(c) <= epochs:
        return False
    return c[-1] - c[-1 - epochs] < gain


def shared_seed_percentiles(acc: Any, cands: Sequence[str], randoms: Sequence[str]) -> tuple[dict[str, float], list]:
    """Each candidate's percentile among the randoms, all means taken over the seeds every one of them
    (cands and randoms) has, so a 5-seed mean is never ranked against 2-seed means. Returns the
    percentiles and those seeds."""
    rows = list(dict.fromkeys([*cands, *randoms]))
    sub = acc.loc[rows]
    seeds = [s for s in sub.columns if sub[s].notna().all()]
    if not seeds or not len(randoms):
        return {c: math.nan for c in cands}, seeds
    means = sub[seeds].mean(axis=1)
    pop = means.loc[list(randoms)].values
    return {c: stats.percentile_within(float(means.loc[c]), pop) for c in cands}, seeds


def _seed_range(seeds: Sequence[int]) -> str:
    s = sorted(int(x) for x in seeds)
    return f"{s[0]}-{s[-1]}" if len(s) > 1 and s == list(range(s[0], s[-1] + 1)) else ", ".join(map(str, s))


def verdict(zoo_d: float, lo: float, hi: float) -> str:
    """What became of a zoo difference `zoo_d` (significant there) at convergence: converged difference
    interval [lo, hi]. holds: same sign, interval excludes 0 and contains or exceeds the zoo's size;
    shrinks: same sign, excludes 0, smaller than the zoo's; vanishes: interval contains 0; flips:
    excludes 0 on the other side."""
    if lo <= 0 <= hi:
        return "vanishes (interval contains 0)"
    if (lo > 0) != (zoo_d > 0):
        return "flips"
    return "holds" if abs(hi if zoo_d > 0 else lo) >= abs(zoo_d) else "shrinks"


# ---------------------------------------------------------------------------------------------
# read-out


def report(out: Path, zoo_dir: Path = RESULTS, n_boot: int = 4000, name: str = "converged") -> Path:
    """converged.md and its plots from converged.csv (and the zoo's zoo.csv for the comparison)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.read_csv(out / f"{name}.csv", keep_default_na=False)
    meta = json.loads((out / f"{name}-meta.json").read_text()) if (out / f"{name}-meta.json").exists() else {}
    prot = meta.get("protocol", {})
    acc, _ = stats.paired_accuracy(df)
    kinds = df.groupby("candidate")["kind"].first()
    order = [c for c in dict.fromkeys(df["candidate"])]
    acc = acc.loc[order]
    randoms = [c for c in order if kinds[c] == "random"]
    focal = [c for c in order if kinds[c] != "random"]
    length = (f"{prot['main']['epochs']} epochs on {prot['main']['train_images']:,} images" if prot
              else "the longer recipe")
    lines = [f"# {'The converged protocol' if name == 'converged' else name}: the zoo's candidates trained {length}",
             "", f"\"Converged\" names the protocol (and its files); it means {length} with augmentation, "
             "not training run until accuracy stops rising (see \"Levelled off?\" below).", ""]
    for s in meta.get("sessions", []):
        lines.append(f"- session {s['started']}: `{s['command']}`, {s['wall_s'] / 60:.1f} min, {s['units']} units, "
                     f"{s['jobs']} job(s) x {s['threads']} thread(s), code at {s['commit']}")
    if prot:
        m = prot["main"]
        lines += [f"- torch {meta.get('torch', '?')}; dataset {prot['dataset']}; budget {prot['budget']:.3g} MACs at "
                  f"{'x'.join(map(str, prot['deploy_input']))}; width proxy x{m['width']:g} at {m['resolution']} px; "
                  f"{m['epochs']} epochs on {m['train_images']} training images; {prot['val_images']} validation and "
                  f"{'all 10,000' if prot['test_images'] is None else prot['test_images']} test images",
                  f"- one recipe: AdamW lr {prot['lr']:g}, weight decay {prot['weight_decay']:g}, batch "
                  f"{prot['batch_size']}, warmup {prot['warmup_epochs']:g} epoch then cosine to 0, aux heads 0.3, "
                  f"augmentation {'random crop (pad 1/8) + horizontal flip' if prot.get('augment') else 'none'}, "
                  f"channels_last {prot.get('channels_last')}, fused AdamW {prot.get('fused')}, compile "
                  f"{prot.get('compile')}; paired seeds (seed s: same subset, validation carve, order, init)"]
    plan = out / f"{name}-planning.md"
    if plan.exists():
        lines += ["", plan.read_text().strip()]
    lines += ["", f"## Accuracy after {length}", "",
              "| candidate | kind | seeds | test acc (mean) | sd | final train acc | levelled off (units) | zoo test acc "
              "(13 seeds) |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    zoo_means = _zoo_means(zoo_dir)
    train_final = df.groupby("candidate")["final_train_acc"].mean()
    flat = df.assign(flat=df["train_curve"].map(lambda c: levelled_off(json.loads(c))))
    n_flat = flat.groupby("candidate")["flat"].sum()
    for c in order:
        a = acc.loc[c].dropna()
        lines.append(f"| {c} | {kinds[c]} | {a.size} | {a.mean():.4f} | "
                     f"{a.std(ddof=1) if a.size > 1 else float('nan'):.4f} | {train_final[c]:.4f} | "
                     f"{int(n_flat[c])} of {a.size} | {zoo_means.get(c, float('nan')):.4f} |")
    flat_units = flat[flat["flat"]]
    lines += ["", f"Levelled off? By the pilot's rule (training accuracy gains less than 1 point over the last two "
              f"epochs), **{len(flat_units)} of {len(flat)}** units had levelled off: "
              + (", ".join(f"{c} seed {int(s)}" for c, s in zip(flat_units["candidate"], flat_units["seed"])) or "none")
              + f"; the other {len(flat) - len(flat_units)} were still gaining 1 point or more per two epochs when "
              "the schedule ended (the cosine schedule reaches 0 at the last epoch, so the recipe, not a plateau, "
              "stopped them)."]
    paper = acc.loc["paper"].dropna() if "paper" in acc.index else None
    if paper is not None:
        lines += ["", f"Paper's widths: mean test accuracy **{paper.mean():.4f}** over {paper.size} seed(s) "
                  f"(the protocol asks for at least 0.89)."]

    # each policy vs paper, paired t; vs the random median, additive fit with bootstrap
    rng = np.random.default_rng(0)
    zoo_vs_paper = _zoo_paper_diffs(zoo_dir)
    heb = [c for c in focal if kinds[c] == "hebbian"]
    here_seeds = sorted(int(x) for x in acc.columns[acc.loc["paper"].notna()]) if "paper" in acc.index else []
    zoo_same = _zoo_paper_diffs(zoo_dir, here_seeds)
    pcts, pct_seeds = shared_seed_percentiles(acc, heb + (["paper"] if "paper" in acc.index else []), randoms)
    pct_label = f"seeds {_seed_range(pct_seeds)}" if pct_seeds else "no shared seeds"
    lines += ["", "## Each hebbian policy against paper and the random candidates", "",
              f"| policy | vs paper, paired t [95%] (seeds) | zoo vs paper (all its paired seeds) | zoo vs paper, "
              f"seeds {_seed_range(here_seeds) if here_seeds else '-'} | what became of it | percentile among the "
              f"randoms ({pct_label}) | vs random median [95%] |", "| --- | --- | --- | --- | --- | ---: | --- |"]
    arms = [[order.index(c)] for c in heb + (["paper"] if "paper" in order else [])]
    rows_r = [order.index(c) for c in randoms]
    to_median = stats.diff_to_median_additive(acc.values, arms, rows_r, n_boot=n_boot, rng=rng) if len(randoms) >= 2 \
        else [(math.nan,) * 3] * len(arms)
    ratios_same, ratios_all = [], []
    for i, c in enumerate(heb + ["paper"]):
        if c not in acc.index:
            continue
        pct = pcts.get(c, math.nan)
        med = to_median[i]
        vs_median = stats.ci_text(*med) if not math.isnan(med[0]) else "-"
        if c == "paper":
            lines.append(f"| paper | - | - | - | - | {pct:.0f} | {vs_median} |")
            continue
        d, seeds = stats.pair_diff(acc, c, "paper")
        if d.size >= 2:
            t = stats.t_interval(d)
            zd, zs = zoo_vs_paper.get(c), zoo_same.get(c)
            if zd is not None and t[0] != 0:
                ratios_all.append(zd / t[0])
            if zs is not None and t[0] != 0:
                ratios_same.append(zs / t[0])
            lines.append(f"| {c} | {stats.ci_text(*t)} ({d.size}) | {'-' if zd is None else f'{100 * zd:+.2f} pt'} | "
                         f"{'-' if zs is None else f'{100 * zs:+.2f} pt'} | "
                         f"{'-' if zd is None else verdict(zd, t[1], t[2])} | {pct:.0f} | {vs_median} |")
        else:
            lines.append(f"| {c} | needs 2 paired seeds (has {d.size}) | - | - | - | {pct:.0f} | {vs_median} |")
    if ratios_same:
        lines += ["", f"The zoo's differences to paper are **{min(ratios_same):.2f} to {max(ratios_same):.2f} times** "
                  f"those here on the same seeds {_seed_range(here_seeds)} ({min(ratios_all):.2f} to "
                  f"{max(ratios_all):.2f} times with the zoo's differences over all its paired seeds, 42 to 57 in the "
                  "committed zoo)."]
    lines += ["", f"Percentiles rank means over {pct_label}, the seeds every candidate here has (paper and the "
              "policies have more; their 5-seed means are not ranked against the randoms' 2-seed means). "
              "Vs paper: mean of the seed-wise differences with the t interval from their own scatter. Vs the "
              "random median: candidate effects from an additive candidate + seed fit over every unit, minus the "
              "median random effect; bootstrap over random candidates and, within each group of seeds with the "
              "same candidates, over seeds (zoo.py's `diff_to_median_additive`). The randoms have "
              "few seeds each (2 here), so their own noise is inside the spread of the population, not removed from "
              "it."]

    # zoo -> converged
    lines += ["", f"## Does the zoo rank like the {prot['main']['epochs'] if prot else 'longer'}-epoch protocol?", ""]
    means = acc.mean(axis=1)
    common = [c for c in order if c in zoo_means]
    if len(common) >= 4:
        r_all = stats.spearman_boot([zoo_means[c] for c in common], [means[c] for c in common], n_boot=n_boot, rng=rng)
        rr = [c for c in common if kinds[c] == "random"]
        r_rand = stats.spearman_boot([zoo_means[c] for c in rr], [means[c] for c in rr], n_boot=n_boot, rng=rng) \
            if len(rr) >= 4 else (math.nan,) * 3
        lines += [f"Spearman between the zoo's 13-seed mean test accuracy and the mean here: all {len(common)} "
                  f"candidates **{r_all[0]:+.2f}** [{r_all[1]:+.2f}, {r_all[2]:+.2f}]; the {len(rr)} randoms alone "
                  f"**{r_rand[0]:+.2f}** [{r_rand[1]:+.2f}, {r_rand[2]:+.2f}] (bootstrap over candidates, 95%)."]

    # fidelity curve
    curves = df.assign(vc=df["val_curve"].map(json.loads)).groupby("candidate")["vc"].apply(
        lambda s: np.mean(np.vstack(s.tolist()), axis=0)).loc[order]
    cmat = np.vstack(curves.values)
    fid = fidelity_curve(cmat, means.loc[order].values)
    e80 = first_epoch_above(fid, 0.8)
    lines += ["", "## The fidelity curve: how early does the ranking settle?", "",
              "Spearman between the candidates' ranking by mean validation accuracy after epoch e (of the same "
              "cosine run, so early epochs also ran at a higher learning rate than a run of e epochs would end "
              "with) and the final ranking by mean test accuracy:", "",
              "| epoch | " + " | ".join(str(e + 1) for e in range(len(fid))) + " |",
              "| --- | " + " | ".join("---:" for _ in fid) + " |",
              "| Spearman | " + " | ".join(f"{v:+.2f}" for v in fid) + " |", "",
              f"First epoch from which it stays above 0.8: **{e80 if e80 is not None else 'none'}** of {len(fid)}."]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for c, row in zip(order, cmat):
        ax[0].plot(range(1, row.size + 1), row, color={"paper": "k", "hebbian": "tab:red"}.get(kinds[c], "tab:gray"),
                   lw=1.8 if kinds[c] != "random" else 0.8, label=c if kinds[c] != "random" else None)
    ax[0].set(xlabel="epoch", ylabel="validation accuracy (mean over seeds)", title="learning curves")
    ax[0].legend(fontsize=7)
    ax[1].plot(range(1, len(fid) + 1), fid, marker="o")
    ax[1].axhline(0.8, ls="--", color="gray")
    ax[1].set(xlabel="epoch", ylabel="Spearman with the final ranking", title="fidelity curve", ylim=(-1, 1))
    fig.tight_layout()
    fig.savefig(out / f"{name}_fidelity.png", dpi=110)
    plt.close(fig)
    lines += ["", f"![learning curves and fidelity curve]({name}_fidelity.png)"]

    # the stem confound
    lines += ["", "## The stem confound", ""]
    pm = df.groupby("candidate")["proxy_macs"].first()
    if len(randoms) >= 4:
        r = stats.spearman_boot(pm.loc[randoms].values, means.loc[randoms].values, n_boot=n_boot, rng=rng)
        paper_pm = float(pm.loc["paper"]) if "paper" in pm.index else float(pm.loc[focal].min())
        narrow_here = [c for c in randoms if has_papers_stem(pm.loc[c], paper_pm)]
        wide_here = [c for c in randoms if c not in narrow_here]
        lines.append(f"Fitting gave most random candidates wider stems, so their trained 1/4-width copies carry more "
                     f"MACs ({pm.loc[randoms].min() / 1e6:.2f}e6 to {pm.loc[randoms].max() / 1e6:.2f}e6) than paper and "
                     f"the hebbian policies ({pm.loc[focal].min() / 1e6:.2f}e6 to {pm.loc[focal].max() / 1e6:.2f}e6). "
                     f"Among the randoms here, Spearman(proxy MACs, accuracy) = {r[0]:+.2f} "
                     f"[{r[1]:+.2f}, {r[2]:+.2f}]; it cannot test the confound: of these {len(randoms)} randoms "
                     f"{len(narrow_here)} ({', '.join(narrow_here) or 'none'}) {'has' if len(narrow_here) == 1 else 'have'} "
                     f"paper's stem and the other {len(wide_here)} are tied on proxy MACs (within "
                     f"{100 * (pm.loc[wide_here].max() / pm.loc[wide_here].min() - 1) if wide_here else 0:.2f}% of each "
                     "other), so the rank correlation rests on differences of at most "
                     f"{int(pm.loc[wide_here].max() - pm.loc[wide_here].min()) if wide_here else 0:,} MACs."
                     + _zoo_stem_line(zoo_dir))
    text = "\n".join(lines) + "\n"
    path = out / f"{name}.md"
    path.write_text(text)
    return path


def _zoo_main(zoo_dir: Path) -> Any:
    import pandas as pd

    f = zoo_dir / "zoo.csv"
    if not f.exists():
        return None
    z = pd.read_csv(f, keep_default_na=False)
    return z[z["phase"] == "main"] if "phase" in z.columns else z


def _zoo_means(zoo_dir: Path) -> dict[str, float]:
    """Each zoo candidate's mean test accuracy over the seeds every candidate has (13 in the committed zoo)."""
    z = _zoo_main(zoo_dir)
    if z is None:
        return {}
    acc, seeds = stats.paired_accuracy(z)
    return acc[seeds].mean(axis=1).to_dict()


def _zoo_paper_diffs(zoo_dir: Path, seeds: Sequence[int] | None = None) -> dict[str, float]:
    """Each zoo policy's mean paired difference to paper, over the seeds both have (only `seeds` among
    them when given: the comparison on the seeds of another run)."""
    z = _zoo_main(zoo_dir)
    if z is None:
        return {}
    acc = z.pivot_table(index="candidate", columns="seed", values="test_acc")
    if seeds is not None:
        acc = acc[[s for s in acc.columns if s in set(seeds)]]
    out = {}
    for c in acc.index:
        if c.startswith("hebbian-") and "paper" in acc.index:
            d = stats.pair_diff(acc, c, "paper")[0]
            if d.size:
                out[c] = float(d.mean())
    return out


STEM_TOLERANCE = 0.01
"""A candidate "has paper's stem" when its trained copy's MACs are within 1% of paper's: the fitted
candidates' proxy MACs fall in two groups 10% apart (paper's stem, 8.83e6; the wider stem, 9.73e6),
and within a group they differ by less than 0.02%."""


def has_papers_stem(proxy_macs: float, paper_proxy_macs: float, tol: float = STEM_TOLERANCE) -> bool:
    return abs(float(proxy_macs) / float(paper_proxy_macs) - 1) <= tol


def stem_line(z: Any) -> str:
    """The zoo's randoms split by stem (proxy MACs within 1% of paper's or not), their mean test accuracy
    over the seeds every candidate has, and Spearman(proxy MACs, accuracy) among them. `z` is the zoo's
    main phase (zoo.csv rows)."""
    acc, seeds = stats.paired_accuracy(z)
    mean = acc[seeds].mean(axis=1)
    pm = z.groupby("candidate")["proxy_macs"].first()
    rnd = pm.loc[sorted(set(z.loc[z["kind"] == "random", "candidate"]))]
    if "paper" not in pm.index or rnd.empty:
        return ""
    r = stats.spearman(rnd.values, mean.loc[rnd.index].values)
    same = [c for c in rnd.index if has_papers_stem(rnd[c], pm["paper"])]
    wide = [c for c in rnd.index if c not in same]
    mean_of = lambda cs: f"{mean.loc[cs].mean():.4f}" if cs else "-"  # noqa: E731
    return (f" In the zoo's {rnd.size} randoms ({len(seeds)} seeds each), Spearman(proxy MACs, accuracy) = {r:+.2f}; "
            f"the {len(same)} with paper's stem ({', '.join(same) or 'none'}: proxy MACs within 1% of paper's) "
            f"average {mean_of(same)}, the {len(wide)} with wider stems {mean_of(wide)}.")


def _zoo_stem_line(zoo_dir: Path) -> str:
    z = _zoo_main(zoo_dir)
    return "" if z is None else stem_line(z)


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="seconds-long schema check (digits, tiny everything)")
    ap.add_argument("--pilot", action="store_true", help="train the paper candidate alone (choosing the recipe)")
    ap.add_argument("--report-only", action="store_true", help="rebuild converged.md from converged.csv in --out")
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--train-images", type=int, default=TRAIN_IMAGES)
    ap.add_argument("--focal-seeds", type=int, default=5, metavar="N", help="seeds 0..N-1 for paper and the policies")
    ap.add_argument("--random-seeds", type=int, default=2, metavar="N",
                    help="seeds 0..N-1 for the randoms (those after seed 0 train after every focal seed)")
    ap.add_argument("--seeds", default="0", metavar="S,...", help="with --pilot: the paper's seeds")
    ap.add_argument("--compile", action="store_true", help="torch.compile the training forward (opt-in)")
    ap.add_argument("--width", type=float, default=None, help="the trained copies' width (default the zoo's 1/4; 1 "
                    "is the full network, for a GPU)")
    ap.add_argument("--resolution", type=int, default=None, help="training resolution (default the zoo's 128)")
    ap.add_argument("--device", default="cpu", help="cpu (default), auto (CUDA when present) or cuda")
    ap.add_argument("--jobs", type=int, default=1, help="units trained in parallel, one process each")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default analysis/results)")
    ap.add_argument("--cache", type=Path, default=None, help="unit cache (default <out>/converged-cache)")
    ap.add_argument("--zoo", type=Path, default=None,
                    help="the zoo's results folder: its probe (zoo-cache/) and zoo.csv (default analysis/results; "
                    "with --smoke, --out)")
    args = ap.parse_args(argv)
    if args.jobs < 1 or args.threads < 1 or args.epochs < 1 or args.train_images < 1 or args.focal_seeds < 1:
        ap.error("--jobs, --threads, --epochs, --train-images and --focal-seeds must be at least 1")
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or RESULTS
    zoo_dir = args.zoo or (out if args.smoke else RESULTS)
    name = "converged-pilot" if args.pilot else "converged"
    if args.report_only:
        print(report(out, zoo_dir, name=name).read_text())
        return 0
    command = "python analysis/converged.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))

    def log(msg: str) -> None:
        print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)

    if args.smoke:
        zoo_p, p, randoms = zoo_protocol.smoke_protocol(), smoke_protocol(), ("random-00", "random-01", "random-02")
    else:
        zoo_p = zoo_protocol.cpu_protocol()
        p = protocol(args.epochs, args.train_images, args.focal_seeds, args.random_seeds, args.compile, args.width,
                     args.resolution, args.device)
        randoms = RANDOMS
    zoo_cache = zoo_dir / "zoo-cache"
    cache = args.cache or (out / "converged-cache")
    cands = candidates(p, zoo_p, zoo_cache, randoms)
    if args.pilot:
        seeds = tuple(int(s) for s in args.seeds.split(","))
        p = dataclasses.replace(p, seeds=seeds, focal_seeds=(), grow=())
        cands = cands[:1]
    started, t0 = dt.datetime.now().strftime("%Y-%m-%d %H:%M"), time.time()
    rows = run(p, cands, out, cache, command, args.jobs, args.threads, csv_name=f"{name}.csv", log=log)
    write_meta(out, p, command, started, time.time() - t0, args.jobs, args.threads, len(rows), name=f"{name}-meta.json")
    if args.pilot:
        for r in rows:
            log(f"pilot {r['candidate']} seed {r['seed']}: test {r['test_acc']:.4f}, train curve "
                f"{r['train_curve']}, val curve {r['val_curve']}")
        return 0
    print(report(out, zoo_dir, n_boot=200 if args.smoke else 4000).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How short may the final stage be (issue 30, item 6)? Cheaper schedules against the 10-epoch ranking.

The final stage of a search retrains its finalists and the paper's widths; on fashion-mnist the converged
protocol (10 epochs on 20,000 images, crop + flip, cosine) is what it would use. Users pay for every
epoch of it, so this study trains the converged run's twelve candidates (seed 0) with a *full* cosine
schedule of fewer image-epochs and asks how well that ranks them against the 10-epoch protocol:

- ``e5-n20000``: 5 epochs on 20,000 images (half the cost);
- ``e10-n10000``: 10 epochs on 10,000 images (half the cost).

Everything else is the converged protocol's (recipe, width proxy, candidates, seed 0's data subset,
validation carve, order and init), through the same unit cache and code (`analysis/converged.py`,
`analysis/zoo.py`). The plan and its rule are in final-fidelity-planning.md, fixed before any unit.

    python analysis/final_fidelity.py --jobs 2            # the run (about 70 min on 2 cores; cached, resumable)
    python analysis/final_fidelity.py --report-only       # final-fidelity.md from final-fidelity.csv
    python analysis/final_fidelity.py --smoke --out /tmp/f  # seconds (tests)
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

from analysis import converged, zoo_protocol  # noqa: E402
from analysis.runlog import Session, command_line, log  # noqa: E402
from analysis.stats import spearman, spearman_boot  # noqa: E402

RESULTS = ROOT / "analysis" / "results"
SCHEDULES: tuple[tuple[int, int], ...] = ((5, 20000), (10, 10000))
"""(epochs, training images) of each cheaper schedule, in the order they train."""
REFERENCE = (10, 20000)
"""The converged protocol: what the cheaper schedules are ranked against."""
RULE = 0.9
"""A schedule whose seed-0 ranking has Spearman >= RULE with the 10-epoch seed-0 ranking (test accuracy)
may become the fashion-mnist space's final fidelity (the cheapest such; fixed in the plan)."""


def schedule_name(epochs: int, images: int) -> str:
    return f"e{epochs}-n{images}"


def run(out: Path, cache: Path, zoo_dir: Path, jobs: int, threads: int, smoke: bool, log: Any,
        only: Sequence[str] = ()) -> Path:
    """Train (or read) seed 0 of every candidate for each schedule (`only`: these names; the reference always);
    one CSV row per unit."""
    import pandas as pd

    if smoke:
        zoo_p, randoms = zoo_protocol.smoke_protocol(), ("random-00", "random-01", "random-02")
        base = converged.smoke_protocol()
        schedules = ((2, 48), (1, 64))
        reference = (3, 64)
    else:
        zoo_p, randoms, base, schedules, reference = zoo_protocol.cpu_protocol(), converged.RANDOMS, None, SCHEDULES, REFERENCE
    rows: list[dict[str, Any]] = []
    for epochs, images in (*[x for x in schedules if not only or schedule_name(*x) in only], reference):
        if base is None:
            p = converged.protocol(epochs, images, focal_seeds=1, random_seeds=1)
        else:
            p = dataclasses.replace(base, main=dataclasses.replace(base.main, epochs=epochs, train_images=images),
                                    focal_seeds=(), grow=())
        p = dataclasses.replace(p, seeds=(0,), focal_seeds=(), grow=())
        cands = converged.candidates(p, zoo_p, zoo_dir / "zoo-cache", randoms)
        name = schedule_name(epochs, images)
        ref = (epochs, images) == reference
        log(f"schedule {name}{' (the reference: cached units are read)' if ref else ''}")
        got = converged.run(p, cands, out, cache, "", jobs, threads, csv_name=f".final-fidelity-{name}.csv", log=log)
        (out / f".final-fidelity-{name}.csv").unlink(missing_ok=True)
        rows += [{"schedule": name, "epochs": epochs, "train_images_planned": images, "reference": ref, **r}
                 for r in got]
    df = pd.DataFrame(rows)
    for col in ("val_curve", "train_curve", "epoch_s"):
        if col in df.columns:
            df[col] = df[col].map(lambda v: v if isinstance(v, str) else json.dumps(v))
    path = out / "final-fidelity.csv"
    df.to_csv(path, index=False)
    return path


def rank_table(df: Any, reference: str, n_boot: int = 4000) -> list[dict[str, Any]]:
    """Per cheaper schedule: Spearman with the reference on test and on validation accuracy (bootstrap over
    candidates), and its cost relative to the reference: training image-epochs (`cost`) and the measured unit
    seconds (`seconds`, which also carry the load and machine each unit ran on). Pure; unit-tested."""
    rng = np.random.default_rng(0)
    ref = df[df["schedule"] == reference].set_index("candidate")
    out = []
    for name, g in df[df["schedule"] != reference].groupby("schedule", sort=False):
        g = g.set_index("candidate")
        g = g.loc[[c for c in ref.index if c in g.index]]
        r_test = spearman_boot(g["test_acc"].values, ref.loc[g.index, "test_acc"].values, n_boot=n_boot, rng=rng)
        r_val = spearman_boot(g["val_acc"].values, ref.loc[g.index, "val_acc"].values, n_boot=n_boot, rng=rng)
        work = g["epochs"].astype(float) * g["train_images"].astype(float)
        cost = float(work.sum() / (ref.loc[g.index, "epochs"].astype(float) * ref.loc[g.index, "train_images"]
                                   .astype(float)).sum())  # image-epochs: what a schedule costs on any machine
        seconds = float(g["train_s"].sum() / ref.loc[g.index, "train_s"].sum())
        out.append({"schedule": name, "candidates": len(g), "spearman_test": r_test, "spearman_val": r_val,
                    "val_to_ref_test": spearman(g["val_acc"].values, ref.loc[g.index, "test_acc"].values),
                    "cost": cost, "seconds": seconds, "mean_test": float(g["test_acc"].mean()),
                    "paper_rank": int((g["test_acc"] > g.loc["paper", "test_acc"]).sum() + 1) if "paper" in g.index
                    else None})
    return out


def chosen(table: list[dict[str, Any]], rule: float = RULE) -> str | None:
    """The cheapest schedule whose test-accuracy Spearman with the reference is >= `rule` (None: keep the
    reference). Pure; unit-tested."""
    ok = [t for t in table if not math.isnan(t["spearman_test"][0]) and t["spearman_test"][0] >= rule]
    return min(ok, key=lambda t: t["cost"])["schedule"] if ok else None


def report(out: Path, n_boot: int = 4000) -> Path:
    import pandas as pd

    df = pd.read_csv(out / "final-fidelity.csv", keep_default_na=False)
    reference = str(df.loc[df["reference"].astype(str) == "True", "schedule"].iloc[0])
    table = rank_table(df, reference, n_boot)
    pick = chosen(table)
    meta = json.loads((out / "final-fidelity-meta.json").read_text()) if (out / "final-fidelity-meta.json").exists() \
        else {}
    lines = ["# How short may the final stage be? Cheaper schedules ranked against the 10-epoch protocol", ""]
    for s in meta.get("sessions", []):
        lines.append(f"- session {s['started']}: `{s['command']}`, {s['wall_s'] / 60:.1f} min, code at {s['commit']}")
    commits = sorted({str(c) for c in df.get("commit", pd.Series(dtype=str)) if str(c)})
    lines += [f"- units' code commits (cheaper schedules): {', '.join(commits) or '-'}; the reference units are the "
              f"converged run's cached seed-0 units (code f20fdbb, an earlier machine)", ""]
    plan = out / "final-fidelity-planning.md"
    if plan.exists():
        lines += [plan.read_text().strip(), ""]
    lines += ["## Result", "",
              f"Reference: {reference} (seed 0). Spearman over the {table[0]['candidates'] if table else 0} candidates, "
              "95% bootstrap interval over candidates; cost = training image-epochs relative to the reference's; "
              "seconds = measured unit training time relative to the reference units' (these ran on another machine "
              "and with less load, so the ratio says little about the schedule).", "",
              "| schedule | Spearman test vs reference test | Spearman val vs reference val | val vs reference test | "
              "cost | seconds | mean test acc | paper's rank |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for t in table:
        st, sv = t["spearman_test"], t["spearman_val"]
        lines.append(f"| {t['schedule']} | {st[0]:+.2f} [{st[1]:+.2f}, {st[2]:+.2f}] | {sv[0]:+.2f} [{sv[1]:+.2f}, "
                     f"{sv[2]:+.2f}] | {t['val_to_ref_test']:+.2f} | {t['cost']:.2f}x | {t['seconds']:.2f}x | "
                     f"{t['mean_test']:.4f} | "
                     f"{t['paper_rank']} |")
    wide = df.pivot_table(index="candidate", columns="schedule", values="test_acc")
    lines += ["", "Test accuracy per candidate (seed 0):", "", wide.round(4).to_markdown() if _has_tabulate()
              else "```\n" + wide.round(4).to_string() + "\n```", ""]
    lines.append(f"**Decision by the plan's rule (Spearman on test >= {RULE}):** " + (
        f"{pick} ranks like the 10-epoch protocol and costs less; it becomes the fashion-mnist space's final "
        f"fidelity." if pick else "no cheaper schedule ranks at >= 0.9; the fashion-mnist space's final stage "
        "keeps the 10-epoch protocol."))
    path = out / "final-fidelity.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _has_tabulate() -> bool:
    import importlib.util

    return importlib.util.find_spec("tabulate") is not None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="seconds-long schema check (digits, tiny everything)")
    ap.add_argument("--report-only", action="store_true", help="rebuild final-fidelity.md from final-fidelity.csv")
    ap.add_argument("--jobs", type=int, default=1, help="units trained in parallel, one process each")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job")
    ap.add_argument("--schedules", default="", help="comma-separated schedule names to train or read (default all, "
                    f"{', '.join(schedule_name(*x) for x in SCHEDULES)}; the reference is always read)")
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
    cache = out / "converged-cache"
    session = Session(command_line("final_fidelity.py", argv))
    run(out, cache, zoo_dir, args.jobs, args.threads, args.smoke, log, [x for x in args.schedules.split(",") if x])
    session.record(out / "final-fidelity-meta.json", jobs=args.jobs, threads=args.threads)
    print(report(out, n_boot=200 if args.smoke else 4000).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

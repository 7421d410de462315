"""What multiply-adds hide, measured (issue 25): the latency of every zoo candidate at the deploy shape.

Every candidate of the zoo (analysis/results/zoo-candidates.json: paper, the hebbian policies, 24 random
allocations, all fitted to 3e8 MACs at 3x224x224) is built at full width and timed on this machine with
`hebbnas.latency.measure` (median and IQR of 30 warm runs, repeated when noisy) in torch eager and in
onnxruntime, at batch 1 and batch 32. The read-out gives the Spearman between MACs and latency (with a
bootstrap interval) and, among the candidates within 1% of the same MAC budget, the spread of latency
(max / min): how different "equal cost" is in milliseconds, beside how far the same candidate moves from
one interleaved pass to the next (`--passes`, default 2). Latencies belong to this machine.

    python analysis/latency.py                 # about 30 minutes on a quiet 2-core machine (2 passes)
    python analysis/latency.py --smoke --out /tmp/l   # seconds (tests)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analysis.scores import candidate_topology  # noqa: E402
from analysis.stats import spearman_boot  # noqa: E402

RESULTS = ROOT / "analysis" / "results"
SETTINGS = (("eager", 1), ("eager", 32), ("onnxruntime", 1), ("onnxruntime", 32))


def measure_all(cands: list[dict[str, Any]], shape: tuple[int, int, int], settings: Any, runs: int,
                passes: int = 2, log: Any = print) -> list[dict[str, Any]]:
    """One row per pass x candidate x (runtime, batch). The passes interleave: every candidate is measured
    once before any is measured again, odd passes in reverse order, so that a slow drift of the machine
    shows up as pass-to-pass change instead of as a difference between neighbouring candidates."""
    from hebbnas.latency import measure

    rows = []
    for p in range(1, passes + 1):
        log(f"pass {p} of {passes} ({'forward' if p % 2 else 'reverse'} order)")
        for c in (cands if p % 2 else cands[::-1]):
            t = candidate_topology(c, 10)
            for runtime, batch in settings:
                lat = measure(t, shape, batch=batch, runtime=runtime, runs=runs)
                rows.append({"pass": p, "candidate": c["candidate"], "kind": c["kind"], "macs": t.macs(shape),
                             "params": t.params(), "runtime": runtime, "batch": batch, "median_ms": lat.median_ms,
                             "iqr_ms": lat.iqr_ms, "ms_per_image": lat.median_ms / batch, "repeats": lat.repeats,
                             "noisy": lat.noisy, "threads": lat.threads, "device": lat.device,
                             "channels_last": lat.channels_last})
            log(f"  {c['candidate']:<26} " + "  ".join(
                f"{r['runtime']}/b{r['batch']} {r['median_ms']:.2f} ms" for r in rows[-len(settings):]))
    return rows


def repeatability(g: Any) -> dict[str, float]:
    """One setting's rows (candidate, pass, ms_per_image): the spread between candidates (max / min of
    their mean over passes, and the same within each pass), beside how far one candidate moves from pass
    to pass (max / min of its passes: median and largest over candidates) and how well the passes agree
    on the order (the smallest Spearman over pairs of passes). Pure; unit-tested."""
    from itertools import combinations

    from scipy.stats import spearmanr

    wide = g.pivot_table(index="candidate", columns="pass", values="ms_per_image")
    mean = wide.mean(axis=1)
    within = wide.max(axis=0) / wide.min(axis=0)
    moves = wide.max(axis=1) / wide.min(axis=1)
    pairs = [float(spearmanr(wide[a], wide[b])[0]) for a, b in combinations(wide.columns, 2)]
    return {"passes": int(wide.shape[1]), "between": float(mean.max() / mean.min()),
            "between_lo": float(within.min()), "between_hi": float(within.max()),
            "move_median": float(moves.median()), "move_max": float(moves.max()),
            "spearman_min": min(pairs) if pairs else float("nan")}


def report(out: Path, budget: float) -> Path:
    """latency.md from latency.csv."""
    import pandas as pd

    df = pd.read_csv(out / "latency.csv")
    if "pass" not in df:
        df["pass"] = 1  # a read-out written before the passes
    meta = json.loads((out / "latency-meta.json").read_text()) if (out / "latency-meta.json").exists() else {}
    lines = ["# What MACs hide: measured latency of the zoo's candidates", "",
             f"- {meta.get('date', '?')}: `{meta.get('command', '?')}`, {meta.get('wall_min', '?')} min; torch "
             f"{meta.get('torch', '?')}, {meta.get('threads', '?')} thread(s), device {df['device'].iloc[0]}; load "
             f"average {meta.get('load', '?')} at the start. Latencies are of this machine only.",
             "- every candidate at full width, 3x224x224, eval mode, no aux heads; median of 30 timed runs after "
             "warm-up (repeated up to 3 times when the IQR exceeded 10% of the median)", "",
             "| runtime | batch | candidates | ms per image: min / median / max | Spearman(MACs, latency) [95%] | "
             f"within 1% of {budget:.3g} MACs: n, latency max / min |", "| --- | ---: | ---: | --- | --- | --- |"]
    rng = np.random.default_rng(0)
    rep = {k: repeatability(g) for k, g in df.groupby(["runtime", "batch"], sort=False)}
    df = (df.groupby(["candidate", "kind", "macs", "params", "runtime", "batch"], sort=False)
          .agg(ms_per_image=("ms_per_image", "mean"), noisy=("noisy", "any"), device=("device", "first"))
          .reset_index())  # a candidate's figure: the mean of its passes
    for (runtime, batch), g in df.groupby(["runtime", "batch"], sort=False):
        r = spearman_boot(g["macs"].values, g["ms_per_image"].values, n_boot=2000, rng=rng)
        near = g[g["macs"] >= 0.99 * budget]
        spread = near["ms_per_image"].max() / near["ms_per_image"].min() if len(near) >= 2 else float("nan")
        lines.append(f"| {runtime} | {batch} | {len(g)} | {g['ms_per_image'].min():.3f} / "
                     f"{g['ms_per_image'].median():.3f} / {g['ms_per_image'].max():.3f} | {r[0]:+.2f} "
                     f"[{r[1]:+.2f}, {r[2]:+.2f}] | {len(near)}, {spread:.2f}x |")
    noisy = int(df["noisy"].sum())
    mac_range = df["macs"].max() / df["macs"].min() - 1
    passes = max(r["passes"] for r in rep.values())
    lines += ["", f"The candidates' MACs differ by at most {100 * mac_range:.2f}% (every one is fitted to the same "
              "budget), so Spearman(MACs, latency) among them can only measure noise: it does not test whether MACs "
              "predict latency (that needs candidates across a range of MACs)."]
    if passes >= 2:
        lines += ["", f"Repeatability: every candidate was measured in {passes} interleaved passes (each pass times "
                  "every candidate once; odd passes in reverse order). A candidate's figure above is the mean of its "
                  "passes. Beside the spread between candidates, how far one candidate moved from pass to pass and "
                  "how well the passes agree on the order:", "",
                  "| runtime | batch | between candidates, max / min (per pass) | one candidate pass to pass, "
                  "max / min: median, largest | Spearman between passes (smallest) |", "| --- | ---: | --- | --- | ---: |"]
        for (runtime, batch), r in rep.items():
            lines.append(f"| {runtime} | {batch} | {r['between']:.2f}x ({r['between_lo']:.2f}x-{r['between_hi']:.2f}x) | "
                         f"{r['move_median']:.2f}x, {r['move_max']:.2f}x | {r['spearman_min']:+.2f} |")
    else:
        lines += ["", "The spreads at equal MACs are one measurement per candidate and setting; repeatability was "
                  "not measured in this run (`--passes 2` measures it). For scale (issue 32): `hebbnas show googlenet "
                  "--latency` run three times in a row on a quiet machine gave 14.95, 15.31 and 17.46 ms (1.17x from "
                  "repeat to repeat) while each run's IQR was about 2%."]
    from hebbnas.report.markdown import markdown_table

    piv = df.pivot_table(index=["candidate", "macs", "params"], columns=["runtime", "batch"], values="ms_per_image",
                         sort=False)
    lines += ["", f"{noisy} of {len(df)} candidate-settings had a measurement that stayed noisy (IQR above 10% of "
              "the median after 3 tries).",
              "", "Per candidate (ms per image):", "",
              markdown_table(["candidate", "MACs", "params", *[f"{r} b{b}" for r, b in piv.columns]],
                             [[c, f"{m:,}", f"{p:,}", *[f"{v:.3f}" for v in row]]
                              for (c, m, p), row in zip(piv.index, piv.values)])]
    (out / "latency.md").write_text("\n".join(lines) + "\n")
    return out / "latency.md"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", type=Path, default=RESULTS, help="the zoo's results folder (zoo-candidates.json)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--passes", type=int, default=2, help="interleaved passes over every candidate (repeatability)")
    ap.add_argument("--batches", default="1,32", help="the batch sizes to time, comma-separated (each in eager and "
                    "onnxruntime)")
    ap.add_argument("--budget", type=float, default=3e8, help="the zoo's MAC budget")
    ap.add_argument("--smoke", action="store_true", help="three candidates at 3x64x64, eager batch 1 and 2")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)
    import os

    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        cands = json.loads((args.zoo / "zoo-candidates.json").read_text())
        batches = {int(b) for b in args.batches.split(",") if b}
        shape, settings = (3, 224, 224), tuple(x for x in SETTINGS if x[1] in batches)
        if args.smoke:
            cands, shape, settings = cands[:3], (3, 64, 64), (("eager", 1), ("eager", 2))
        command = "python analysis/latency.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        load, t0 = os.getloadavg()[0], time.time()
        import pandas as pd

        rows = measure_all(cands, shape, settings, args.runs, args.passes)
        pd.DataFrame(rows).to_csv(args.out / "latency.csv", index=False)
        (args.out / "latency-meta.json").write_text(json.dumps({
            "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "command": command, "threads": args.threads,
            "wall_min": round((time.time() - t0) / 60, 1), "torch": torch.__version__, "load": round(load, 2)}, indent=1))
    print(report(args.out, args.budget).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

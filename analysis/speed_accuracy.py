"""Does the faster recipe train the same networks? Paired seeds on a few zoo candidates (issue 21).

The committed 2-epoch zoo trained contiguous tensors with torch's per-parameter AdamW loop. Today's
defaults train channels_last (where it measures faster) with the fused AdamW kernel: the same maths,
other rounding. This script retrains a few zoo candidates on the zoo's own seeds with the new recipe
(channels_last fixed to True so every unit trains the same way, fused AdamW) and compares each with
its cached unit of the committed recipe, seed by seed: the paired difference of test accuracy with its
t interval (zoo.py's `t_interval`), against the zoo's own noise (the sd of one unit after pairing).

    python analysis/speed_accuracy.py --jobs 2      # 12 units, about 10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analysis import stats, zoo_protocol, zoo_units  # noqa: E402

CANDIDATES = ("paper", "random-22", "random-13", "random-10")
"""paper and three randoms: the zoo's best, worst and a median one (13-seed means)."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--zoo", type=Path, default=zoo_protocol.DEFAULT_OUT, help="the zoo's results folder (its unit cache)")
    args = ap.parse_args(argv)
    old = zoo_protocol.cpu_protocol()
    new = dataclasses.replace(old, channels_last=True, fused=True)
    cache = args.zoo / "zoo-cache"
    static = {c.name: c for c in zoo_protocol.static_candidates(old)}
    units = [(static[n], s) for s in range(args.seeds) for n in CANDIDATES]
    t0 = time.time()
    print(f"# speed_accuracy {dt.datetime.now():%Y-%m-%d %H:%M}  command: python analysis/speed_accuracy.py "
          + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])))
    with zoo_units.executor(args.jobs) as ex:
        fut = {(c.name, s, p is new): ex.submit(zoo_units.cached_unit, p, cache, p.main, c.topology, s, 1)
               for c, s in units for p in (old, new)}
        recs = {k: f.result() for k, f in fut.items()}
    print(f"# {len(units)} candidate x seed pairs, {sum(1 for r in recs.values() if r.get('trained_now'))} units "
          f"trained now, {(time.time() - t0) / 60:.1f} min; the committed recipe's units come from the zoo's cache")
    print(f"{'candidate':<12}{'seed':>5}{'test, committed':>17}{'test, fast':>12}{'diff (pt)':>11}"
          f"{'train s, committed':>20}{'train s, fast':>15}")
    d, speed = [], []
    for c, s in units:
        a, b = recs[(c.name, s, False)], recs[(c.name, s, True)]
        d.append(b["test_acc"] - a["test_acc"])
        speed.append(a["train_s"] / b["train_s"])
        print(f"{c.name:<12}{s:>5}{a['test_acc']:>17.4f}{b['test_acc']:>12.4f}{100 * d[-1]:>+11.2f}"
              f"{a['train_s']:>20.1f}{b['train_s']:>15.1f}")
    m, lo, hi = stats.t_interval(np.array(d))
    import pandas as pd

    z = pd.read_csv(args.zoo / "zoo.csv", keep_default_na=False)
    acc, seeds = stats.paired_accuracy(z[z["phase"] == "main"])
    sigma, _ = stats.paired_noise(acc[seeds].values)
    print(f"fast - committed, paired over {len(d)} units: {100 * m:+.2f} pt [{100 * lo:+.2f}, {100 * hi:+.2f}] "
          f"(sd of the differences {100 * np.std(d, ddof=1):.2f} pt); one zoo unit's noise after pairing is "
          f"{100 * sigma:.2f} pt (zoo.csv, {len(acc)} candidates x {len(seeds)} seeds): for scale, two units that "
          f"differed like two seeds would differ by about {100 * sigma * 2 ** 0.5:.1f} pt sd")
    print(f"training-time ratio (committed / fast, as trained; the committed units were timed in earlier sessions, "
          f"possibly on a busier machine: bench_proxy.py gives the A/B in one run): median {np.median(speed):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

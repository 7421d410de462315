"""Training throughput of today's proxy against width proxies, measured in one run.

Today's proxy trains the full-width candidate at 32 px, where inception4 sees 2x2 maps and inception5
1x1 (the 3x3/5x5 branches degenerate to their centre taps). A width proxy trains a uniformly narrowed
copy (`Topology.narrowed`) at a resolution where every Inception module sees maps of at least 4x4.
The candidate is GoogLeNet fitted to the budget (default 3e8 MACs at 3x224x224, the zoo's budget).

Measures img/s of training steps (forward with aux heads, loss, backward, AdamW step) at batch 32 on
random data, and of evaluation (forward only, batch 256), with `--threads` torch threads.

    python analysis/bench_proxy.py                 # about a minute on one CPU thread
    python analysis/bench_proxy.py --threads 2 --seconds 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import time

import torch
import torch.nn.functional as F

from hebbnas.derive import fit
from hebbnas.model import build
from hebbnas.topology import Topology, get_topology, layer_costs

PROXIES = ((1.0, 32), (0.25, 112), (0.25, 128), (0.125, 224), (0.5, 112))
"""(width, resolution): today's proxy first, then width proxies."""


def inception_maps(t: Topology, resolution: int) -> str:
    """Map sizes seen by inception3a / 4a / 5a at `resolution`, e.g. '14/7/4'."""
    shapes = {lc.name.split(".")[0]: lc.out_shape[1] for lc in layer_costs(t, (t.in_channels, resolution, resolution))}
    return "/".join(str(shapes[n]) for n in ("inception3a", "inception4a", "inception5a"))


def throughput(t: Topology, resolution: int, seconds: float, batch: int = 32, eval_batch: int = 256) -> tuple[float, float]:
    """(train img/s, eval img/s) of `t` at `resolution` on random data, after one warm-up step."""
    torch.manual_seed(0)
    model = build(t)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, t.in_channels, resolution, resolution)
    y = torch.randint(0, t.num_classes, (batch,))

    def step() -> None:
        logits, aux = model.forward_with_aux(x)
        loss = F.cross_entropy(logits, y) + 0.3 * sum(F.cross_entropy(a, y) for a in aux)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2:
        step()
        n += 1
    train_ips = n * batch / (time.perf_counter() - t0)
    model.eval()
    xe = torch.randn(eval_batch, t.in_channels, resolution, resolution)
    with torch.no_grad():
        model(xe)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 2 or n < 1:
            model(xe)
            n += 1
    return train_ips, n * eval_batch / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=3e8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=6.0, help="timed training per proxy")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = fit(get_topology("googlenet").with_classes(10), args.budget, (3, 224, 224), multiple=8)
    print(f"# bench_proxy {dt.date.today()}  command: python {' '.join(shlex.quote(a) for a in sys.argv)}")
    print(f"# candidate: googlenet fitted to {args.budget:.3g} MACs at 3x224x224 ({base.params():,} params); "
          f"torch {torch.__version__}, {args.threads} thread(s), batch 32 (train) / 256 (eval), random data")
    print(f"{'proxy':<16}{'maps 3/4/5':>12}{'MACs/img':>12}{'params':>10}{'train img/s':>13}{'ratio':>7}"
          f"{'eval img/s':>12}{'ratio':>7}")
    ref: tuple[float, float] | None = None
    for width, res in PROXIES:
        t = base if width == 1.0 else base.narrowed(width)
        tr, ev = throughput(t, res, args.seconds)
        ref = ref or (tr, ev)
        label = f"{'full' if width == 1 else f'1/{round(1 / width)}'} width @{res}"
        print(f"{label:<16}{inception_maps(t, res):>12}{t.macs((3, res, res)) / 1e6:>11.2f}M{t.params():>10,}"
              f"{tr:>13.0f}{tr / ref[0]:>7.2f}{ev:>12.0f}{ev / ref[1]:>7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where a training unit's time goes on this machine, and what each speed-up buys, measured in one run.

Sections (every ratio is between numbers measured in this run, on this machine):

1. proxies: training and evaluation images/s of today's proxy and the width proxies, contiguous vs
   channels_last (the candidate is GoogLeNet fitted to the budget, default 3e8 MACs, the zoo's).
2. the zoo unit, A/B: `hebbnas.train.train` + `evaluate` as at 5dfd6dc (contiguous, torch's per-parameter
   AdamW loop) against today's defaults (memory format measured, fused AdamW, evaluation in the
   model's format under inference mode), and the unit's time (10,000 training and 12,000 evaluated
   images) with evaluation's share.
3. evaluation knobs: batch size, memory format, no_grad vs inference_mode.
4. two workers on two cores: one process of two threads against two processes of one thread at once,
   for the zoo's unit network and a default search trial's (full width, 1.5e9, 32 px); the per-process
   rate alone and beside a neighbour says how much the shared cache and memory cost.
5. torch.compile: eager vs compiled training images/s, compile time, and the break-even unit length.

    python analysis/bench_proxy.py                     # about 10 minutes on 2 cores
    python analysis/bench_proxy.py --smoke             # seconds: tiny sizes, no compile (tests)
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from hebbnas.data import Dataset, Split
from hebbnas.derive import fit
from hebbnas.model import build
from hebbnas.topology import Topology, get_topology, layer_costs
from hebbnas.train import TrainConfig, evaluate, train

PROXIES = ((1.0, 32), (0.25, 112), (0.25, 128), (0.125, 224), (0.5, 112))
"""(width, resolution): today's proxy first, then width proxies."""
ZOO_UNIT = (10_000, 12_000)
"""A zoo unit: 2 epochs on 5,000 training images, then 2,000 validation + 10,000 test images evaluated."""


@dataclass(frozen=True)
class Net:
    """A network to time: topology (already narrowed) at a resolution."""

    label: str
    topology: Topology
    resolution: int


def inception_maps(t: Topology, resolution: int) -> str:
    """Map sizes seen by inception3a / 4a / 5a at `resolution`, e.g. '14/7/4'."""
    shapes = {lc.name.split(".")[0]: lc.out_shape[1] for lc in layer_costs(t, (t.in_channels, resolution, resolution))}
    return "/".join(str(shapes[n]) for n in ("inception3a", "inception4a", "inception5a"))


def fake_data(net: Net, n_train: int, n_eval: int) -> Dataset:
    """Random images of the right shape (speed does not depend on the pixels)."""
    g = torch.Generator().manual_seed(0)
    shape = (net.topology.in_channels, net.resolution, net.resolution)
    split = lambda n: Split(torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g))  # noqa: E731
    tr, ev = split(n_train), split(n_eval)
    return Dataset(name="bench", train=tr, val=Split(ev.x[:32], ev.y[:32]), test=ev, num_classes=10,
                   resolution=net.resolution, channels=shape[0], mean=(0.0,) * shape[0], std=(1.0,) * shape[0])


def step_rate(net: Net, channels_last: bool, seconds: float, batch: int = 32, compiled: bool = False,
              fused: bool = True) -> float:
    """Training images/s of the bare step (forward with aux, loss, backward, AdamW) after warm-up."""
    return timed_steps(net, channels_last, seconds, batch, compiled, fused)[0]


def timed_steps(net: Net, channels_last: bool, seconds: float, batch: int = 32, compiled: bool = False,
                fused: bool = True) -> tuple[float, float]:
    """(images/s after warm-up, seconds of the two warm-up steps: with `compiled`, the compile)."""
    torch.manual_seed(0)
    model = build(net.topology)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused or None)
    x = torch.randn(batch, net.topology.in_channels, net.resolution, net.resolution).contiguous(memory_format=fmt)
    y = torch.randint(0, net.topology.num_classes, (batch,))
    fwd = torch.compile(model.forward_with_aux, dynamic=False) if compiled else model.forward_with_aux

    def step() -> None:
        logits, aux = fwd(x)
        loss = F.cross_entropy(logits, y) + 0.3 * sum(F.cross_entropy(a, y) for a in aux)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()
    step()
    warm = time.perf_counter() - t0
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2:
        step()
        n += 1
    return n * batch / (time.perf_counter() - t0), warm


def eval_rate(net: Net, channels_last: bool, seconds: float, batch: int = 256, inference: bool = True) -> float:
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build(net.topology, aux=False).to(memory_format=fmt).eval()
    x = torch.randn(batch, net.topology.in_channels, net.resolution, net.resolution).contiguous(memory_format=fmt)
    with torch.inference_mode() if inference else torch.no_grad():
        model(x)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 1:
            model(x)
            n += 1
    return n * batch / (time.perf_counter() - t0)


def unit_rates(net: Net, cfg: TrainConfig, n_train: int, n_eval: int) -> tuple[float, float, bool]:
    """(training img/s, evaluation img/s, channels_last used) of the real loop on one epoch of `n_train`
    images and one `evaluate` of `n_eval`, with `cfg`."""
    data = fake_data(net, n_train, n_eval)
    torch.manual_seed(0)
    model = build(net.topology)
    t0 = time.perf_counter()
    res = train(model, data, cfg.replace(epochs=1, warmup_epochs=0))
    t1 = time.perf_counter()
    evaluate(model, data.test.x, data.test.y, cfg.eval_batch_size, "cpu")
    t2 = time.perf_counter()
    return n_train / (t1 - t0), n_eval / (t2 - t1), res.channels_last


def _worker(args: tuple[Net, int, float, Any]) -> float:
    net, threads, seconds, barrier = args
    torch.set_num_threads(threads)
    cl = step_rate(net, True, 0.5) > step_rate(net, False, 0.5)
    if barrier is not None:
        barrier.wait()
    return step_rate(net, cl, seconds)


def parallel_rates(net: Net, seconds: float) -> dict[str, float]:
    """Aggregate training img/s: 1 process x 1 thread alone, 1 x 2 threads, 2 x 1 thread at once."""
    ctx = mp.get_context("spawn")
    out: dict[str, float] = {}
    with ctx.Pool(1) as pool:
        out["1 x 1 thread (other core idle)"] = pool.map(_worker, [(net, 1, seconds, None)])[0]
        out["1 x 2 threads"] = pool.map(_worker, [(net, 2, seconds, None)])[0]
    barrier = ctx.Manager().Barrier(2)
    with ctx.Pool(2) as pool:
        rates = pool.map(_worker, [(net, 1, seconds, barrier)] * 2)
    out["2 x 1 thread at once"] = sum(rates)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=3e8)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of sections 1-3 and 5")
    ap.add_argument("--seconds", type=float, default=6.0, help="timed training per measurement")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes and no compile: seconds (tests)")
    ap.add_argument("--no-compile", action="store_true", help="skip section 5 (compiling takes minutes)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    secs = 0.2 if args.smoke else args.seconds
    base = fit(get_topology("googlenet").with_classes(10), args.budget, (3, 224, 224), multiple=8)
    zoo_net = Net("zoo proxy: 1/4 width @128", base.narrowed(0.25), 128)
    search_top = fit(get_topology("googlenet").with_classes(10), 1.5e9, (3, 224, 224), multiple=8)
    search_net = Net("search trial: full width @32 (1.5e9)", search_top, 32)
    proxies = PROXIES[:1] if args.smoke else PROXIES
    if args.smoke:
        zoo_net = Net("zoo proxy: 1/8 width @32", base.narrowed(0.125), 32)
        search_net = Net("search trial: 1/8 width @32", search_top.narrowed(0.125), 32)
    p = print
    p(f"# bench_proxy {dt.datetime.now():%Y-%m-%d %H:%M}  command: python {' '.join(shlex.quote(a) for a in sys.argv)}")
    p(f"# torch {torch.__version__}, {platform.processor() or platform.machine()} "
      f"({_cpu_model()}), {os.cpu_count()} CPUs, {args.threads} thread(s) in sections 1-3 and 5, batch 32 (train) / "
      f"256 (eval), random data; load average at start {os.getloadavg()[0]:.2f}")

    p("\n## 1. proxies: training and evaluation images/s, contiguous (NCHW) vs channels_last (CL)")
    p(f"{'proxy':<16}{'maps 3/4/5':>11}{'MACs/img':>10}{'train NCHW':>12}{'train CL':>10}{'CL/NCHW':>9}"
      f"{'eval NCHW':>11}{'eval CL':>9}{'CL/NCHW':>9}")
    for width, res in proxies:
        t = base if width == 1.0 else base.narrowed(width)
        n = Net("", t, res if not args.smoke else 32)
        tr = [step_rate(n, cl, secs) for cl in (False, True)]
        ev = [eval_rate(n, cl, secs / 2) for cl in (False, True)]
        label = f"{'full' if width == 1 else f'1/{round(1 / width)}'} width @{n.resolution}"
        p(f"{label:<16}{inception_maps(t, n.resolution):>11}{t.macs((3, n.resolution, n.resolution)) / 1e6:>9.2f}M"
          f"{tr[0]:>12.0f}{tr[1]:>10.0f}{tr[1] / tr[0]:>9.2f}{ev[0]:>11.0f}{ev[1]:>9.0f}{ev[1] / ev[0]:>9.2f}", flush=True)

    p(f"\n## 2. the zoo unit, A/B ({zoo_net.label}; a unit trains {ZOO_UNIT[0]:,} and evaluates {ZOO_UNIT[1]:,} images)")
    n_tr, n_ev = (64, 64) if args.smoke else (1600, 2400)
    old = TrainConfig(channels_last=False, fused=False)
    new = TrainConfig()
    runs: dict[str, list[tuple[float, float, bool]]] = {"at 5dfd6dc": [], "default now": []}
    for _ in range(1 if args.smoke else 2):  # interleaved, the better of two each
        for name, cfg in (("at 5dfd6dc", old), ("default now", new)):
            runs[name].append(unit_rates(zoo_net, cfg, n_tr, n_ev))
    p(f"{'recipe':<14}{'train img/s':>12}{'eval img/s':>11}{'unit s':>8}{'eval share':>11}  memory format")
    unit_s = {}
    for name, rs in runs.items():
        tr, ev = max(r[0] for r in rs), max(r[1] for r in rs)
        u = ZOO_UNIT[0] / tr + ZOO_UNIT[1] / ev
        unit_s[name] = u
        p(f"{name:<14}{tr:>12.0f}{ev:>11.0f}{u:>8.1f}{ZOO_UNIT[1] / ev / u:>11.0%}  "
          f"{'channels_last' if rs[-1][2] else 'contiguous'}")
    p(f"unit speed-up, default now / at 5dfd6dc: {unit_s['at 5dfd6dc'] / unit_s['default now']:.2f}x")

    p(f"\n## 3. evaluation knobs ({zoo_net.label}): images/s")
    p(f"{'batch':>6}{'NCHW no_grad':>14}{'NCHW inference':>16}{'CL no_grad':>12}{'CL inference':>14}")
    for b in ((64,) if args.smoke else (64, 128, 256, 512)):
        r = [eval_rate(zoo_net, cl, secs / 3, b, inf) for cl in (False, True) for inf in (False, True)]
        p(f"{b:>6}{r[0]:>14.0f}{r[1]:>16.0f}{r[2]:>12.0f}{r[3]:>14.0f}", flush=True)

    p("\n## 4. two workers on two cores: aggregate training images/s (each worker in its faster format)")
    for net in (zoo_net, search_net):
        r = parallel_rates(net, secs)
        alone = r["1 x 1 thread (other core idle)"]
        p(f"{net.label}: " + ", ".join(f"{k} {v:.0f}" for k, v in r.items())
          + f"; two 1-thread jobs / one 2-thread job {r['2 x 1 thread at once'] / r['1 x 2 threads']:.2f}x; "
          f"a 1-thread job beside another runs at {r['2 x 1 thread at once'] / 2 / alone:.2f}x of its speed alone; "
          f"a second thread in one job adds {r['1 x 2 threads'] / alone - 1:+.0%}", flush=True)

    if not (args.smoke or args.no_compile):
        p(f"\n## 5. torch.compile of the training forward ({zoo_net.label}, channels_last, 1 thread)")
        eager, eager_warm = timed_steps(zoo_net, True, secs)
        compiled, compile_s = timed_steps(zoo_net, True, secs, compiled=True)
        compile_s -= eager_warm  # the two warm-up steps minus what they cost eagerly
        saved = 1 / eager - 1 / compiled
        p(f"eager {eager:.0f} img/s, compiled {compiled:.0f} img/s ({compiled / eager:.2f}x), compile {compile_s:.0f} s")
        if saved > 0:
            be = compile_s / saved
            p(f"break-even: {be:,.0f} training images ({be / ZOO_UNIT[0]:.1f} zoo units of 10,000; "
              f"a converged unit of 200,000 saves {200_000 * saved - compile_s:+.0f} s)")
        else:
            p("compiled is not faster here: no break-even")
    return 0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        return "?"


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark of the probe's streaming correlation engine against raw GEMM and numpy.corrcoef.

What it measures, on the same synthetic float32 activations (NCHW batches of 14x14 maps, channel means
around 500, a few shared latent factors so the correlations are not trivial):

- time of the probe's zero-offset statistics (``CorrelationStats(rings=False)``: shift-copy NCHW ->
  (C, N), upper-triangular Gram GEMMs, float64 merge, finalize) against a raw ``torch.mm(X.T, X)`` on the
  same batches already laid out as (N_batch, C) (layout conversion not charged to it);
- the extra time of the ring statistics (``rings=True`` minus ``rings=False``);
- ``numpy.corrcoef`` on the whole (C, N) array in memory, at N = 1e6, C = 832 (full run);
- peak memory: each case runs in a fresh subprocess and reports how much its peak resident set size
  rose during the measured call above the RSS just before it (peak reset through /proc/self/clear_refs;
  the input batches / input array are allocated before and are not counted; the input size is printed
  beside).

Timings are the minimum over repeats, interleaved, because the machine may be shared. Run:
``python analysis/bench_probe.py`` (several minutes) or ``--quick`` (seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hebbnas.probe import CorrelationStats  # noqa: E402

MAP = 14  # 14 x 14 maps: the inception4x size at 224 x 224 input
POOL = 4  # distinct batches, cycled, so memory does not grow with N


def _threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def make_pool(c: int, batch_positions: int, seed: int = 0) -> list[torch.Tensor]:
    """POOL float32 NCHW batches: 8 latent factors + noise, means ~ 500, stds 0.5-5."""
    g = torch.Generator().manual_seed(seed)
    b = max(1, batch_positions // (MAP * MAP))
    loadings = torch.randn(c, 8, generator=g) * (torch.rand(c, 1, generator=g) < 0.5)
    means = 500.0 + 20.0 * torch.randn(c, 1, 1, generator=g)
    scales = 0.5 + 4.5 * torch.rand(c, 1, 1, generator=g)
    pool = []
    for _ in range(POOL):
        lat = torch.randn(b, 8, MAP, MAP, generator=g)
        x = torch.einsum("ck,bkhw->bchw", loadings, lat) + torch.randn(b, c, MAP, MAP, generator=g)
        pool.append((x * scales + means).contiguous())
    return pool


def batches_for(n: int, pool: list[torch.Tensor]) -> int:
    per = pool[0].shape[0] * MAP * MAP
    return max(1, round(n / per))


def run_probe(pool: list[torch.Tensor], nb: int, rings: bool) -> float:
    t0 = time.perf_counter()
    stats = CorrelationStats(rings=rings)
    for i in range(nb):
        stats.update(pool[i % POOL])
    stats.finalize()
    return time.perf_counter() - t0


def run_mm(pool_nc: list[torch.Tensor], nb: int) -> float:
    t0 = time.perf_counter()
    for i in range(nb):
        x = pool_nc[i % POOL]
        torch.mm(x.T, x)
    return time.perf_counter() - t0


def run_copy(pool: list[torch.Tensor], nb: int) -> float:
    """The probe's shift-copy pass alone (NCHW -> (C, images, H, W) minus a reference mean)."""
    c = pool[0].shape[1]
    buf = torch.empty(c, pool[0].shape[0], MAP, MAP)
    k = pool[0].mean(dim=(0, 2, 3)).view(c, 1, 1, 1)
    t0 = time.perf_counter()
    for i in range(nb):
        torch.sub(pool[i % POOL].transpose(0, 1), k, out=buf)
    return time.perf_counter() - t0


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class PeakRSS:
    """Rise of the process's peak resident set size during a block, beyond the RSS at its start.

    Linux: the high-water mark is reset by writing 5 to /proc/self/clear_refs, so allocations made
    before the block (the input data) do not hide what the block itself needs. Elsewhere falls back
    to ru_maxrss, which can under-report when an earlier peak was higher.
    """

    def __enter__(self) -> PeakRSS:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.start = _status_kib("VmRSS") * 1024
            self.exact = True
        except OSError:
            self.start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.exact = False
        return self

    def __exit__(self, *exc: object) -> None:
        if self.exact:
            peak = _status_kib("VmHWM") * 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.extra = max(0, peak - self.start)


# ---------------------------------------------------------------------------------------- subprocesses


def worker(args: argparse.Namespace) -> None:
    """One measurement in a fresh process; prints a JSON line."""
    torch.set_num_threads(_threads())
    pool = make_pool(args.c, args.batch_positions)
    nb = batches_for(args.n, pool)
    n = nb * pool[0].shape[0] * MAP * MAP
    out: dict[str, object] = {"c": args.c, "n": n, "case": args.worker}
    if args.worker in ("probe", "rings"):
        with PeakRSS() as peak:
            out["time"] = run_probe(pool, nb, rings=args.worker == "rings")
        out["extra"] = peak.extra
        out["input"] = sum(p.numel() * 4 for p in pool)
    elif args.worker == "corrcoef":
        per = pool[0].shape[0] * MAP * MAP
        full = np.empty((args.c, n), dtype=np.float32)  # everything in memory, (C, N)
        for i in range(nb):
            full[:, i * per : (i + 1) * per] = pool[i % POOL].transpose(0, 1).reshape(args.c, -1).numpy()
        with PeakRSS() as peak:
            t0 = time.perf_counter()
            np.corrcoef(full)
            out["time"] = time.perf_counter() - t0
        out["extra"] = peak.extra
        out["input"] = full.nbytes
        del full
        if args.with_probe:  # the probe on the same values, in the same process, for the ratio
            out["probe_time"] = min(run_probe(pool, nb, rings=False) for _ in range(2))
    print(json.dumps(out), flush=True)


def spawn(case: str, c: int, n: int, batch_positions: int, with_probe: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--worker", case, "--c", str(c), "--n", str(n)]
    cmd += ["--batch-positions", str(batch_positions)] + (["--with-probe"] if with_probe else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker {case} C={c} N={n} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------------------- main


def timing_table(channels: list[int], ns: list[int], ring_n: int, batch_positions: int, repeats: int) -> None:
    """Interleaved repeats in this process: raw mm, probe ring 0, the shift-copy alone; rings at ring_n."""
    print("| C | N | raw mm (s) | probe ring 0 (s) | probe / mm | shift-copy alone / mm |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    ring_rows = []
    for c in channels:
        pool = make_pool(c, batch_positions)
        pool_nc = [p.permute(0, 2, 3, 1).reshape(-1, c).contiguous() for p in pool]  # untimed layout change
        run_mm(pool_nc, 1), run_probe(pool, 2, rings=True)  # warm-up
        for n in ns:
            nb = batches_for(n, pool)
            n_real = nb * pool[0].shape[0] * MAP * MAP
            best = {"mm": np.inf, "probe": np.inf, "copy": np.inf, "rings": np.inf}
            for _ in range(repeats):
                best["mm"] = min(best["mm"], run_mm(pool_nc, nb))
                best["probe"] = min(best["probe"], run_probe(pool, nb, rings=False))
                best["copy"] = min(best["copy"], run_copy(pool, nb))
                if n == ring_n:
                    best["rings"] = min(best["rings"], run_probe(pool, nb, rings=True))
            print(
                f"| {c} | {n_real:.2e} | {best['mm']:.3f} | {best['probe']:.3f} | "
                f"**{best['probe'] / best['mm']:.2f}x** | {best['copy'] / best['mm']:.2f}x |",
                flush=True,
            )
            if n == ring_n:
                extra = best["rings"] - best["probe"]
                ring_rows.append(
                    f"| {c} | {n_real:.2e} | {best['probe']:.3f} | {best['rings']:.3f} | {extra:.3f} | "
                    f"{extra / best['mm']:.2f}x |"
                )
    print("\n## Extra cost of the ring statistics (rings 1 and 2 together)\n")
    print("| C | N | probe ring 0 (s) | probe rings 0-2 (s) | extra (s) | extra / raw mm |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(ring_rows), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    ap.add_argument("--batch-positions", type=int, default=32768, help="positions per fed batch")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-numpy", action="store_true", help="skip numpy.corrcoef (needs ~10 GB at full size)")
    ap.add_argument("--worker", choices=["probe", "rings", "corrcoef"], help=argparse.SUPPRESS)
    ap.add_argument("--c", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--with-probe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    torch.set_num_threads(_threads())
    if args.quick:
        channels, ns, ring_n, repeats = [256], [65536, 131072], 131072, args.repeats or 2
        np_c, np_n, mem_ns, mem_np_ns = 256, 131072, [32768, 131072], [32768, 131072]
        args.batch_positions = min(args.batch_positions, 16384)
    else:
        channels, ns, ring_n, repeats = [256, 832], [250_000, 1_000_000, 2_000_000], 1_000_000, args.repeats or 3
        np_c, np_n = 832, 1_000_000
        mem_ns, mem_np_ns = [250_000, 1_000_000, 2_000_000], [250_000, 500_000, 1_000_000]
    bp = args.batch_positions
    print(f"# bench_probe: torch {torch.__version__}, numpy {np.__version__}, threads {torch.get_num_threads()}, "
          f"maps {MAP}x{MAP}, batches of ~{bp} positions, min of {repeats} interleaved repeats")
    print(f"# load average at start: {os.getloadavg()[0]:.2f}")
    print("\n## Zero-offset statistics vs raw torch.mm(X.T, X) on the same batches\n")
    timing_table(channels, ns, ring_n, bp, repeats)

    if not args.no_numpy:
        print(f"\n## numpy.corrcoef, everything in memory (C = {np_c}, N = {np_n:.0e})\n")
        r = spawn("corrcoef", np_c, np_n, bp, with_probe=True)
        print("| C | N | numpy.corrcoef (s) | probe ring 0 (s) | probe speed-up |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        print(f"| {np_c} | {r['n']:.2e} | {r['time']:.2f} | {r['probe_time']:.2f} | "
              f"**{r['time'] / r['probe_time']:.2f}x** |", flush=True)

    print(f"\n## Peak memory as N grows (C = {np_c}; rise of peak RSS during the call, fresh process each)\n")
    print("| N | probe ring 0 | probe + rings | numpy.corrcoef | corrcoef input array |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    mb = 2**20
    for n in sorted(set(mem_ns) | set(mem_np_ns)):
        p = spawn("probe", np_c, n, bp) if n in mem_ns else None
        q = spawn("rings", np_c, n, bp) if n in mem_ns else None
        z = spawn("corrcoef", np_c, n, bp) if (n in mem_np_ns and not args.no_numpy) else None
        cells = [
            f"{p['extra'] / mb:.0f} MB" if p else "-",
            f"{q['extra'] / mb:.0f} MB" if q else "-",
            f"{z['extra'] / mb:.0f} MB" if z else "-",
            f"{z['input'] / mb:.0f} MB" if z else "-",
        ]
        n_real = (p or z)["n"]
        print(f"| {n_real:.2e} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n# load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

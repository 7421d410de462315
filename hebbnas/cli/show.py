"""`hebbnas show`: per-module widths, shapes, MACs and params of a topology; `--latency` measures it here."""

from __future__ import annotations

import argparse
import json
from typing import Any

from hebbnas.errors import HebbnasError
from hebbnas.topology import Topology, load_topology, parse_input_shape, show_table


HELP = "per-module widths, shapes, MACs and params of a topology"


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "show", help=HELP,
                       description="Per-module widths, output shapes, MACs and params of a topology (closed form).")
    s.add_argument("topology", help="a base topology name (googlenet, googlenet-tv) or a topology .json")
    s.add_argument("--input", default="3x224x224", help="input shape CxHxW (default 3x224x224)")
    s.add_argument("--json", action="store_true", help="print one JSON object (params, macs, input, modules)")
    s.add_argument("--latency", action="store_true",
                   help="measure the full-width network's latency here at --input (median and IQR of >= 30 runs, "
                   "after warm-up) with milliseconds per block beside its MACs")
    s.add_argument("--batch", type=int, default=1, help="with --latency: images per run (default 1)")
    s.add_argument("--runtime", default="eager", choices=("eager", "onnxruntime"),
                   help="with --latency: torch eager (default) or onnxruntime on the ONNX export (hebbnas[onnx])")
    s.add_argument("--runs", type=int, default=30, help="with --latency: timed runs (at least 30)")
    s.add_argument("--device", default="cpu", help="with --latency: cpu (default), cuda or cuda:N")
    s.add_argument("--repeat", type=int, default=2, metavar="N",
                   help="with --latency: measure N times back to back and print how far the medians lie apart "
                   "(default 2): a run's IQR understates how repeatable its median is")
    s.set_defaults(func=cmd_show)


def cmd_show(args: argparse.Namespace) -> int:
    t = load_topology(args.topology)
    shape = parse_input_shape(args.input)
    try:
        t.macs(shape)  # the closed-form costs check the shape (a map too small, a wrong channel count)
    except HebbnasError as e:  # before --latency builds and runs the network
        raise HebbnasError(f"--input {args.input}: {e}") from None
    if args.latency:
        return _latency(t, shape, args)
    if not args.json:
        print(show_table(t, shape))
        return 0
    costs = t.module_costs(shape)
    print(json.dumps({
        "name": t.name,
        "input": list(shape),
        "params": t.params(),
        "macs": t.macs(shape),
        "params_with_aux": t.params(aux=True),
        "hash": t.hash(),
        "modules": {m.name: {"widths": list(m.widths), "b3_kernel": m.b3_kernel,
                             "macs": costs[m.name][0], "params": costs[m.name][1]} for m in t.modules},
    }))
    return 0



def _latency(t: Topology, shape: tuple[int, int, int], args: argparse.Namespace) -> int:
    """Measure and print the per-block profile (or one JSON object with --json)."""
    from hebbnas.latency import measure

    if args.repeat < 1:
        raise HebbnasError(f"--repeat must be at least 1, got {args.repeat}")
    lats = [measure(t, shape, batch=args.batch, runtime=args.runtime, runs=args.runs, device=args.device,
                    profile=args.runtime == "eager") for _ in range(args.repeat)]
    lat, medians = lats[0], [x.median_ms for x in lats]
    spread = max(medians) / min(medians)
    if args.json:
        print(json.dumps({"name": t.name, "macs": t.macs(shape), "params": t.params(), **lat.to_dict(),
                          "repeat_medians_ms": medians, "repeat_spread": spread}))
        return 0
    print(profile_table(t, shape, lat))
    print(repeatability_line(medians))
    return 0


REPEAT_SPREAD_SEEN = 1.17
"""Back-to-back `hebbnas show googlenet --latency` runs on a quiet 2-core machine gave 14.95, 15.31 and 17.46 ms
(issue 32, 2026-12-07) while each run's IQR was about 2%: how far one median may move on its own."""


def repeatability_line(medians: list[float]) -> str:
    """How repeatable the figure is: the repeats' medians and their max/min ratio, beside what was seen."""
    ms = ", ".join(f"{m:.2f}" for m in medians)
    if len(medians) < 2:
        return (f"repeatability: one measurement ({ms} ms); back-to-back medians have differed by up to "
                f"{REPEAT_SPREAD_SEEN:.2f}x on a 2-core machine, so compare candidates measured interleaved")
    return (f"repeatability: medians {ms} ms over {len(medians)} back-to-back measurements, "
            f"{max(medians) / min(medians):.2f}x apart (seen up to {REPEAT_SPREAD_SEEN:.2f}x on a 2-core machine); "
            "differences smaller than that are not resolved by one measurement")


def profile_table(t: Topology, shape: tuple[int, int, int], lat: Any) -> str:
    """Where the time goes beside where the MACs go: one row per top-level block that takes time."""
    macs: dict[str, int] = {}
    for lc in t.layers(shape):
        block = lc.name.split(".")[0]
        macs[block] = macs.get(block, 0) + lc.macs
    total_macs = t.macs(shape)
    total_ms = sum(lat.modules.values()) or 1.0
    lines = [f"{t.name}: batch {lat.batch} at {'x'.join(map(str, shape))}, {lat.runtime}, {lat.threads} thread(s), "
             f"{lat.device}, {'channels_last' if lat.channels_last else 'contiguous'}",
             f"latency: median {lat.median_ms:.2f} ms, IQR {lat.q1_ms:.2f}-{lat.q3_ms:.2f} ms over {lat.runs} runs"
             + (f" (the quietest of {lat.repeats} measurements)" if lat.repeats > 1 else "")
             + ("; NOISY: the IQR stayed above 10% of the median, the machine is busy" if lat.noisy else "")]
    if lat.modules:
        head = f"{'block':<14}{'MACs':>15}{'MACs %':>8}{'ms':>10}{'time %':>8}{'ns/MAC':>9}"
        lines += ["", head, "-" * len(head)]
        for name, ms in lat.modules.items():
            m = macs.get(name, 0)
            per = f"{ms * 1e6 / (m * lat.batch):.3f}" if m else "-"
            lines.append(f"{name:<14}{m:>15,}{100 * m / total_macs:>7.1f}%{ms:>10.3f}{100 * ms / total_ms:>7.1f}%{per:>9}")
        lines += ["-" * len(head), f"{'sum of blocks':<14}{total_macs:>15,}{100.0:>7.1f}%{total_ms:>10.3f}{100.0:>7.1f}%",
                  "(block times are medians measured by hooks in the same runs; their sum exceeds the latency by "
                  "the hooks' own cost)"]
    return "\n".join(lines)

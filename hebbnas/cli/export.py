"""`hebbnas export RUN`: write a run's best model as pt2, TorchScript, a state dict or ONNX, with metadata."""

from __future__ import annotations

import argparse
from typing import Any

from hebbnas.cli.common import add_out_option


HELP = "the best model of a run as a file plain PyTorch can load"


def register(sub: argparse._SubParsersAction) -> None:
    from hebbnas.export import FORMATS
    from hebbnas.export.formats import format_help, names

    s = sub.add_parser(
        "export", help=HELP,
        description="Export the best model of a run (or, if the search was interrupted, its best completed "
        "trial) as an inference graph with dynamic batch and resolution, plus metadata.",
    )
    s.add_argument("run", help="a run folder (runs/NAME), a `hebbnas train --out` folder, or a checkpoint file "
                   "(best/model.pt, trials/ID/checkpoint.pt)")
    s.add_argument("--format", choices=names(), default=names()[0], help=format_help())
    add_out_option(s, "output file or existing directory (default RUN/export/"
                   + ", ".join(f"{FORMATS.get(k).file_name} for {k}" for k in names())
                   + "; for a checkpoint file, export/ beside it)")
    s.add_argument("--trial", default=None, metavar="ID",
                   help="export this trial of the run instead of the best (e.g. one of best/pareto.csv's front)")
    s.add_argument("--no-verify", action="store_true",
                   help="skip loading the written file back and comparing it with the eager model")
    s.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """Export and print what was written: path, format, size, MACs, params, accuracy."""
    from hebbnas.export import export_run, format_size

    res = export_run(args.run, args.format, args.out, verify=not args.no_verify, trial=args.trial)
    m = res.metadata
    if res.note:
        print(f"note: {res.note}")
    shape = "x".join(str(v) for v in m["input"])
    print(f"wrote {res.path} ({res.format}, {format_size(res.size)})"
          + "".join(f" and {p}" for p in res.extra_paths))
    print(f"  topology {m['name']} ({m['topology_hash']}): MACs {m['macs']:,} ({m['macs']:.4g}) at {shape}, "
          f"params {m['params']:,}, {m['num_classes']} classes")
    print(f"  proxy {m.get('dataset') or '?'}"
          + (f" at {m['resolution']}x{m['resolution']}" if m.get("resolution") else "")
          + f": val acc {_acc(m.get('val_acc'))}, test acc {_acc(m.get('test_acc'))}"
          + (f" (trial {m['source']['trial_id']})" if m["source"].get("trial_id") else ""))
    print(f"  input {_dims(m)}; normalise (x - mean) / std with mean {_vec(m.get('mean'))}, std {_vec(m.get('std'))}")
    if res.max_abs_diff is not None:
        how = "checked in onnxruntime" if res.format == "onnx" else "loaded back and checked"
        print(f"  {how} against PyTorch on the same inputs: max abs difference {res.max_abs_diff:.3g}")
    print(f"  load: {m['load']}")
    return 0


def _acc(v: object) -> str:
    return "n/a" if v is None else f"{float(v):.4f}"  # type: ignore[arg-type]


def _vec(v: object) -> str:
    if not isinstance(v, list):
        return "n/a"
    return "[" + ", ".join(f"{float(x):.4g}" for x in v) + "]"


def _dims(m: dict[str, Any]) -> str:
    dyn = m.get("dynamic") or {}
    parts = []
    for name in ("batch", "height", "width"):
        d = dyn.get(name) or {}
        lo, hi, mult = d.get("min"), d.get("max"), d.get("multiple_of", 1)
        if lo is not None and lo == hi:
            parts.append(f"{name} {lo}")
        else:
            parts.append(f"{name} >= {lo}" + ("" if hi is None else f" <= {hi}")
                         + (f", multiple of {mult}" if mult and mult > 1 else ""))
    return f"N x {m['input'][0]} x H x W ({'; '.join(parts)})"

"""`hebbnas show`: per-module widths, shapes, MACs and params of a topology."""

from __future__ import annotations

import argparse
import json

from hebbnas.topology import load_topology, parse_input_shape, show_table


HELP = "per-module widths, shapes, MACs and params of a topology"


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "show", help=HELP,
                       description="Per-module widths, output shapes, MACs and params of a topology (closed form).")
    s.add_argument("topology", help="a base topology name (googlenet, googlenet-tv) or a topology .json")
    s.add_argument("--input", default="3x224x224", help="input shape CxHxW (default 3x224x224)")
    s.add_argument("--json", action="store_true", help="print one JSON object (params, macs, input, modules)")
    s.set_defaults(func=cmd_show)


def cmd_show(args: argparse.Namespace) -> int:
    t = load_topology(args.topology)
    shape = parse_input_shape(args.input)
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

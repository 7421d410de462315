"""The `hebbnas` command: the I/O edge of the package.

Every user mistake surfaces as a `HebbnasError` and is printed as one line on stderr with exit code 2;
nothing below this layer prints or touches files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from hebbnas.errors import HebbnasError
from hebbnas.topology import Topology, load_topology, parse_input_shape

Handler = Callable[[argparse.Namespace], int]


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def show_table(t: Topology, input_shape: tuple[int, int, int]) -> str:
    """Per-module widths, output shape, MACs and params, plus totals."""
    from hebbnas.topology import PAPER_COLUMNS

    layers = t.layers(input_shape)
    costs = t.module_costs(input_shape)
    shapes: dict[str, tuple[int, int, int]] = {}
    for lc in layers:
        shapes[lc.name.split(".")[0]] = lc.out_shape
    head = f"{'block':<13}" + "".join(f"{c:>10}" for c in PAPER_COLUMNS) + f"{'out':>14}{'MACs':>15}{'params':>12}"
    rows = [f"{t.name} at {'x'.join(map(str, input_shape))}", head, "-" * len(head)]
    stem_shape = shapes["conv3"]
    rows.append(f"{'stem':<13}" + " " * 60 + f"{'x'.join(map(str, stem_shape)):>14}"
                f"{_fmt_int(costs['stem'][0]):>15}{_fmt_int(costs['stem'][1]):>12}")
    for m in t.modules:
        shape = shapes[m.name]
        shape = (m.out_channels, *shape[1:])
        k = "" if m.b3_kernel == 5 else f" (k{m.b3_kernel})"
        rows.append(f"{m.name + k:<13}" + "".join(f"{w:>10}" for w in m.widths)
                    + f"{'x'.join(map(str, shape)):>14}{_fmt_int(costs[m.name][0]):>15}{_fmt_int(costs[m.name][1]):>12}")
    rows.append(f"{'head (fc)':<13}" + " " * 60 + f"{t.num_classes:>14}"
                f"{_fmt_int(costs['head'][0]):>15}{_fmt_int(costs['head'][1]):>12}")
    rows.append("-" * len(head))
    rows.append(f"{'total':<13}" + " " * 74 + f"{_fmt_int(t.macs(input_shape)):>15}{_fmt_int(t.params()):>12}")
    rows.append(f"MACs {t.macs(input_shape):.4g} at {'x'.join(map(str, input_shape))}, params {t.params():,} "
                f"(inference graph; aux heads add {t.params(aux=True) - t.params():,} params in training)")
    return "\n".join(rows)


def cmd_show(args: argparse.Namespace) -> int:
    t = load_topology(args.topology)
    shape = parse_input_shape(args.input)
    if args.json:
        obj = {
            "name": t.name,
            "input": list(shape),
            "params": t.params(),
            "macs": t.macs(shape),
            "params_with_aux": t.params(aux=True),
            "hash": t.hash(),
            "modules": {
                m.name: {"widths": list(m.widths), "b3_kernel": m.b3_kernel,
                         "macs": t.module_costs(shape)[m.name][0], "params": t.module_costs(shape)[m.name][1]}
                for m in t.modules
            },
        }
        print(json.dumps(obj))
    else:
        print(show_table(t, shape))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import time

    import torch

    from hebbnas.data import load_dataset
    from hebbnas.model import build
    from hebbnas.train import EpochResult, TrainConfig, evaluate, train

    t = load_topology(args.topology)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, data_dir=args.data_dir, resolution=args.resolution,
                        channels=t.in_channels, seed=args.seed, train_subset=args.train_subset)
    t = t.with_classes(data.num_classes)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr), ("batch_size", args.batch_size),
                                    ("optimizer", args.optimizer), ("seed", args.seed), ("device", args.device))
                 if v is not None}
    cfg = TrainConfig(**overrides)
    model = build(t)
    print(f"training {t.name} on {data.name} at {data.resolution}x{data.resolution} "
          f"({len(data.train)} train / {len(data.val)} val / {len(data.test)} test), "
          f"{cfg.epochs} epochs, MACs at 3x224x224 {t.macs((t.in_channels, 224, 224)):.4g}")
    t0 = time.perf_counter()

    def on_epoch(r: EpochResult) -> None:
        print(f"  epoch {r.epoch + 1}: loss {r.train_loss:.4f}  val acc {r.val_accuracy:.4f}  "
              f"({time.perf_counter() - t0:.1f}s)")

    result = train(model, data, cfg, on_epoch=on_epoch)
    test_acc = evaluate(model, *data.test, batch_size=cfg.batch_size, device=result.device)
    print(f"val acc {result.val_accuracy:.4f}  test acc {test_acc:.4f}  wall {time.perf_counter() - t0:.1f}s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hebbnas", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("show", help="per-module widths, shapes, MACs and params of a topology")
    s.add_argument("topology", help="a base topology name (googlenet, googlenet-tv) or a topology .json")
    s.add_argument("--input", default="3x224x224", help="input shape CxHxW (default 3x224x224)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("train", help="train a topology on a proxy data set")
    s.add_argument("topology")
    s.add_argument("--dataset", default="digits")
    s.add_argument("--data-dir", default=None)
    s.add_argument("--resolution", type=int, default=None)
    s.add_argument("--train-subset", type=int, default=None)
    s.add_argument("--epochs", type=int, default=None)
    s.add_argument("--lr", type=float, default=None)
    s.add_argument("--batch-size", type=int, default=None)
    s.add_argument("--optimizer", choices=("sgd", "adamw"), default=None)
    s.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    s.set_defaults(func=cmd_train)

    # @@ more commands register here (probe, report, search, export) @@
    _register_extra(sub)
    return p


def _register_extra(sub: argparse._SubParsersAction) -> None:
    """Commands whose implementation lives next to their module; imported lazily so `show` stays fast."""
    for modname in ("hebbnas.cli_probe", "hebbnas.cli_search", "hebbnas.cli_export"):
        try:
            mod = __import__(modname, fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name == modname:
                continue
            raise
        mod.register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HebbnasError as e:
        print(f"hebbnas {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `hebbnas report RUN | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"hebbnas {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`hebbnas train`: train one topology on a proxy data set; `--out DIR` keeps the model for export."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hebbnas.cli.common import add_data_options, add_out_option
from hebbnas import atomic
from hebbnas.errors import HebbnasError
from hebbnas.layout import METRICS, MODEL, TOPOLOGY
from hebbnas.topology import load_topology


HELP = "train a topology on a proxy data set"


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "train", help=HELP,
                       description="Train one topology (a name or topology.json, e.g. a run's best/topology.json) "
                       "with the default recipe; prints validation and test accuracy.")
    s.add_argument("topology", help="a base topology name (googlenet, googlenet-tv) or a topology .json")
    add_data_options(s, default="digits")
    s.add_argument("--resolution", type=int, default=None, help="training resolution in px (default: the data set's)")
    s.add_argument("--train-subset", type=int, default=None, help="use only this many training images")
    s.add_argument("--epochs", type=int, default=None, help="epochs (default 5)")
    s.add_argument("--lr", type=float, default=None, help="peak learning rate (default 2e-3)")
    s.add_argument("--batch-size", type=int, default=None, help="training mini-batch (default 32)")
    s.add_argument("--optimizer", choices=("sgd", "adamw"), default=None, help="adamw (default) or sgd")
    s.add_argument("--device", default=None, help="auto (default: CUDA when present), cpu or cuda")
    s.add_argument("--seed", type=int, default=0, help="seeds the data split, initialisation and order (default 0)")
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    s.add_argument("--compile", action="store_true", help="torch.compile the training forward: minutes of compiling "
                   "once, faster epochs after (pays off for long runs; see docs/benchmarks.md)")
    add_out_option(s, f"folder to save {MODEL}, {TOPOLOGY} and {METRICS} in (then: hebbnas export DIR)")
    s.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from hebbnas.data import load_dataset
    from hebbnas.pipeline import check_threads
    from hebbnas.runfolder import check_out_folder
    from hebbnas.progress_bar import wanted
    from hebbnas.model import build, inference_state_dict
    from hebbnas.train import EpochResult, TrainConfig, evaluate, train

    from hebbnas.topology import min_input_size

    t = load_topology(args.topology)
    out = Path(args.out) if args.out else None
    if out is not None:
        check_out_folder(out)  # before training, not after
    if check_threads(args.threads):
        torch.set_num_threads(args.threads)
    floor = min_input_size(t)
    if args.resolution is not None and args.resolution < floor:
        raise HebbnasError(f"--resolution {args.resolution} is below the {floor} px the stem of {t.name} needs")
    progress = wanted()  # bars on a terminal; plain lines in a log, a pipe or CI
    data = load_dataset(args.dataset, data_dir=args.data_dir, resolution=args.resolution,
                        channels=t.in_channels, seed=args.seed, train_subset=args.train_subset, progress=progress)
    t = t.with_classes(data.num_classes)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr), ("batch_size", args.batch_size),
                                    ("optimizer", args.optimizer), ("seed", args.seed), ("device", args.device),
                                    ("compile", args.compile or None))
                 if v is not None}
    cfg = TrainConfig(**overrides)
    model = build(t)
    deploy = (t.in_channels, 224, 224)
    print(f"training {t.name} on {data.name} at {data.resolution}x{data.resolution} "
          f"({len(data.train)} train / {len(data.val)} val / {len(data.test)} test), "
          f"{cfg.epochs} epochs, MACs at {'x'.join(map(str, deploy))} {t.macs(deploy):.4g}", flush=True)
    t0 = time.perf_counter()

    def on_epoch(r: EpochResult) -> None:
        print(f"  epoch {r.epoch + 1}: loss {r.train_loss:.4f}  val acc {r.val_accuracy:.4f}  "
              f"({time.perf_counter() - t0:.1f}s)", flush=True)

    result = train(model, data, cfg, on_epoch=on_epoch, progress=progress)
    test_acc = evaluate(model, *data.test, batch_size=cfg.eval_batch_size, device=result.device, progress=progress,
                        desc="test")
    print(f"val acc {result.val_accuracy:.4f}  test acc {test_acc:.4f}  wall {time.perf_counter() - t0:.1f}s")
    if out is not None:
        metrics = {"val_acc": result.val_accuracy, "test_acc": test_acc, "macs": t.macs(deploy), "params": t.params(),
                   "input": list(deploy), "dataset": data.name, "resolution": data.resolution,
                   "mean": list(data.mean), "std": list(data.std), "epochs": result.epochs_run,
                   "train": cfg.to_dict(), "topology_hash": t.hash()}
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in inference_state_dict(model).items()}
        with atomic.replacing(out / MODEL) as tmp:
            torch.save({"topology": t.to_dict(), "state_dict": state, "metrics": metrics}, tmp)
        atomic.write_text(out / TOPOLOGY, t.to_json())
        atomic.write_text(out / METRICS, json.dumps(metrics, indent=2))
        print(f"wrote {out}/{MODEL}, {TOPOLOGY}, {METRICS}  (export: hebbnas export {out})")
    return 0

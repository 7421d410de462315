"""The zoo's units: one (proxy, topology, seed) training run, its data, its cache file and its record; the
seed network's probe; and the executor that trains units in parallel. What zoo.py and the studies that reuse
its units (converged.py, strategies.py, hebbian_v3.py, finals.py, ...) train with.

Moved here from zoo.py unchanged (issue 33): cache paths, recipe tags and records are the ones every cached
unit was written with.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.zoo_protocol import DATA_DIR, Candidate, Protocol, Proxy, base_topology


# ---------------------------------------------------------------------------------------------
# data, training, cache


_DATA: dict[tuple[int, int, int, int], Any] = {}


def dataset_for(p: Protocol, resolution: int, train_images: int, seed: int) -> Any:
    """Fashion-MNIST at `resolution`: `train_images` training images, `val_images` validation images,
    all test images; the subset and validation carve are seeded by `seed` (paired across candidates)."""
    from hebbnas.data import Split, load_dataset

    key = (resolution, train_images, seed, p.val_images)
    if key not in _DATA:
        _DATA.clear()  # one resolution at a time in memory
        vf = p.val_images / (train_images + p.val_images)
        d = load_dataset(p.dataset, data_dir=DATA_DIR, resolution=resolution, channels=p.deploy_input[0], seed=seed,
                         train_subset=train_images, val_fraction=vf)
        if p.test_images is not None:
            d = dataclasses.replace(d, test=Split(d.test.x[: p.test_images], d.test.y[: p.test_images]))
        _DATA[key] = d
    return _DATA[key]


def train_config(p: Protocol, proxy: Proxy, seed: int) -> Any:
    from hebbnas.train import TrainConfig

    return TrainConfig(epochs=proxy.epochs, batch_size=p.batch_size, optimizer="adamw", lr=p.lr,
                       weight_decay=p.weight_decay, warmup_epochs=min(p.warmup_epochs, proxy.epochs - 0.01),
                       seed=seed, device=p.device, augment=p.augment, channels_last=p.channels_last,
                       fused=p.fused, compile=p.compile)


LEGACY_RECIPE = {"augment": False, "channels_last": False, "fused": False, "compile": False, "curve": False}
"""How the committed 2-epoch zoo's units trained; a recipe that differs gets its own cache folder."""


def recipe_tag(p: Protocol) -> str:
    """'' for the committed zoo's recipe, else a short hash of everything a unit's training depends on."""
    fields = {k: getattr(p, k) for k in LEGACY_RECIPE}
    if fields == LEGACY_RECIPE:
        return ""
    recipe = {**fields, "lr": p.lr, "wd": p.weight_decay, "batch": p.batch_size, "warmup": p.warmup_epochs,
              "val": p.val_images, "test": p.test_images, "dataset": p.dataset, "device": p.device}
    import hashlib

    return "-" + hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:8]


def train_unit(p: Protocol, proxy: Proxy, topology: Any, seed: int, probe_to: Path | None = None,
               probe_train_images: int | None = None, weights_to: Path | None = None) -> dict[str, Any]:
    """Train the narrowed copy of `topology` on `proxy` with `seed`; validation and test accuracy once.
    With `probe_to`, the trained copy is then probed (every Inception input, on the first
    `probe_images` training images at `probe_resolution`) and the probe saved there (.npz); the images
    are those of the seed's `probe_train_images`-image training subset when given (the zoo's probe
    images: `Protocol.main.train_images` of the zoo), else of the unit's own. With `weights_to`, the
    trained copy's inference state dict is saved there."""
    import torch

    from hebbnas.data import Split
    from hebbnas.model import build
    from hebbnas.train import evaluate, resolve_device, train

    data = dataset_for(p, proxy.resolution, proxy.train_images, seed)
    small = topology if proxy.width == 1 else topology.narrowed(proxy.width)
    torch.manual_seed(seed)
    model = build(small)
    # `train` evaluates on the validation split every epoch: the whole split when the learning curve is
    # recorded (its last point is the unit's validation accuracy), else a few images, evaluated once after
    quick = data if p.curve else dataclasses.replace(data, val=Split(data.val.x[:32], data.val.y[:32]))
    cfg = train_config(p, proxy, seed)
    t0 = time.perf_counter()
    result = train(model, quick, cfg)
    t1 = time.perf_counter()
    dev = resolve_device(p.device)
    val_acc = result.val_accuracy if p.curve else evaluate(model, data.val.x, data.val.y, 256, dev)
    test_acc = evaluate(model, data.test.x, data.test.y, 256, dev)
    t2 = time.perf_counter()
    if probe_to is not None:
        from hebbnas.pipeline import probe_network
        from hebbnas.probe import save_probe

        src = data if probe_train_images in (None, proxy.train_images) else dataset_for(
            p, proxy.resolution, probe_train_images, seed)
        x = src.train.x[: p.probe_images]
        if x.shape[-1] != p.probe_resolution:
            x = torch.nn.functional.interpolate(x, size=(p.probe_resolution,) * 2, mode="bilinear",
                                                align_corners=False)
        save_probe(probe_network(small, model, x.contiguous()), probe_to)
    if weights_to is not None:
        from hebbnas.model import inference_state_dict

        torch.save(inference_state_dict(model), weights_to)
    curve = {"val_curve": [round(r.val_accuracy, 6) for r in result.history],
             "train_curve": [round(r.train_accuracy, 6) for r in result.history],
             "epoch_s": [round(r.seconds, 2) for r in result.history]} if p.curve else {}
    return {
        "seed": seed, "proxy": proxy.name, "proxy_label": proxy.label(), "width": proxy.width,
        "resolution": proxy.resolution, "lr": p.lr, "weight_decay": p.weight_decay, "batch_size": p.batch_size,
        "epochs": proxy.epochs, "train_images": len(data.train), "val_images": len(data.val),
        "test_images": len(data.test), "val_acc": float(val_acc), "test_acc": float(test_acc),
        "macs": topology.macs(p.deploy_input), "params": topology.params(),
        "proxy_macs": small.macs((p.deploy_input[0], proxy.resolution, proxy.resolution)),
        "proxy_params": small.params(), "train_s": round(t1 - t0, 2), "eval_s": round(t2 - t1, 2),
        "device": result.device, "topology_hash": topology.hash(),
        "final_train_acc": result.history[-1].train_accuracy if result.history else None,
        **({} if not recipe_tag(p) else {"channels_last": result.channels_last, "fused": p.fused,
                                          "compile": p.compile, "augment": p.augment}),
        **curve,
    }


def machine() -> str:
    """Where a unit trained: the CPU model, the host name and the boot (units compared should share it)."""
    import platform

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:  # one boot of one machine: units with the same boot id surely trained on the same machine
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "?"
    return f"{model or platform.processor() or '?'} on {platform.node()}, boot {boot}"


def code_commit() -> str:
    """The short commit of the code running this script (a worktree's own HEAD), or 'unknown'."""
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def unit_path(cache: Path, proxy: Proxy, topology: Any, seed: int, recipe: str = "") -> Path:
    tag = f"{proxy.name}-w{proxy.width:g}-r{proxy.resolution}-e{proxy.epochs}-n{proxy.train_images}{recipe}"
    return cache / tag / f"{topology.hash()}-s{seed}.json"


def cached_unit(p: Protocol, cache: Path, proxy: Proxy, topology: Any, seed: int, threads: int = 0,
                probe: bool = False, probe_train_images: int | None = None) -> dict[str, Any]:
    """The unit's record: read from the cache, or trained and written atomically (a killed run loses
    only the units in flight). Runs in a worker process when the zoo trains units in parallel.

    With `probe`, the record's `probe_path` names the trained copy's probe (`<unit>.probe.npz`, or
    `<unit>.probe-n<N>.npz` when probed on the images of the seed's N-image training subset,
    `probe_train_images`) and `weights_path` its weights (`<unit>.weights.pt`); a cached unit without
    that probe is trained again (training is deterministic: the same record, now with a probe)."""
    path = unit_path(cache, proxy, topology, seed, recipe_tag(p))
    other = probe_train_images not in (None, proxy.train_images)
    probe_path = path.with_suffix(f".probe-n{probe_train_images}.npz" if other else ".probe.npz")
    weights_path = path.with_suffix(".weights.pt")
    extra = {"probe_path": str(probe_path), "weights_path": str(weights_path)} if probe else {}
    if path.exists() and (not probe or probe_path.exists()):
        rec = json.loads(path.read_text())
        return {**rec, **extra}
    if threads:
        import torch

        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_probe = probe_path.with_suffix(f".{os.getpid()}.tmp.npz") if probe else None
    tmp_weights = weights_path.with_suffix(f".{os.getpid()}.tmp.pt") if probe else None
    rec = train_unit(p, proxy, topology, seed, probe_to=tmp_probe, probe_train_images=probe_train_images,
                     weights_to=tmp_weights)
    if tmp_probe is not None and tmp_weights is not None:
        tmp_weights.replace(weights_path)
        tmp_probe.replace(probe_path)
    rec["recipe"] = {"val_images": p.val_images, "dataset": p.dataset, "lr": p.lr, "wd": p.weight_decay}
    rec["unit_s"] = round(time.perf_counter() - t0, 1)
    rec["commit"] = code_commit()  # the code that trained this unit (issue 32: every newly cached unit)
    rec["machine"] = machine()  # and the machine: the same code rounds differently on another CPU
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(rec, indent=1))
    tmp.replace(path)
    rec["trained_now"] = True
    return {**rec, **extra}


def unit_row(cand: Candidate, rec: Mapping[str, Any], phase: str, proxy_label: str) -> dict[str, Any]:
    """One CSV row: the candidate's identity, then the unit's record."""
    row = {"candidate": cand.name, "kind": cand.kind,
           "policy": json.dumps(cand.policy, sort_keys=True) if cand.policy is not None else "",
           "phase": phase, **{k: v for k, v in rec.items() if k != "trained_now"}}
    row["proxy"] = proxy_label
    return row


def probe_seed(p: Protocol, cache: Path, log: Any = print) -> tuple[Any, Any, dict[str, Any]]:
    """Train the hebbian seed (the base fitted to the budget, narrowed like the main proxy) and probe it.

    The probe is cached (`probe.pt` in the cache) so the derivations are identical on resume.
    """
    import torch

    from hebbnas.derive import fit
    from hebbnas.model import build
    from hebbnas.probe import ProbeResult, probe_model
    from hebbnas.train import train

    full = fit(base_topology(), p.budget, p.deploy_input, multiple=p.multiple, name="seed")
    probed = full.narrowed(p.main.width, name="seed-narrow")
    path = cache / f"probe-{probed.hash()}-e{p.seed_epochs}-r{p.probe_resolution}-n{p.main.train_images}.pt"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        probe = torch.load(path, weights_only=False)
        if isinstance(probe, ProbeResult):
            return probed, probe, json.loads(meta_path.read_text())
    seed = p.seeds[0]
    data = dataset_for(p, p.main.resolution, p.main.train_images, seed)
    torch.manual_seed(seed)
    model = build(probed)
    t0 = time.perf_counter()
    res = train(model, data, train_config(p, dataclasses.replace(p.main, epochs=p.seed_epochs), seed))
    t1 = time.perf_counter()
    x = data.train.x[: p.probe_images]
    if x.shape[-1] != p.probe_resolution:
        x = torch.nn.functional.interpolate(x, size=(p.probe_resolution,) * 2, mode="bilinear", align_corners=False)
    dev = next(model.parameters()).device
    probe = probe_model(model, (x[i:i + 100].to(dev) for i in range(0, x.shape[0], 100)), probed.module_names,
                        topology_hash=probed.hash())
    meta = {"seed_val_acc": res.val_accuracy, "seed_train_s": round(t1 - t0, 1),
            "probe_s": round(time.perf_counter() - t1, 1), "seed_params": probed.params(),
            "probe_resolution": p.probe_resolution, "probe_images": int(x.shape[0]),
            "maps": {n: list(probe.modules[n].map_size) for n in probed.module_names}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(probe, path)
    meta_path.write_text(json.dumps(meta, indent=1))
    log(f"  seed {probed.name}: val {res.val_accuracy:.4f} after {p.seed_epochs} ep ({meta['seed_train_s']} s), "
        f"probed in {meta['probe_s']} s, maps {meta['maps']}")
    return probed, probe, meta


@dataclass(frozen=True, eq=False)
class Unit:
    """One (phase, proxy, candidate, seed) training run; `label` names the proxy in the CSVs."""

    phase: str
    label: str
    proxy: Proxy
    cand: Candidate
    seed: int

    @property
    def key(self) -> tuple[str, str, str, int]:
        return self.phase, self.label, self.cand.name, self.seed


class _Inline:
    """The executor interface, run in this process (one job)."""

    def submit(self, fn: Any, *args: Any) -> Any:
        from concurrent.futures import Future

        f: Future = Future()
        try:
            f.set_result(fn(*args))
        except BaseException as e:  # noqa: BLE001 - handed back through the future like a pool would
            f.set_exception(e)
        return f

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def executor(jobs: int) -> Any:
    """`jobs` spawned worker processes (torch is not fork-safe once used), or this process for one."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) if jobs > 1 else _Inline()

"""Builders the tests share: fabricated run folders and models (export, report page, progress), a planted
derivation (report), image folders (own data). Plain functions, imported as `tests.builders`."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from hebbnas.derive import BRANCH_OF_SCALE, ClusterInfo, Derivation, ModuleDerivation, Policy
from hebbnas.model import GoogLeNet, build, inference_state_dict
from hebbnas.probe import ModuleStats, ProbeResult
from hebbnas.topology import StemSpec, Topology, get_topology

# ---------------------------------------------------------------------------------------------
# run folders and models (tests/test_export.py, test_onnx.py, test_progress.py)

PROXY = 32
DEPLOY = (3, 224, 224)
MEAN, STD = [0.1, 0.2, 0.3], [0.9, 0.8, 0.7]


# ---------------------------------------------------------------------------------------------
# fabricated run folders


def tiny_topology() -> Topology:
    """The full GoogLeNet layout (9 modules, 2 inner pools) with widths of 8 so exports take seconds."""
    t = get_topology("googlenet")
    t = t.with_widths({m.name: (8, 4, 8, 4, 8, 8) for m in t.modules}, name="tiny")
    return dataclasses.replace(t, stem=StemSpec(8, 8, 16), num_classes=10)


def trained_like(t: Topology, seed: int) -> GoogLeNet:
    """A model whose BN running stats and affine params are far from identity, so eval mode really matters."""
    torch.manual_seed(seed)
    m = build(t)  # with aux heads, as the search trains it
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m.forward_with_aux(torch.randn(8, 3, PROXY, PROXY) * 2 + 0.5)
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0.0, 0.2)
        m.fc.weight.normal_(0.0, 1.0)  # logits of order 1, so a 1e-5 tolerance is meaningful
    return m.eval()


def metrics_for(t: Topology, trial_id: str, val_acc: float) -> dict[str, Any]:
    return {"val_acc": val_acc, "test_acc": val_acc - 0.01, "macs": t.macs(DEPLOY), "params": t.params(),
            "input": list(DEPLOY), "dataset": "digits", "resolution": PROXY, "mean": MEAN, "std": STD,
            "trial_id": trial_id}


def write_checkpoint(path: Path, model: GoogLeNet, metrics: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"topology": model.topology.to_dict(), "state_dict": inference_state_dict(model),
                "metrics": metrics}, path)


def make_run(root: Path, name: str, *, best: bool = True,
             trials: tuple[tuple[Any, ...], ...] = ()) -> tuple[Path, dict[str, GoogLeNet]]:
    """A run folder as the search writes it; ``trials`` rows are (trial_id, status, val_acc, has_ckpt[,
    best_val_acc]): val_acc is the last epoch's (what the checkpoint holds), best_val_acc any epoch's."""
    run = root / "runs" / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("deploy_input: 3x224x224\nproxy:\n  dataset: digits\n  resolution: 32\n")
    t = tiny_topology()
    models: dict[str, GoogLeNet] = {}
    rows = ["trial_id,status,val_acc,best_val_acc,macs"]
    for i, (tid, status, acc, has_ckpt, *rest) in enumerate(trials):
        models[tid] = trained_like(t, seed=100 + i)
        rows.append(f"{tid},{status},{acc},{rest[0] if rest else acc},{t.macs(DEPLOY)}")
        if has_ckpt:
            write_checkpoint(run / "trials" / tid / "checkpoint.pt", models[tid], metrics_for(t, tid, acc))
    if trials:
        (run / "trials.csv").write_text("\n".join(rows) + "\n")
    if best:
        models["best"] = trained_like(t, seed=0)
        write_checkpoint(run / "best" / "model.pt", models["best"], metrics_for(t, "t_best", 0.9))
        (run / "best" / "topology.json").write_text(t.to_json())
        (run / "best" / "metrics.json").write_text(json.dumps(metrics_for(t, "t_best", 0.9)))
    return run, models


# ---------------------------------------------------------------------------------------------
# a planted derivation (tests/test_report.py, test_report_html.py)

BUDGET = 1.2e9
# module, clusters, map size, scale measured, dead channels
SPECS = (
    ("inception3a", 12, (8, 8), True, ()),
    ("inception4c", 40, (4, 4), True, ()),
    ("inception5b", 20, (2, 2), False, (5, 6)),
)


def planted(c: int, k: int, dead: tuple[int, ...], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A correlation matrix with k planted blocks of shuffled channels (dead rows NaN) and its labels."""
    labels = rng.permutation(np.arange(c) % k)
    same = labels[:, None] == labels[None, :]
    noise = rng.normal(0.0, 0.05, (c, c))
    r = np.where(same, 0.75, 0.12) + (noise + noise.T) / 2
    r = np.clip(r, -1.0, 1.0)
    np.fill_diagonal(r, 1.0)
    r[list(dead), :] = np.nan
    r[:, list(dead)] = np.nan
    return r, labels


def make_derivation(rng: np.random.Generator) -> tuple[Derivation, dict[str, np.ndarray]]:
    base = get_topology("googlenet")
    cin = base.in_channels_of()
    modules, corrs, widths = [], {}, {}
    for name, k, hw, measured, dead in SPECS:
        c = cin[name]
        r, labels = planted(c, k, dead, rng)
        corrs[name] = r
        clusters = []
        for lab in range(k):
            members = tuple(int(i) for i in np.flatnonzero(labels == lab) if i not in dead)
            scale = int(rng.choice([1, 3, 5])) if measured else 1
            decay = (float(rng.uniform(0, 1)), float(rng.uniform(0, 1))) if measured else (math.nan, math.nan)
            branch = BRANCH_OF_SCALE[scale] if measured else "branch1/2/3 (split kept)"
            clusters.append(ClusterInfo(lab, members, 0.7, decay, scale, branch))
        for j, ch in enumerate(dead):  # as cluster_correlation does: each dead channel is a singleton
            clusters.append(ClusterInfo(k + j, (ch,), 1.0, (math.nan, math.nan), 1, "branch1"))
        n1, n3, n5 = (sum(cl.scale == s for cl in clusters) for s in (1, 3, 5))
        raw = (float(n1), 0.75 * n3, float(n3), 0.75 * n5, float(n5), 0.15 * k)
        note = "" if measured else f"spatial scale not measurable at 2x2: branch split of {name} kept"
        modules.append(ModuleDerivation(name, c, hw, dead, measured, tuple(clusters), raw, note))
        widths[name] = tuple(max(1, round(8 * w)) for w in raw)
    derived = base.with_widths(widths, name="googlenet-hebbian")
    return Derivation(base, Policy(threshold=0.5), tuple(modules), derived), corrs


# ---------------------------------------------------------------------------------------------
# image folders (tests/test_imagefolder.py, test_cli.py)


def image(kind: int, i: int, size: tuple[int, int], mode: str) -> Image.Image:
    """Class 0: bright left half, class 1: bright top half, class 2: dark with a centre spot; noisy."""
    w, h = size
    rng = np.random.default_rng(1000 * kind + i)
    a = rng.integers(0, 60, (h, w)).astype(np.uint8)
    if kind == 0:
        a[:, : w // 2] += 180
    elif kind == 1:
        a[: h // 2] += 180
    else:
        a[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] += 190
    im = Image.fromarray(a, "L")
    return im.convert(mode) if mode != "L" else im


def make_folder(root: Path, per_class: int = 6, classes: tuple[str, ...] = ("left", "top", "spot"),
                rgb: bool = True) -> Path:
    """Classes with mixed sizes, grayscale and RGB (when `rgb`), PNG and JPEG."""
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size = (20 + 7 * i, 16 + 5 * (i % 3))
            mode = "RGB" if rgb and i % 2 else "L"
            ext = "jpg" if i % 3 == 2 else "png"
            image(k, i, size, mode).save(root / c / f"{i}.{ext}")
    return root


# ---------------------------------------------------------------------------------------------
# planted probes with known spatial scales (tests/test_derive.py, test_derive_split.py)

# (n scale-1 groups, n scale-3 groups, n scale-5 groups) planted at every module input
PLAN = {"inception3a": (6, 3, 1), "inception3b": (2, 6, 2), "inception4a": (4, 4, 4)}
GROUP = 4  # channels per planted group
DECAY = {1: (0.05, 0.0), 3: (0.6, 0.2), 5: (0.8, 0.6)}  # ring-1 / ring-2 correlation relative to ring 0


def small_topology() -> Topology:
    base = get_topology("googlenet")
    mods = []
    widths = {"inception3a": 48, "inception3b": 64}
    for m in base.modules[:3]:
        out = widths.get(m.name, 32)
        mods.append(m.with_widths((out // 4, 8, out // 4, 8, out // 4, out // 4)))
    stem = dataclasses.replace(base.stem, conv3=48)
    return dataclasses.replace(base, modules=tuple(mods), stem=stem, pools=(), aux_after=(), name="small",
                               num_classes=10)


def planted_stats(c: int, plan: tuple[int, int, int], rng: np.random.Generator, map_size: int = 8) -> ModuleStats:
    scales = [1] * plan[0] + [3] * plan[1] + [5] * plan[2]
    corr = np.eye(c)
    rings = {1: np.zeros((c, c)), 2: np.zeros((c, c))}
    for g, s in enumerate(scales):
        idx = np.arange(g * GROUP, (g + 1) * GROUP)
        r = rng.uniform(0.6, 0.8)
        block = np.full((GROUP, GROUP), r)
        np.fill_diagonal(block, 1.0)
        corr[np.ix_(idx, idx)] = block
        for d in (1, 2):
            rings[d][np.ix_(idx, idx)] = block * DECAY[s][d - 1]
    # the remaining channels are independent noise (singletons, scale 1) except the last, which is dead
    dead = np.zeros(c, dtype=bool)
    dead[-1] = True
    corr[-1, :] = corr[:, -1] = 0.0
    corr[-1, -1] = 1.0
    for d in (1, 2):
        rest = np.arange(len(scales) * GROUP, c - 1)
        rings[d][rest, rest] = 0.02
    # like the probe: a ring that does not fit in the map is not measured
    ring_of = {d: (rings[d] if map_size > d else None) for d in (1, 2)}
    return ModuleStats(n=1000, n_images=100, map_size=(map_size, map_size), mean=np.zeros(c), var=np.where(dead, 0, 1.0),
                       corr=corr, dead=dead, corr_ring=ring_of, ring_pairs={d: int(map_size > d) for d in (1, 2)})


def planted_probe(t: Topology, map_size: int = 8) -> ProbeResult:
    rng = np.random.default_rng(0)
    chans = t.in_channels_of()
    return ProbeResult({n: planted_stats(chans[n], PLAN[n], rng, map_size) for n in t.module_names}, t.hash())

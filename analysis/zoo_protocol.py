"""The zoo's protocol and candidates: what every unit of the zoo (and of the studies that reuse its units:
converged.py, strategies.py, hebbian_v3.py, finals.py, final_fidelity.py, scores.py) trains, and which
networks it trains. Values only; the units module trains them, zoo.py is the script.

Moved here from zoo.py unchanged (issue 33): the values, names and defaults are the ones every cached unit
and read-out was made with.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "analysis" / "results"
"""The zoo's results folder: its CSVs, read-out and unit cache (zoo-cache/), which later studies read."""
DATA_DIR = os.environ.get("HEBBNAS_FASHION_DIR", "/usr/share/datasets/fashion-mnist")
WIDTH_FIELDS = ("b1", "b2_red", "b2", "b3_red", "b3", "b4")


# ---------------------------------------------------------------------------------------------
# protocol


@dataclass(frozen=True)
class Proxy:
    """What one unit trains: a narrowed copy (`width`) at `resolution`, `epochs` over `train_images`."""

    name: str
    width: float
    resolution: int
    epochs: int
    train_images: int

    def label(self) -> str:
        w = "full" if self.width == 1 else (f"1/{round(1 / self.width)}" if 1 / self.width == round(1 / self.width)
                                            else f"{self.width:g}")
        return f"{w} width @{self.resolution}px, {self.epochs} ep, {self.train_images} img"


@dataclass(frozen=True)
class Protocol:
    """The whole zoo: budget, candidates, the fixed recipe, the proxies and the seeds."""

    dataset: str = "fashion-mnist"
    budget: float = 3e8
    deploy_input: tuple[int, int, int] = (3, 224, 224)
    multiple: int = 8
    n_random: int = 24
    random_seed: int = 11
    seeds: tuple[int, ...] = (0, 1)
    # extra seeds for the candidates the questions are about (paper and every hebbian policy): their
    # paired differences get 2 + len(focal_seeds) seeds; the random population keeps `seeds`
    focal_seeds: tuple[int, ...] = (2, 3, 4, 5)
    # further seeds for single focal candidates, (name, n): that candidate gets every seed below n; a pair
    # whose seed-wise differences scatter more needs more seeds for the same interval
    grow: tuple[tuple[str, int], ...] = ()
    main: Proxy = Proxy("width", 0.25, 128, 2, 5000)
    val_images: int = 2000
    test_images: int | None = None  # None: all
    lr: float = 2e-3
    weight_decay: float = 0.05
    batch_size: int = 32
    warmup_epochs: float = 0.3
    # the hebbian seed network: the base fitted to the budget, narrowed like the main proxy
    seed_epochs: int = 2
    probe_resolution: int = 128  # 16/8/4 maps: every module >= 4x4 (at 112 the 3x3 pool leaves inception5 3x3)
    probe_images: int = 600
    # proxy fidelity, on a subset of the probe-independent candidates (paper, then randoms), 1 seed:
    # today's proxy and a cheaper width proxy, each ranked against the main run (mean of its seeds)
    fidelity_candidates: int = 25
    fidelity_seed: int = 0
    fidelity_seeds: tuple[int, ...] = (0, 1)  # the cheap width proxy's seeds (kept when `seeds` grows)
    today: Proxy = Proxy("today", 1.0, 32, 2, 2000)
    cheap: Proxy = Proxy("width", 0.25, 112, 2, 2000)  # the zoo v1 main proxy (2 epochs on 2,000 images at 112 px)
    device: str = "cpu"
    # how a unit trains beyond the recipe above (TrainConfig fields). The committed 2-epoch zoo trained
    # contiguous, with torch's per-parameter AdamW loop, uncompiled, without augmentation; those values
    # stay its defaults so its cached units stay valid and reproduce. channels_last None: measured
    augment: bool = False
    channels_last: bool | None = False
    fused: bool = False
    compile: bool = False
    curve: bool = False  # validation accuracy on the whole validation split after every epoch
    policies: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = (
        ("default", ()),
        ("split", (("allocation", "split"),)),
        ("split-partial", (("allocation", "split"), ("partial", True))),
        ("partial", (("partial", True),)),
        ("threshold0.3", (("threshold", 0.3),)),
        ("threshold0.7", (("threshold", 0.7),)),
        ("exponent0.5", (("width_exponent", 0.5),)),
        ("complete-scale0.2", (("method", "complete"), ("scale_cut", 0.2))),
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def cpu_protocol() -> Protocol:
    return Protocol()


def smoke_protocol() -> Protocol:
    return Protocol(
        dataset="digits", n_random=3, seeds=(0, 1), focal_seeds=(2,), main=Proxy("width", 0.125, 32, 1, 64),
        val_images=64, test_images=64, seed_epochs=1, probe_resolution=64, probe_images=32, fidelity_candidates=4,
        today=Proxy("today", 0.25, 32, 1, 64), cheap=Proxy("width", 0.125, 32, 1, 48),
        policies=(("default", ()), ("split", (("allocation", "split"),))),
    )


def full_protocol() -> Protocol:
    return Protocol(
        n_random=48, seeds=(0, 1, 2), focal_seeds=(3, 4, 5), fidelity_seeds=(0, 1, 2), main=Proxy("width", 0.25, 128, 10, 54000), val_images=6000,
        seed_epochs=5, probe_images=2000, fidelity_candidates=24, device="auto",
        today=Proxy("today", 1.0, 32, 10, 54000), cheap=Proxy("width", 0.25, 112, 2, 10000),
    )


# ---------------------------------------------------------------------------------------------
# candidates


@dataclass(frozen=True)
class Candidate:
    name: str
    kind: str  # random / paper / hebbian
    topology: Any  # hebbnas.topology.Topology, fitted to the budget
    policy: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def scaled_topology(t: Any, multipliers: Mapping[str, float]) -> Any:
    """The random strategy's proportions: each non-zero width times its multiplier (at least 1)."""
    from hebbnas.strategies.random import scaled_topology as impl

    return impl(t, multipliers)


def random_multipliers(base: Any, rng: np.random.Generator, low: float = 0.25, high: float = 2.0) -> dict[str, float]:
    """One draw of the random sampler: per non-zero width, log-uniform in [low, high]."""
    keys = [f"{m.name}.{f}" for m in base.modules for f, w in zip(WIDTH_FIELDS, m.widths) if w]
    return {k: float(math.exp(rng.uniform(math.log(low), math.log(high)))) for k in keys}


def base_topology(num_classes: int = 10) -> Any:
    from hebbnas.topology import get_topology

    return get_topology("googlenet").with_classes(num_classes)


def static_candidates(p: Protocol) -> list[Candidate]:
    """The paper's widths and the random draws, all fitted to the budget."""
    from hebbnas.derive import fit

    base = base_topology()
    out = [Candidate("paper", "paper", fit(base, p.budget, p.deploy_input, multiple=p.multiple, name="paper"))]
    rng = np.random.default_rng(p.random_seed)
    for i in range(p.n_random):
        mult = random_multipliers(base, rng)
        name = f"random-{i:02d}"
        out.append(Candidate(name, "random", fit(scaled_topology(base, mult), p.budget, p.deploy_input,
                                                 multiple=p.multiple, name=name)))
    return out


def hebbian_candidates(p: Protocol, probed: Any, probe: Any) -> list[Candidate]:
    from hebbnas.derive import Policy, derive, fit

    out = []
    for name, knobs in p.policies:
        policy = Policy(**dict(knobs))
        d = derive(probed, probe, policy, name=f"hebbian-{name}")
        t = fit(d.topology, p.budget, p.deploy_input, multiple=p.multiple, name=f"hebbian-{name}")
        clusters = {m.name: m.num_clusters for m in d.modules}
        out.append(Candidate(f"hebbian-{name}", "hebbian", t, dataclasses.asdict(policy), {"clusters": clusters}))
    return out

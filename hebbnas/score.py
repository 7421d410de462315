"""Training-free scores of a candidate: rank networks before training them.

Every score reads a few batches through the candidate's network (untrained, its BatchNorm statistics
calibrated on those batches; or, as a variant, after a few training steps). The correlation-based
scores are built on the probe's streaming statistics (`hebbnas.probe.probe_model`), not a second
engine. Higher is predicted better for every score.

- ``hebb_erank``: the project's own. Per Inception input, the effective rank of the channel
  correlation matrix (exp of the entropy of its normalised eigenvalues: how many independent
  directions the module receives), summed in log over modules.
- ``meco``: MeCo (NeurIPS 2023): the minimum eigenvalue of the Pearson correlation of channels over
  the positions of ONE image's feature map, summed over layers; here the layers are the Inception
  inputs, measured by the probe on a single image.
- ``naswot``: NASWOT (Mellor et al. 2021): binary ReLU codes of every unit for each image of a batch,
  K = c c^T + (1 - c)(1 - c)^T, score log|det K|; the codes are taken after every conv's ReLU.
- ``params``, ``macs``: the baselines every score must beat (within one budget MACs say nothing).

Width-debiased variants (issue 23: hebb_erank and naswot grow with width, so among random allocations
at one budget they mostly count units, which the parameter count already does):

- ``hebb_erank_w``: per Inception input, log of the effective rank over the channel count (the share of
  independent directions), summed over modules.
- ``hebb_erank_k``: per Inception input, the mean log effective rank of `SAMPLE_CHANNELS` channels
  drawn at random (`SAMPLE_DRAWS` seeded draws), summed over modules: MeCo's corrected form of
  sampling a fixed number of channels per layer.
- ``naswot_k``: NASWOT on `SAMPLE_UNITS` ReLU units drawn per conv layer (seeded) instead of all.

Pure: values in, values out; the caller decides what the images are and where the numbers go.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from hebbnas.errors import HebbnasError
from hebbnas.probe import ProbeResult, probe_model
from hebbnas.topology import DEFAULT_INPUT, Topology

SCORES: tuple[str, ...] = ("hebb_erank", "hebb_erank_w", "hebb_erank_k", "meco", "naswot", "naswot_k", "params",
                           "macs")
"""Every score `score_candidate` can compute; higher is predicted better."""
SAMPLE_CHANNELS = 8
"""Channels per module the sampled effective rank looks at (fewer than any module of a 1/4-width proxy has)."""
SAMPLE_DRAWS = 16
SAMPLE_UNITS = 256
"""ReLU units per conv layer the width-debiased NASWOT codes use."""


@dataclass(frozen=True)
class Scores:
    """A candidate's scores and what each cost (seconds, including the shared forward passes)."""

    values: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)


def effective_rank(corr: np.ndarray) -> float:
    """exp(entropy) of the normalised eigenvalues of a correlation matrix (1 = one direction, C = white).

    Dead channels (zero rows) contribute zero eigenvalues and so nothing.
    """
    ev = np.clip(np.linalg.eigvalsh(np.asarray(corr, dtype=np.float64)), 0.0, None)
    total = ev.sum()
    if total <= 0:
        return 1.0
    p = ev / total
    p = p[p > 0]  # after the division: a denormal eigenvalue over the total underflows to 0 (log 0 = -inf)
    return float(math.exp(-(p * np.log(p)).sum()))


def hebb_erank(probe: ProbeResult) -> float:
    """Sum over modules of log effective rank of the probed input correlation."""
    return float(sum(math.log(effective_rank(m.corr)) for m in probe.modules.values()))


def hebb_erank_width(probe: ProbeResult) -> float:
    """Sum over modules of log(effective rank / channels): the share of independent directions."""
    return float(sum(math.log(effective_rank(m.corr) / m.channels) for m in probe.modules.values()))


def hebb_erank_sampled(probe: ProbeResult, k: int = SAMPLE_CHANNELS, draws: int = SAMPLE_DRAWS,
                       seed: int = 0) -> float:
    """Sum over modules of the mean log effective rank of `k` channels drawn at random (`draws` times):
    the same number of channels for every width."""
    rng = np.random.default_rng(seed)
    total = 0.0
    for m in probe.modules.values():
        kk = min(k, m.channels)
        total += float(np.mean([math.log(effective_rank(m.corr[np.ix_(idx, idx)]))
                                for idx in (rng.choice(m.channels, kk, replace=False) for _ in range(draws))]))
    return total


def min_eigenvalue_sum(probe: ProbeResult) -> float:
    """MeCo's aggregate: the sum over modules of the smallest correlation eigenvalue (dead channels
    excluded, since a zero row is a constant feature, not a correlation)."""
    total = 0.0
    for m in probe.modules.values():
        live = ~m.dead
        if live.sum() == 0:
            continue
        total += float(np.linalg.eigvalsh(m.corr[np.ix_(live, live)])[0])
    return total


def naswot(model: nn.Module, x: torch.Tensor, units: int | None = None, seed: int = 0) -> float:
    """log|det K| of the ReLU-code kernel over the images of `x` (N, C, H, W); with `units`, only that
    many units drawn at random per conv layer (seeded) enter the codes, whatever the layer's width."""
    from hebbnas.model import BasicConv2d

    n = x.shape[0]
    k = torch.zeros(n, n, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)

    def hook(_module: nn.Module, _args: tuple, out: torch.Tensor) -> None:
        c = (out.detach() > 0).reshape(n, -1)  # (N, units) binary codes
        if units is not None and c.shape[1] > units:
            c = c[:, torch.randperm(c.shape[1], generator=gen)[:units].to(c.device)]
        c = c.to(torch.float64).cpu()
        k.add_(c @ c.T).add_((1 - c) @ (1 - c).T)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, BasicConv2d)]
    try:
        with torch.no_grad():
            model.eval()
            model(x)
    finally:
        for h in handles:
            h.remove()
    sign, logdet = torch.linalg.slogdet(k)
    return float(logdet) if float(sign) > 0 else float("-inf")


def calibrate_batchnorm(model: nn.Module, batches: Sequence[torch.Tensor]) -> None:
    """Set every BatchNorm's running statistics to the average over `batches` (no weights change).

    An untrained network's running statistics are the identity (mean 0, var 1), which leaves its
    activations unnormalised in eval mode; calibrated, it sees its inputs as training would.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    was = model.training
    model.train()
    try:
        with torch.no_grad():
            for xb in batches:
                model(xb)
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        model.train(was)


def score_model(model: nn.Module, topology: Topology, x: torch.Tensor, *,
                which: Sequence[str] = SCORES,
                input_shape: tuple[int, int, int] = DEFAULT_INPUT) -> Scores:
    """Scores of a built model (weights as they are) on the images `x` (N, C, H, W).

    `topology` is what the budget counts (params and MACs at `input_shape`); `model` may be its
    narrowed proxy. BatchNorm is calibrated on `x` first.
    """
    unknown = [w for w in which if w not in SCORES]
    if unknown:
        raise HebbnasError(f"unknown score(s) {unknown} (known: {', '.join(SCORES)})")
    dev = next(model.parameters()).device
    x = x.to(dev)
    batches = [x[i:i + 64] for i in range(0, len(x), 64)]
    values: dict[str, float] = {}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    calibrate_batchnorm(model, batches)
    calibration = time.perf_counter() - t0
    names = [m.name for m in topology.modules]

    def timed(name: str, fn: Callable[[], float]) -> None:
        t = time.perf_counter()
        values[name] = fn()
        seconds[name] = time.perf_counter() - t + calibration

    probe: list[ProbeResult] = []  # one probe serves the three effective-rank scores

    def probed() -> ProbeResult:
        if not probe:
            probe.append(probe_model(model, batches, names, device=dev, rings=False))
        return probe[0]

    if "hebb_erank" in which:
        timed("hebb_erank", lambda: hebb_erank(probed()))
    if "hebb_erank_w" in which:
        timed("hebb_erank_w", lambda: hebb_erank_width(probed()))
    if "hebb_erank_k" in which:
        timed("hebb_erank_k", lambda: hebb_erank_sampled(probed()))
    if "meco" in which:
        timed("meco", lambda: min_eigenvalue_sum(probe_model(model, [x[:1]], names, device=dev, rings=False)))
    if "naswot" in which:
        timed("naswot", lambda: naswot(model, x[:64]))
    if "naswot_k" in which:
        timed("naswot_k", lambda: naswot(model, x[:64], units=SAMPLE_UNITS))
    if "params" in which:
        timed("params", lambda: float(topology.params()))
    if "macs" in which:
        timed("macs", lambda: float(topology.macs(input_shape)))
    return Scores(values, seconds)


def score_candidate(topology: Topology, x: torch.Tensor, *, width: float = 1.0, seed: int = 0,
                    which: Sequence[str] = SCORES, input_shape: tuple[int, int, int] = DEFAULT_INPUT,
                    train_steps: int = 0, y: torch.Tensor | None = None) -> Scores:
    """Build the candidate (its `width` proxy), optionally train it `train_steps` steps on (x, y), score it.

    Seeded: the same candidate and images give the same scores.
    """
    from hebbnas.model import build
    from hebbnas.topology import proxy_network

    net = proxy_network(topology, width)
    torch.manual_seed(seed)
    model = build(net, aux=False)
    if train_steps:
        if y is None:
            raise HebbnasError("briefly trained scores need labels")
        _brief_training(model, x, y, train_steps, seed)
    return score_model(model, topology, x, which=which, input_shape=input_shape)


def _brief_training(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int) -> None:
    """A few AdamW steps on mini-batches of (x, y): the 'briefly trained' variant of the scores."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (min(32, len(x)),), generator=g)
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
    model.eval()

"""How a network runs fastest on this machine: its memory format, chosen by measuring it.

channels_last (NHWC) is usually faster for convolutions on CUDA, and on CPUs with oneDNN it often is
too, but not always: on the 2-core development machine it sped the zoo's proxy training step up 1.09x
and a full-width network at 32 px 1.26x, and evaluation 2.2-2.7x (analysis/bench_proxy.py). The answer
depends on the device, the thread count and the network's shapes, so it is measured, not assumed from
the device type: a few forward + backward passes of a copy of the model in each format, interleaved,
once per (device, threads, network, batch shape) per process. The copy keeps the caller's weights,
BatchNorm statistics and random state untouched, so measuring never changes what a run computes
beyond the format it picks. The latency measurement (`hebbnas.latency`) picks its format with the same
timing rule, `channels_last_wins`, on forward passes.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping

import torch
from torch import nn

MARGIN = 0.05
"""channels_last must be at least this much faster (time ratio below 1 - MARGIN) to be chosen: a tie
keeps the default contiguous format, so a noisy timing does not flip runs between formats."""

_CHOICES: dict[tuple[object, ...], bool] = {}


def network_key(model: nn.Module) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The shapes that decide a kernel's speed: every parameter's name and shape."""
    return tuple((n, tuple(p.shape)) for n, p in model.named_parameters())


def is_channels_last(model: nn.Module) -> bool:
    """True when the model's first convolution kernel is stored channels_last (inputs should follow it).

    A kernel with one input channel or a 1x1 footprint is both formats at once, so it says nothing."""
    w = next((p for p in model.parameters() if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1), None)
    return w is not None and w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()


def prefers_channels_last(model: nn.Module, x: torch.Tensor, step: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                          repeats: int = 3) -> bool:
    """Whether a training step of `model` on batch `x` runs faster in channels_last, measured here.

    `step(model, x)` returns a scalar loss; it is run forward and backward on a deep copy of `model`
    (train mode), `repeats` timed passes per format after one warm-up each, interleaved; the faster
    format by the minimum time wins, with `MARGIN` in favour of contiguous. Cached per process by
    (device, threads, network shapes, batch shape).
    """
    key = (str(x.device), torch.get_num_threads(), network_key(model), tuple(x.shape))
    if key not in _CHOICES:
        _CHOICES[key] = _measure(model, x, step, repeats)
    return _CHOICES[key]


def _measure(model: nn.Module, x: torch.Tensor, step: Callable[[nn.Module, torch.Tensor], torch.Tensor],
             repeats: int) -> bool:
    rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if x.is_cuda else None
    try:
        copies = {fmt: copy.deepcopy(model).to(memory_format=fmt).train()
                  for fmt in (torch.contiguous_format, torch.channels_last)}
        inputs = {fmt: x.contiguous(memory_format=fmt) for fmt in copies}

        def run(fmt: torch.memory_format) -> Callable[[], object]:
            def once() -> None:
                m = copies[fmt]
                m.zero_grad(set_to_none=True)
                step(m, inputs[fmt]).backward()
            return once

        # the first pass warms caches and picks kernels
        return channels_last_wins({cl: run(_format(cl)) for cl in (False, True)}, x.device, repeats, warm=1)
    finally:
        torch.random.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def channels_last_wins(run: Mapping[bool, Callable[[], object]], device: torch.device, passes: int,
                       warm: int = 0) -> bool:
    """The one timing rule: `run[False]` (contiguous) and `run[True]` (channels_last) interleaved, `warm` untimed
    passes then `passes` timed ones; channels_last wins when its fastest pass beats contiguous's by `MARGIN`."""
    best = {False: float("inf"), True: float("inf")}
    for i in range(warm + passes):
        for cl in (False, True):
            _sync(device)
            t0 = time.perf_counter()
            run[cl]()
            _sync(device)
            if i >= warm:
                best[cl] = min(best[cl], time.perf_counter() - t0)
    return best[True] < (1 - MARGIN) * best[False]


def _format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

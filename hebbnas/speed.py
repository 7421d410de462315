"""How a network trains fastest on this machine: its memory format, chosen by measuring it.

channels_last (NHWC) is usually faster for convolutions on CUDA, and on CPUs with oneDNN it often is
too, but not always: on the 2-core development machine it sped the zoo's proxy training step up 1.09x
and a full-width network at 32 px 1.26x, and evaluation 2.2-2.7x (analysis/bench_proxy.py). The answer
depends on the device, the thread count and the network's shapes, so it is measured, not assumed from
the device type: a few forward + backward passes of a copy of the model in each format, interleaved,
once per (device, threads, network, batch shape) per process. The copy keeps the caller's weights,
BatchNorm statistics and random state untouched, so measuring never changes what a run computes
beyond the format it picks.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

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
        best = {fmt: float("inf") for fmt in copies}
        for i in range(repeats + 1):
            for fmt, m in copies.items():
                if x.is_cuda:
                    torch.cuda.synchronize(x.device)
                t0 = time.perf_counter()
                step(m, inputs[fmt]).backward()
                if x.is_cuda:
                    torch.cuda.synchronize(x.device)
                if i:  # the first pass warms caches and picks kernels
                    best[fmt] = min(best[fmt], time.perf_counter() - t0)
                m.zero_grad(set_to_none=True)
        return best[torch.channels_last] < (1 - MARGIN) * best[torch.contiguous_format]
    finally:
        torch.random.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)

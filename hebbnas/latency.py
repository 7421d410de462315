"""Measured latency of a topology at the deploy shape: what multiply-adds stand in for.

The full-width network (no aux heads, eval mode, inference mode) runs on this machine: warm-up runs,
then at least `runs` timed runs of one batch (batch 1 by default); the result is the median and the
interquartile range in milliseconds, with the runtime (torch eager, or onnxruntime on the model's ONNX
export), its thread count, the device (CPU model or GPU name) and the memory format. A shared machine is
noisy: when the IQR exceeds `max_rel_iqr` of the median the measurement is repeated (up to
`max_repeats` times) and the quietest kept; `noisy` says when even that stayed above. Latencies are
properties of one machine: compare them only with latencies measured on the same one (`device`).

`profile=True` adds milliseconds per top-level block (stem convolutions, each Inception module, the
pools, the head), measured by hooks in the same runs: where the time goes, beside where the MACs go.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from hebbnas.errors import HebbnasError
from hebbnas.topology import DEFAULT_INPUT, Topology

RUNTIMES: tuple[str, ...] = ("eager", "onnxruntime")
MIN_RUNS = 30


@dataclass(frozen=True)
class Latency:
    """One latency measurement (milliseconds per batch)."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    runs: int
    batch: int
    input: tuple[int, int, int]
    runtime: str
    threads: int
    device: str
    channels_last: bool
    repeats: int = 1  # measurements taken (the quietest kept)
    noisy: bool = False  # the IQR stayed above max_rel_iqr of the median after every repeat
    modules: dict[str, float] = field(default_factory=dict)  # median ms per top-level block (profile)

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "iqr_ms": self.iqr_ms, "input": list(self.input)}


def device_name(device: torch.device) -> str:
    """The CPU model or GPU name, so a latency says where it was measured."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "cpu")
    except OSError:
        import platform

        return platform.processor() or "cpu"


def measure(topology: Topology, input_shape: tuple[int, int, int] = DEFAULT_INPUT, *, batch: int = 1,
            runtime: str = "eager", runs: int = MIN_RUNS, warmup: int = 5, max_rel_iqr: float = 0.1,
            max_repeats: int = 3, device: str = "cpu", channels_last: bool | None = None,
            profile: bool = False) -> Latency:
    """The latency of `topology` (full width, no aux heads) on a batch of `batch` at `input_shape`.

    `channels_last` None tries both memory formats in the warm-up and keeps the faster (eager only).
    """
    if runtime not in RUNTIMES:
        raise HebbnasError(f"unknown runtime {runtime!r} (known: {', '.join(RUNTIMES)})")
    if runs < MIN_RUNS or batch < 1 or warmup < 0 or max_repeats < 1:
        raise HebbnasError(f"latency needs at least {MIN_RUNS} timed runs and a batch >= 1, got runs={runs}, "
                           f"batch={batch}")
    from hebbnas.model import build
    from hebbnas.train import resolve_device

    dev = resolve_device(device)
    torch.manual_seed(0)
    model = build(topology, aux=False).eval().to(dev)
    x = torch.randn(batch, *input_shape, device=dev)
    if runtime == "onnxruntime":
        fn, cl = _onnx_runner(model, input_shape, x), False
    else:
        cl = _faster_format(model, x, warmup) if channels_last is None else channels_last
        fmt = torch.channels_last if cl else torch.contiguous_format
        model = model.to(memory_format=fmt)
        xf = x.contiguous(memory_format=fmt)

        def fn() -> Any:
            return model(xf)

    best: tuple[np.ndarray, dict[str, list[float]]] | None = None
    repeats = 0
    for repeats in range(1, max_repeats + 1):
        times, per_module = _timed(fn, model if profile and runtime == "eager" else None, runs, warmup, dev)
        if best is None or _rel_iqr(times) < _rel_iqr(best[0]):
            best = (times, per_module)
        if _rel_iqr(times) <= max_rel_iqr:
            break
    assert best is not None
    times, per_module = best
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    threads = torch.get_num_threads() if runtime == "eager" or dev.type == "cpu" else 0
    return Latency(float(med), float(q1), float(q3), len(times), batch, tuple(input_shape), runtime, threads,
                   device_name(dev), cl, repeats, _rel_iqr(times) > max_rel_iqr,
                   {k: float(np.median(v)) for k, v in per_module.items()})


def _rel_iqr(times: np.ndarray) -> float:
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    return float((q3 - q1) / med) if med > 0 else 0.0


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn: Callable[[], Any], model: nn.Module | None, runs: int, warmup: int, dev: torch.device
           ) -> tuple[np.ndarray, dict[str, list[float]]]:
    per_module: dict[str, list[float]] = {}
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        _sync(dev)
        times = []
        with _module_clock(model, per_module, dev) if model is not None else contextlib.nullcontext():
            for _ in range(runs):
                t0 = time.perf_counter()
                fn()
                _sync(dev)
                times.append((time.perf_counter() - t0) * 1e3)
    return np.asarray(times), per_module


@contextlib.contextmanager
def _module_clock(model: nn.Module, out: dict[str, list[float]], dev: torch.device) -> Iterator[None]:
    """Milliseconds of every top-level block per run, by forward pre/post hooks (synchronised on CUDA)."""
    start: dict[str, float] = {}
    handles = []
    for name, mod in model.named_children():
        if name.startswith("aux"):
            continue

        def pre(_m: nn.Module, _a: Any, name: str = name) -> None:
            _sync(dev)
            start[name] = time.perf_counter()

        def post(_m: nn.Module, _a: Any, _o: Any, name: str = name) -> None:
            _sync(dev)
            out.setdefault(name, []).append((time.perf_counter() - start[name]) * 1e3)

        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _faster_format(model: nn.Module, x: torch.Tensor, warmup: int) -> bool:
    """Whether channels_last runs this model's forward faster here (a few interleaved runs of each, timed by
    `hebbnas.speed.channels_last_wins`)."""
    from hebbnas.speed import channels_last_wins

    def run(cl: bool) -> Callable[[], object]:
        fmt = torch.channels_last if cl else torch.contiguous_format
        return lambda: model.to(memory_format=fmt)(x.contiguous(memory_format=fmt))

    with torch.inference_mode():
        wins = channels_last_wins({False: run(False), True: run(True)}, x.device, max(3, warmup))
    model.to(memory_format=torch.contiguous_format)
    return wins


def _onnx_runner(model: nn.Module, input_shape: tuple[int, int, int], x: torch.Tensor) -> Callable[[], Any]:
    """The model exported to ONNX in memory, run by onnxruntime on the CPU with torch's thread count."""
    from hebbnas.export.formats import get_format

    get_format("onnx")  # the one-line install hint when onnx or onnxruntime is missing
    import onnxruntime as ort

    from hebbnas.export.metadata import make_metadata
    from hebbnas.export.onnx import onnx_bytes

    data = onnx_bytes(model.cpu(), input_shape, make_metadata(model.topology, fmt="onnx"))  # type: ignore[arg-type]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.log_severity_level = 3
    session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    feed = {"images": x.cpu().numpy()}
    return lambda: session.run(None, feed)

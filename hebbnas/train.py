"""One training/evaluation loop for every caller: the CLI, the probe's seed training, search trials.

(About 500 lines: the config, the loop, evaluation and exact resume share their state and are read together.)

Design points:

- Data are in-memory tensors (`hebbnas.data.Dataset`); batches are permutation-indexed, no DataLoader.
- Every epoch reseeds from (seed, epoch), so a run resumed at `start_epoch` from a checkpoint taken
  by `EpochResult.checkpoint()` continues exactly as if it had never stopped (same shuffles, same
  dropout masks), which is what Ray Tune's pause/resume and ASHA need.
- The objective is CE(main) + aux_weight * sum CE(aux) via `model.forward_with_aux` (the paper's 0.3);
  evaluation uses the plain inference graph `model(x)` in eval mode.
- Cosine learning rate per step with optional linear warmup.
- Speed: the memory format (channels_last or contiguous) is whichever measures faster for this network
  on this device (`hebbnas.speed`), unless the config fixes it; the optimizer uses torch's fused kernel;
  `compile=True` runs the training forward through `torch.compile` (opt-in: its compile time pays off
  only for long runs, see analysis/bench_proxy.py). Evaluation runs under `torch.inference_mode` in the
  model's own memory format. On CUDA: bf16 autocast. On CPU: float32, and the thread
  count is the caller's. Where processes share cores (parallel trials, CI), give each
  `torch.set_num_threads(<cores it owns>)`: oversubscribed OpenMP threads slowed this loop >5x.
- A non-finite loss raises `HebbnasError("training diverged: ...")` so a search can mark the trial failed.

Epoch indices are 0-based everywhere (`EpochResult.epoch`, `start_epoch`, error messages).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hebbnas.data import Dataset, augment, batches
from hebbnas.errors import HebbnasError, first_line
from hebbnas.progress_bar import bar
from hebbnas.speed import is_channels_last, prefers_channels_last

OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")
_CHECK_EVERY = 20  # steps between host syncs that check the running loss is finite


@dataclass(frozen=True)
class TrainConfig:
    """Training knobs. The defaults are the measured digits recipe.

    `build(get_topology("googlenet").with_classes(10))` trained with `TrainConfig()` on
    `load_dataset("digits")` (64x64) reaches ~0.98 val / ~0.99 test accuracy in 5 epochs, about
    1-2 minutes on 2 CPU cores. `lr` and `weight_decay` are AdamW values; for SGD use about
    lr=0.05, weight_decay=5e-4 (SGD also converged markedly slower in 5 epochs on digits).

    Attributes:
        epochs: total epochs of the cosine schedule (a resumed run keeps the same total).
        batch_size: training mini-batch; the last incomplete batch of an epoch is dropped so that
            BatchNorm never sees a batch of one.
        optimizer: "adamw" or "sgd" (with momentum, Nesterov).
        lr: peak learning rate (after warmup).
        weight_decay: applied to weights only, not to biases and BatchNorm parameters (decoupled for AdamW).
        momentum: SGD momentum; ignored by AdamW.
        nesterov: SGD Nesterov momentum; ignored by AdamW.
        label_smoothing: CrossEntropy label smoothing, for the main and the aux heads.
        aux_weight: weight of each auxiliary head's loss (0.3 in the paper); 0 ignores them.
        warmup_epochs: linear warmup length in epochs (fractions allowed), then cosine to 0.
        grad_clip: clip the global gradient norm to this value; None disables clipping.
        augment: random crop (padding 1/8 of the size) and horizontal flip per training image
            (`hebbnas.data.augment`), drawn from the epoch's seed.
        seed: seeds shuffling and dropout, per epoch (see the module docstring).
        device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
        amp: bf16 autocast on CUDA (no effect on CPU).
        channels_last: memory format of model and inputs: True channels_last, False contiguous, None
            whichever a short measurement of this network on this device finds faster (`hebbnas.speed`).
        fused: the optimizer's fused kernel (one pass over all parameters); False is torch's loop over
            parameters (the recipe of runs before fused kernels were used: same maths, other rounding).
        compile: `torch.compile` the training forward (and so its backward). Costs compile time once
            per network (minutes on 2 CPU cores), pays only for long runs.
        eval_batch_size: batch size for validation/test evaluation.
    """

    epochs: int = 5
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    label_smoothing: float = 0.0
    aux_weight: float = 0.3
    warmup_epochs: float = 0.3
    grad_clip: float | None = None
    augment: bool = False
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool | None = None
    fused: bool = True
    compile: bool = False
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise HebbnasError(f"epochs must be positive, got {self.epochs}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise HebbnasError(f"batch sizes must be positive, got {self.batch_size}/{self.eval_batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise HebbnasError(f"unknown optimizer: {self.optimizer!r} (known: {', '.join(OPTIMIZERS)})")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise HebbnasError(f"lr must be positive and finite, got {self.lr}")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise HebbnasError(f"bad weight_decay/momentum: {self.weight_decay}/{self.momentum}")
        if not 0 <= self.label_smoothing < 1:
            raise HebbnasError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.aux_weight < 0:
            raise HebbnasError(f"aux_weight must be >= 0, got {self.aux_weight}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise HebbnasError(f"warmup_epochs must be in [0, epochs), got {self.warmup_epochs}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise HebbnasError(f"grad_clip must be positive or None, got {self.grad_clip}")
        resolve_device(self.device, check_available=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML-friendly) of all fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict, rejecting unknown keys (a typo must not silently use a default)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise HebbnasError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class EpochResult:
    """What one finished epoch reports to `on_epoch`.

    `checkpoint()` returns a CPU copy of the full resumable state (model, optimizer, scheduler, next
    epoch, config dict); pass it back as ``train(..., state=...)`` to continue. It snapshots the live
    objects, so call it inside `on_epoch`. The dict holds only tensors and plain Python values, so
    ``torch.save`` / ``torch.load(weights_only=True)`` round-trip it.
    """

    epoch: int
    train_loss: float  # mean objective over the epoch: CE(main) + aux_weight * sum CE(aux)
    train_accuracy: float  # of the main head, in training mode, on the augmented batches seen
    val_accuracy: float
    lr: float  # learning rate at the end of the epoch
    seconds: float  # wall time of the epoch, evaluation included
    steps: int  # optimizer steps taken so far in the run (global step)
    checkpoint: Callable[[], dict[str, Any]] = field(repr=False, compare=False, default=lambda: {})

    def metrics(self) -> dict[str, float | int]:
        """The numeric fields, for loggers and `ray.tune.report`."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "checkpoint"}


@dataclass(frozen=True)
class TrainResult:
    """The outcome of `train`: the per-epoch history and the summary a caller usually wants."""

    history: tuple[EpochResult, ...]
    val_accuracy: float  # after the last epoch run
    best_val_accuracy: float
    best_epoch: int  # -1 when no epoch ran
    stopped_early: bool  # True when `on_epoch` asked to stop
    seconds: float
    device: str
    channels_last: bool = False  # the memory format the run used (measured when the config left it open)

    @property
    def epochs_run(self) -> int:
        return len(self.history)


def resolve_device(device: str, check_available: bool = True) -> torch.device:
    """Turn "auto"/"cpu"/"cuda"/"cuda:N" into a torch.device; "auto" prefers CUDA."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device != "cpu" and not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise HebbnasError(f"unknown device: {device!r} (use auto, cpu, cuda or cuda:N)")
    if check_available and device.startswith("cuda") and not torch.cuda.is_available():
        raise HebbnasError(f"device {device} requested but CUDA is not available")
    return torch.device(device)


def train(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig | None = None,
    *,
    on_epoch: Callable[[EpochResult], bool | None] | None = None,
    start_epoch: int | None = None,
    state: dict[str, Any] | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train `model` on `dataset.train`, evaluating on `dataset.val` after every epoch.

    The model is trained in place (and moved to the device). Seed the global RNG before building the
    model if its initialisation must be reproducible; everything after that is seeded here.

    Args:
        model: logits (B, num_classes) from `model(x)`; `model.forward_with_aux(x)` is used for
            training when present (returns (logits, [aux logits, ...])).
        dataset: the proxy; its `num_classes` must match the model's outputs.
        config: training knobs; `TrainConfig()` when None.
        on_epoch: called after each epoch; returning True stops training (e.g. an ASHA decision).
        start_epoch: first epoch to run (0-based); defaults to `state["epoch"]` when resuming, else 0.
        state: a dict from `EpochResult.checkpoint()` to resume from.
        progress: a progress bar per epoch on stderr (the CLI decides: `hebbnas.progress_bar.wanted()`).

    Raises:
        HebbnasError: a non-finite loss, a class-count mismatch, a malformed resume state.
    """
    cfg = config or TrainConfig()
    device = resolve_device(cfg.device)
    on_cuda = device.type == "cuda"
    use_amp = on_cuda and cfg.amp

    model.to(device)
    train_x, train_y = (_to_device(t, device) for t in dataset.train)
    val_x, val_y = (_to_device(t, device) for t in dataset.val)
    n_train = int(train_y.shape[0])
    if n_train < 1:
        raise HebbnasError(f"dataset {dataset.name} has an empty train split")
    drop_last = n_train > cfg.batch_size
    steps_per_epoch = n_train // cfg.batch_size if drop_last else 1

    channels_last = cfg.channels_last
    if channels_last is None:
        sample = train_x[: min(cfg.batch_size, n_train)].contiguous()
        channels_last = prefers_channels_last(model, sample, lambda m, x: _step_loss(m, x, cfg, use_amp))
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    forward = _forward_with_aux if cfg.aux_weight else _forward_only
    if cfg.compile:
        forward = _compiled(model, forward)

    optimizer = _make_optimizer(model, cfg)
    scheduler = _make_scheduler(optimizer, cfg, steps_per_epoch)
    if state is not None:
        _load_state(model, optimizer, scheduler, state)
    first = (int(state["epoch"]) if state is not None else 0) if start_epoch is None else int(start_epoch)
    if first < 0:
        raise HebbnasError(f"start_epoch must be >= 0, got {start_epoch}")

    history: list[EpochResult] = []
    stopped = False
    t_run = time.perf_counter()
    for epoch in range(first, cfg.epochs):
        t_epoch = time.perf_counter()
        epoch_seed = _epoch_seed(cfg.seed, epoch)
        torch.manual_seed(epoch_seed)  # dropout masks (all devices)
        shuffle_gen = torch.Generator().manual_seed(epoch_seed)
        augment_gen = torch.Generator().manual_seed(epoch_seed + 1)

        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        for step, (xb, yb) in enumerate(bar(
            batches(train_x, train_y, cfg.batch_size, shuffle=True, generator=shuffle_gen, drop_last=drop_last),
            enabled=progress, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
        )):
            if cfg.augment:
                xb = augment(xb, augment_gen)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits, aux = forward(model, xb)
            if step == 0 and epoch == first:
                _check_classes(logits, dataset)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
            if aux:
                loss = loss + cfg.aux_weight * sum(
                    F.cross_entropy(a.float(), yb, label_smoothing=cfg.label_smoothing) for a in aux
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()

            loss_sum += loss.detach() * yb.shape[0]
            correct += (logits.detach().argmax(1) == yb).sum()
            seen += int(yb.shape[0])
            if (step + 1) % _CHECK_EVERY == 0 or step + 1 == steps_per_epoch:
                _check_finite(float(loss_sum), epoch)

        val_acc = evaluate(model, val_x, val_y, cfg.eval_batch_size, device, amp=cfg.amp)
        result = EpochResult(
            epoch=epoch,
            train_loss=float(loss_sum) / max(seen, 1),
            train_accuracy=float(correct) / max(seen, 1),
            val_accuracy=val_acc,
            lr=float(optimizer.param_groups[0]["lr"]),
            seconds=time.perf_counter() - t_epoch,
            steps=int(scheduler.last_epoch),
            checkpoint=_checkpointer(model, optimizer, scheduler, epoch + 1, cfg),
        )
        history.append(result)
        if on_epoch is not None and on_epoch(result):
            stopped = True
            break

    if history:
        last_val = history[-1].val_accuracy
        best = max(history, key=lambda r: r.val_accuracy)
        best_val, best_epoch = best.val_accuracy, best.epoch
    else:  # nothing left to run (resumed at or past the last epoch): report the model as it is
        last_val = evaluate(model, val_x, val_y, cfg.eval_batch_size, device, amp=cfg.amp)
        best_val, best_epoch = last_val, -1
    return TrainResult(
        history=tuple(history),
        val_accuracy=last_val,
        best_val_accuracy=best_val,
        best_epoch=best_epoch,
        stopped_early=stopped,
        seconds=time.perf_counter() - t_run,
        device=str(device),
        channels_last=bool(channels_last),
    )


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 256,
    device: str | torch.device = "auto",
    *,
    amp: bool = True,
    progress: bool = False,
    desc: str = "evaluating",
) -> float:
    """Top-1 accuracy of `model(x)` in eval mode (also for the test split); restores the model's mode.

    The model is moved to `device`; the inputs follow the model's memory format (`train` leaves a model
    in the one it measured faster), and on CUDA they are bf16-autocast when `amp`. Results do not
    depend on either beyond rounding.
    """
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    n = int(y.shape[0])
    if n == 0:
        raise HebbnasError("cannot evaluate on an empty split")
    on_cuda = dev.type == "cuda"
    was_training = model.training
    model.to(dev)
    model.eval()
    channels_last = is_channels_last(model)
    x, y = _to_device(x, dev), y.to(dev)
    correct = torch.zeros((), dtype=torch.long, device=dev)
    try:
        for xb, yb in bar(batches(x, y, batch_size), enabled=progress, total=-(-n // batch_size), desc=desc,
                          unit="batch"):
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=on_cuda and amp):
                logits = model(xb)
            correct += (logits.argmax(1) == yb).sum()
    finally:
        model.train(was_training)
    return float(correct) / n


# --------------------------------------------------------------------------- internals


def _forward_with_aux(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Main and aux logits; plain models (no `forward_with_aux`) have no aux heads."""
    fwa = getattr(model, "forward_with_aux", None)
    if fwa is None:
        return model(x), []
    logits, aux = fwa(x)
    return logits, list(aux)


def _forward_only(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Main logits only (aux weight 0: the aux heads are not run at all)."""
    return model(x), []


Forward = Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]


def _compiled(model: nn.Module, forward: Forward) -> Forward:
    """`forward` through `torch.compile` (one graph per network; the training batch shape is fixed)."""
    compiled = torch.compile(lambda x: forward(model, x), dynamic=False)
    return lambda _model, x: compiled(x)


def _step_loss(model: nn.Module, x: torch.Tensor, cfg: TrainConfig, use_amp: bool) -> torch.Tensor:
    """A training step's forward as a scalar, for measuring the memory format (labels do not matter)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_amp):
        logits, aux = (_forward_with_aux if cfg.aux_weight else _forward_only)(model, x)
    return logits.float().sum() + sum(a.float().sum() for a in aux)


def _check_classes(logits: torch.Tensor, dataset: Dataset) -> None:
    if logits.ndim != 2 or logits.shape[1] != dataset.num_classes:
        raise HebbnasError(
            f"model outputs {tuple(logits.shape[1:])} logits but dataset {dataset.name} has "
            f"{dataset.num_classes} classes (use topology.with_classes({dataset.num_classes}))"
        )


def _check_finite(loss_sum: float, epoch: int) -> None:
    if not math.isfinite(loss_sum):
        kind = "nan" if math.isnan(loss_sum) else "inf"
        raise HebbnasError(f"training diverged: loss is {kind} at epoch {epoch}")


def _epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed per (seed, epoch), so resuming needs no saved RNG state."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 12_345) % (2**63)


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a split to `device` once; an expanded (replicated-channel) view moves only its base."""
    if t.device == device:
        return t
    if t.ndim == 4 and t.shape[1] > 1 and t.stride(1) == 0:
        return t[:, :1].to(device, non_blocking=True).expand(-1, t.shape[1], -1, -1)
    return t.to(device, non_blocking=True)


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD/AdamW with weight decay on weights only (biases and norm parameters are 1-D)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = cfg.fused or None  # None (not False): torch's own default implementation
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               fused=fused)
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused)


def _make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step linear warmup then cosine decay to 0 over `cfg.epochs` epochs."""
    total = cfg.epochs * steps_per_epoch
    warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total - 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _checkpointer(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    next_epoch: int,
    cfg: TrainConfig,
) -> Callable[[], dict[str, Any]]:
    """A closure that snapshots the resumable state on demand (CPU copies, safe to keep)."""

    def snapshot() -> dict[str, Any]:
        return _to_cpu(
            {
                "epoch": next_epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "config": cfg.to_dict(),
            }
        )

    return snapshot


def _load_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict[str, Any],
) -> None:
    missing = [k for k in ("epoch", "model", "optimizer", "scheduler") if k not in state]
    if missing:
        raise HebbnasError(f"resume state lacks {', '.join(missing)}")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise HebbnasError(f"resume state does not fit this model/config: {first_line(exc)}") from None


def _to_cpu(obj: Any) -> Any:
    """Deep copy with every tensor cloned to the CPU (detached from the live training state)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


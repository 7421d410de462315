"""The training loop: learning, aux loss, callbacks, early stop, exact resume, divergence, errors."""

from __future__ import annotations

import dataclasses
import io
import math

import pytest
import torch
from torch import nn

from hebbnas.data import Dataset, Split, load_dataset
from hebbnas.errors import HebbnasError
from hebbnas.train import EpochResult, TrainConfig, evaluate, resolve_device, train


class Tiny(nn.Module):
    """A small CNN with the GoogLeNet interface: `forward` and `forward_with_aux`."""

    def __init__(self, num_classes: int = 10, constant_aux: bool = False) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(32, num_classes)
        self.aux = nn.Linear(16, num_classes)
        self.constant_aux = constant_aux  # aux logits all zero: CE is exactly ln(num_classes)

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h1 = self.block1(x)  # (B, 16, R/2, R/2)
        h2 = self.block2(h1).mean(dim=(2, 3))  # (B, 32)
        logits = self.fc(self.dropout(h2))
        if not self.training:
            return logits, []
        aux = self.aux(h1.mean(dim=(2, 3)))
        return logits, [aux * 0 if self.constant_aux else aux]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_aux(x)[0]


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", resolution=8, train_subset=300)


FAST = TrainConfig(epochs=2, batch_size=16, optimizer="adamw", lr=0.01, seed=1, device="cpu")  # explicit: CUDA machines too


def _model(seed: int = 0, **kwargs: bool | int) -> Tiny:
    torch.manual_seed(seed)
    return Tiny(**kwargs)


def test_learns_beyond_chance_and_reports_each_epoch(digits: Dataset) -> None:
    seen: list[EpochResult] = []
    result = train(_model(), digits, FAST, on_epoch=seen.append)
    assert [r.epoch for r in seen] == [0, 1] and list(result.history) == seen
    assert result.val_accuracy == seen[-1].val_accuracy > 0.4  # chance is 0.1
    assert result.best_val_accuracy == max(r.val_accuracy for r in seen)
    assert not result.stopped_early and result.epochs_run == 2 and result.device == "cpu"
    assert seen[-1].steps == 2 * (300 // 16)  # incomplete last batch dropped
    assert seen[-1].lr < FAST.lr * 0.05  # cosine schedule ends near zero
    assert set(seen[0].metrics()) == {"epoch", "train_loss", "train_accuracy", "val_accuracy", "lr", "seconds", "steps"}
    assert math.isfinite(seen[0].train_loss) and 0 <= seen[0].train_accuracy <= 1


def test_aux_loss_is_added_with_its_weight(digits: Dataset) -> None:
    # constant aux logits leave the gradients untouched, so only the reported objective changes
    base = train(_model(constant_aux=True), digits, FAST.replace(aux_weight=0.0, epochs=1))
    aux = train(_model(constant_aux=True), digits, FAST.replace(aux_weight=0.3, epochs=1))
    diff = aux.history[0].train_loss - base.history[0].train_loss
    assert diff == pytest.approx(0.3 * math.log(10), abs=1e-4)


def test_plain_module_without_aux_trains(digits: Dataset) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    result = train(model, digits, FAST.replace(optimizer="sgd", lr=0.05, weight_decay=5e-4, warmup_epochs=0.5))
    assert result.val_accuracy > 0.4


def test_early_stop_and_exact_resume(digits: Dataset) -> None:
    cfg = FAST.replace(epochs=3)
    straight = _model()
    full = train(straight, digits, cfg)

    saved: list[dict] = []

    def stop_after_first(r: EpochResult) -> bool:
        saved.append(r.checkpoint())
        return True

    first = train(_model(), digits, cfg, on_epoch=stop_after_first)
    assert first.stopped_early and first.epochs_run == 1 and saved[0]["epoch"] == 1

    buf = io.BytesIO()  # a checkpoint must survive torch.save / safe torch.load (Ray Tune stores it)
    torch.save(saved[0], buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)

    resumed_model = _model(seed=123)  # a different init: the state must override it
    resumed = train(resumed_model, digits, cfg, state=state)
    assert [r.epoch for r in resumed.history] == [1, 2]
    assert [r.steps for r in resumed.history] == [r.steps for r in full.history[1:]]
    assert resumed.history[-1].val_accuracy == full.history[-1].val_accuracy
    assert resumed.history[-1].train_loss == pytest.approx(full.history[-1].train_loss, rel=1e-4)
    for (name, a), b in zip(straight.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name

    done = train(_model(), digits, cfg, state=resumed.history[-1].checkpoint())
    assert done.epochs_run == 0 and done.best_epoch == -1
    assert done.val_accuracy == full.val_accuracy


def test_bad_resume_state(digits: Dataset) -> None:
    with pytest.raises(HebbnasError, match="resume state lacks optimizer, scheduler"):
        train(_model(), digits, FAST, state={"epoch": 1, "model": {}})
    other = nn.Sequential(nn.Flatten(), nn.Linear(192, 10))
    state = {"epoch": 1, "model": other.state_dict(), "optimizer": {}, "scheduler": {}}
    with pytest.raises(HebbnasError, match="resume state does not fit this model/config"):
        train(_model(), digits, FAST, state=state)


def test_nan_loss_raises(digits: Dataset) -> None:
    x = digits.train.x.clone()
    x[::7] = float("nan")
    broken = dataclasses.replace(digits, train=Split(x, digits.train.y))
    with pytest.raises(HebbnasError, match=r"^training diverged: loss is nan at epoch 0$"):
        train(_model(), broken, FAST)


def test_class_count_mismatch(digits: Dataset) -> None:
    with pytest.raises(HebbnasError, match=r"model outputs \(5,\) logits but dataset digits has 10 classes"):
        train(_model(num_classes=5), digits, FAST)


def test_evaluate_restores_mode_and_counts(digits: Dataset) -> None:
    model = _model()
    model.train()
    x, y = digits.val
    acc = evaluate(model, x, y, batch_size=7, device="cpu")
    assert model.training
    model.eval()
    with torch.no_grad():
        expected = (model(x).argmax(1) == y).float().mean().item()
    assert acc == pytest.approx(expected)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs must be positive"),
        ({"optimizer": "lion"}, r"unknown optimizer: 'lion' \(known: sgd, adamw\)"),
        ({"lr": float("nan")}, "lr must be positive and finite"),
        ({"warmup_epochs": 5}, r"warmup_epochs must be in \[0, epochs\)"),
        ({"label_smoothing": 1.0}, "label_smoothing must be in"),
        ({"device": "tpu"}, "unknown device: 'tpu'"),
        ({"grad_clip": 0.0}, "grad_clip must be positive or None"),
    ],
)
def test_config_validation(changes: dict, message: str) -> None:
    with pytest.raises(HebbnasError, match=message):
        TrainConfig(**changes)


def test_config_dict_roundtrip() -> None:
    cfg = TrainConfig(lr=0.2, optimizer="adamw")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(HebbnasError, match="unknown training option"):
        TrainConfig.from_dict({"learning_rate": 0.1})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_requested_without_cuda() -> None:
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(HebbnasError, match="device cuda requested but CUDA is not available"):
        resolve_device("cuda")


def test_googlenet_with_aux_heads_trains() -> None:
    """The real model at a toy width: aux heads join the loss in training, not in evaluation."""
    from hebbnas.model import build
    from hebbnas.topology import StemSpec, get_topology

    base = get_topology("googlenet").with_classes(10)
    small = dataclasses.replace(base, stem=StemSpec(8, 8, 16)).with_widths(
        {name: (4, 4, 8, 2, 4, 4) for name in base.module_names}
    )
    torch.manual_seed(0)
    model = build(small)
    ds = load_dataset("digits", resolution=32, train_subset=64)
    model.train()
    _, aux = model.forward_with_aux(ds.train.x[:4])
    assert len(aux) == 2
    result = train(model, ds, TrainConfig(epochs=1, batch_size=32))
    assert result.epochs_run == 1 and math.isfinite(result.history[0].train_loss)
    assert 0.0 <= evaluate(model, *ds.val, 128, "cpu") <= 1.0

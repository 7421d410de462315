"""Speed without changing the maths: the measured memory format, the fused optimizer, augmentation, compile."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from hebbnas import speed
from hebbnas.data import Dataset, augment, load_dataset
from hebbnas.model import build
from hebbnas.topology import get_topology
from hebbnas.train import TrainConfig, evaluate, train

pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", resolution=32, train_subset=96)


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build(get_topology("googlenet").narrowed(0.125).with_classes(10))


def _loss(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    logits, aux = m.forward_with_aux(x)
    return logits.sum() + sum(a.sum() for a in aux)


def test_measuring_the_format_changes_nothing_and_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _net()
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(8, 3, 32, 32)
    rng = torch.random.get_rng_state()
    speed._CHOICES.clear()
    choice = speed.prefers_channels_last(model, x, _loss, repeats=1)
    assert isinstance(choice, bool)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics included
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert not speed.is_channels_last(model)  # the caller's model keeps its format

    calls = []
    monkeypatch.setattr(speed, "_measure", lambda *a: calls.append(a) or (not choice))
    assert speed.prefers_channels_last(model, x, _loss) is choice and not calls  # same network, device, batch
    speed.prefers_channels_last(model, torch.randn(4, 3, 32, 32), _loss)
    assert len(calls) == 1  # another batch shape is measured again
    speed._CHOICES.clear()


def test_is_channels_last_reads_the_first_spatial_kernel() -> None:
    model = _net()
    assert not speed.is_channels_last(model)
    assert speed.is_channels_last(model.to(memory_format=torch.channels_last))
    pointwise = nn.Sequential(nn.Conv2d(4, 4, 1)).to(memory_format=torch.channels_last)
    assert not speed.is_channels_last(pointwise)  # a 1x1 kernel is both formats: it says nothing


def test_train_records_the_format_and_both_formats_compute_the_same(digits: Dataset, monkeypatch: pytest.MonkeyPatch
                                                                      ) -> None:
    cfg = TrainConfig(epochs=1, batch_size=16, seed=3, device="cpu")
    results = {}
    for fmt in (False, True):
        model = _net(1)
        results[fmt] = train(model, digits, cfg.replace(channels_last=fmt))
        assert results[fmt].channels_last is fmt and speed.is_channels_last(model) is fmt
        assert evaluate(model, *digits.test, device="cpu") >= 0.0
    a, b = results[False].history[0], results[True].history[0]
    assert a.train_loss == pytest.approx(b.train_loss, rel=1e-2)  # rounding differs (and grows over steps)
    m = _net(1).eval()
    x = digits.test.x[:8].contiguous()
    cl = copy.deepcopy(m).to(memory_format=torch.channels_last)
    assert torch.allclose(m(x), cl(x.contiguous(memory_format=torch.channels_last)), atol=1e-5)  # the maths does not
    monkeypatch.setattr("hebbnas.train.prefers_channels_last", lambda *a, **k: True)
    assert train(_net(1), digits, cfg).channels_last  # None: whatever the measurement says


def test_fused_optimizer_follows_the_same_trajectory(digits: Dataset) -> None:
    cfg = TrainConfig(epochs=1, batch_size=16, seed=2, device="cpu", channels_last=False)
    losses = [train(_net(4), digits, cfg.replace(fused=f)).history[0].train_loss for f in (False, True)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_augment_crops_and_flips_each_image_reproducibly() -> None:
    x = torch.randn(6, 2, 16, 16)
    a = augment(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and a.is_contiguous()
    assert torch.equal(a, augment(x, torch.Generator().manual_seed(0)))
    assert not torch.equal(a, augment(x, torch.Generator().manual_seed(1)))
    pad = 2  # 16 / 8
    padded = torch.nn.functional.pad(x, (pad,) * 4, mode="replicate")
    for i in range(x.shape[0]):  # every output is one crop of the padded image, flipped or not
        crops = [c for oy in range(2 * pad + 1) for ox in range(2 * pad + 1)
                 for c in (padded[i, :, oy:oy + 16, ox:ox + 16],) for c in (c, c.flip(-1))]
        assert any(torch.equal(a[i], c) for c in crops)


def test_augmented_training_runs_and_differs_from_plain(digits: Dataset) -> None:
    cfg = TrainConfig(epochs=1, batch_size=16, seed=5, device="cpu", channels_last=False)
    plain = train(_net(2), digits, cfg).history[0].train_loss
    augmented = train(_net(2), digits, cfg.replace(augment=True))
    assert augmented.history[0].train_loss != plain
    assert augmented.history[0].train_loss == train(_net(2), digits, cfg.replace(augment=True)).history[0].train_loss


class _Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


@pytest.mark.slow
def test_compile_trains_like_eager(digits: Dataset) -> None:
    cfg = TrainConfig(epochs=1, batch_size=16, seed=1, device="cpu", channels_last=False, aux_weight=0.0)
    losses = []
    for compiled in (False, True):
        torch.manual_seed(0)
        losses.append(train(_Small(), digits, cfg.replace(compile=compiled)).history[0].train_loss)
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)


@pytest.mark.gpu
def test_cuda_training_measures_its_format_and_matches_cpu_accuracy(digits: Dataset) -> None:
    """On a GPU: the loop trains on CUDA (bf16 autocast), picks a memory format by measurement, and
    evaluates the same accuracy as a CPU copy of the trained weights (within bf16 rounding)."""
    cfg = TrainConfig(epochs=2, batch_size=16, seed=1, device="cuda")
    model = _net(3)
    res = train(model, digits, cfg)
    assert res.device.startswith("cuda") and isinstance(res.channels_last, bool)
    acc_gpu = evaluate(model, *digits.test, device="cuda", amp=False)
    acc_cpu = evaluate(copy.deepcopy(model).to("cpu").to(memory_format=torch.contiguous_format), *digits.test,
                       device="cpu")
    assert acc_gpu == pytest.approx(acc_cpu, abs=0.02)

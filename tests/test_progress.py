"""Progress bars on long steps: shown on a terminal, quiet in a log, a pipe or CI; the core stays pure."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

import hebbnas.progress_bar as pb
from hebbnas.cli import main
from hebbnas.data import load_dataset
from hebbnas.model import build
from hebbnas.pipeline import probe_network
from hebbnas.train import TrainConfig, evaluate, train

from tests.builders import tiny_topology


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def small() -> tuple:
    torch.set_num_threads(1)
    data = load_dataset("digits", resolution=32, train_subset=96)
    return data, tiny_topology().with_classes(10)


def test_wanted_only_on_a_terminal_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CI", "HEBBNAS_NO_PROGRESS", "TERM"):
        monkeypatch.delenv(var, raising=False)
    assert pb.wanted(_Tty()) is True
    assert pb.wanted(io.StringIO()) is False  # a file or a pipe
    monkeypatch.setenv("CI", "true")
    assert pb.wanted(_Tty()) is False
    monkeypatch.delenv("CI")
    monkeypatch.setenv("HEBBNAS_NO_PROGRESS", "1")
    assert pb.wanted(_Tty()) is False
    assert list(pb.bar([1, 2], enabled=False)) == [1, 2]


def test_train_evaluate_probe_show_bars_only_when_asked(small: tuple, capsys: pytest.CaptureFixture[str]) -> None:
    data, t = small
    torch.manual_seed(0)
    model = build(t)
    cfg = TrainConfig(epochs=1, batch_size=32)
    train(model, data, cfg)
    evaluate(model, *data.test)
    probe_network(t, model.eval(), data.train.x[:64])
    quiet = capsys.readouterr()
    assert quiet.err == "" and quiet.out == ""  # the default: nothing, as in a Ray trial
    train(model, data, cfg, progress=True)
    evaluate(model, *data.test, progress=True, desc="test")
    probe_network(t, model.eval(), data.train.x[:64], progress=True)
    err = capsys.readouterr().err
    for text in ("epoch 1/1", "batch", "test", "probing"):
        assert text in err, text


def test_cli_bars_on_a_terminal_plain_lines_otherwise(small: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _, t = small
    topo = tmp_path / "tiny.json"
    topo.write_text(t.to_json())
    argv = ["train", str(topo), "--dataset", "digits", "--epochs", "1", "--resolution", "32", "--train-subset", "64",
            "--threads", "1"]
    assert main(argv) == 0  # captured output is not a terminal
    res = capsys.readouterr()
    assert "\r" not in res.err + res.out and "epoch 1:" in res.out and "test acc" in res.out
    monkeypatch.setattr(pb, "wanted", lambda stream=None: True)  # as on a terminal
    assert main(argv) == 0
    res = capsys.readouterr()
    assert "epoch 1/1" in res.err and "test" in res.err and "\r" in res.err
    assert "epoch 1:" in res.out  # the per-epoch lines stay

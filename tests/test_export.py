"""Exports: each format reloads without hebbnas and matches the eager model; run folders; bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import hebbnas
from hebbnas import HebbnasError, Topology, build
from hebbnas.cli import main
from hebbnas.export import (
    ExportResult,
    detect_format,
    export_model,
    export_run,
    load_trainable,
    read_metadata,
)
from hebbnas.export.formats import get_format
from hebbnas.model import GoogLeNet
from hebbnas.topology import min_input_size
from tests.builders import DEPLOY, MEAN, PROXY, STD, make_run, tiny_topology

pytestmark = pytest.mark.usefixtures("one_thread_module")  # tiny convolutions: one thread is faster

TORCH_FORMATS = ("pt2", "torchscript", "state_dict")  # onnx: tests/test_onnx.py


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run exported once in every format, plus reference inputs/outputs of the eager model."""
    root = tmp_path_factory.mktemp("export")
    run, models = make_run(root, "r1")
    model = models["best"]
    out = root / "out"
    out.mkdir()
    results = {fmt: export_run(run, fmt, out / get_format(fmt).file_name) for fmt in TORCH_FORMATS}  # onnx: test_onnx.py
    g = torch.Generator().manual_seed(1)
    inputs = {f"b{b}_r{r}": torch.randn(b, 3, r, r, generator=g) for b in (1, 7) for r in (PROXY, 224)}
    with torch.no_grad():
        refs = {k: model(x) for k, x in inputs.items()}
    data = root / "inputs.pt"
    torch.save(inputs, data)
    return {"run": run, "model": model, "results": results, "inputs": inputs, "refs": refs, "data": data,
            "root": root}


# A fresh interpreter in which hebbnas cannot even be imported: the file must stand on torch alone.
FRESH = r"""
import json, os, sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "hebbnas" or name.startswith("hebbnas."):
            raise ImportError("hebbnas is blocked in this process")
        return None
sys.meta_path.insert(0, _Block())
import torch
fmt, path, data, out = sys.argv[1:5]
extra = {"hebbnas.json": ""}
if fmt == "pt2":
    model = torch.export.load(path, extra_files=extra).module()
elif fmt == "torchscript":
    model = torch.jit.load(path, _extra_files=extra)
else:
    obj = torch.load(path, weights_only=True)
    extra["hebbnas.json"] = open(os.path.splitext(path)[0] + ".json").read()
    assert sorted(obj) == ["kind", "metadata", "metrics", "state_dict", "topology"], sorted(obj)
    assert all(isinstance(v, torch.Tensor) for v in obj["state_dict"].values())
    model = None
inputs = torch.load(data, weights_only=True)
with torch.no_grad():
    outs = {k: model(x) for k, x in inputs.items()} if model is not None else {}
torch.save(outs, out)
assert not [m for m in sys.modules if m.split(".")[0] == "hebbnas"]
print(json.dumps(json.loads(extra["hebbnas.json"])))
"""


@pytest.mark.parametrize("fmt", TORCH_FORMATS)
def test_fresh_process_loads_export_and_matches(exported: dict[str, Any], fmt: str, tmp_path: Path) -> None:
    res: ExportResult = exported["results"][fmt]
    out = tmp_path / "outs.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", FRESH, fmt, str(res.path), str(exported["data"]), str(out)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads(proc.stdout.strip().splitlines()[-1])
    t = tiny_topology()
    assert meta["format"] == fmt and Topology.from_dict(meta["topology"]) == t
    assert meta["macs"] == t.macs(DEPLOY) and meta["params"] == t.params()
    assert (meta["dataset"], meta["resolution"], meta["val_acc"], meta["input"]) == ("digits", PROXY, 0.9, list(DEPLOY))
    assert meta["mean"] == MEAN and meta["std"] == STD
    if fmt == "state_dict":
        return
    outs = torch.load(out, weights_only=True)
    for k, ref in exported["refs"].items():
        assert outs[k].shape == ref.shape
        assert (outs[k] - ref).abs().max().item() <= 1e-5, k


@pytest.mark.parametrize("fmt", TORCH_FORMATS)
def test_hebbnas_load_matches_eager_in_eval_mode(exported: dict[str, Any], fmt: str) -> None:
    res: ExportResult = exported["results"][fmt]
    assert detect_format(res.path) == fmt
    model = hebbnas.load(res.path)
    assert not model.training and model.eval() is model  # eval() is a no-op, even on a torch.export module
    if fmt == "pt2":
        with pytest.raises(NotImplementedError, match="load_trainable"):
            model.train()
    with torch.no_grad():
        for k, x in exported["inputs"].items():
            assert (model(x) - exported["refs"][k]).abs().max().item() <= 1e-5, (fmt, k)
    # the trained eager model in train mode differs: the exports really use the BN running stats
    train_out = exported["model"].train()(exported["inputs"]["b7_r32"])
    exported["model"].eval()
    assert (train_out - exported["refs"]["b7_r32"]).abs().max().item() > 1e-2


def test_metadata_and_dynamic_dims(exported: dict[str, Any]) -> None:
    t = tiny_topology()
    for fmt, res in exported["results"].items():
        meta = read_metadata(res.path)
        assert meta["format"] == fmt and meta["source"]["trial_id"] == "t_best"
        assert meta["min_input_size"] == min_input_size(t) == 31
        dyn = meta["dynamic"]
        assert dyn["batch"] == {"min": 1, "max": None} and dyn["height"] == dyn["width"]
        # pt2 declares H, W = 32k (see hebbnas.export.pt2.export_program); the traced TorchScript takes any size >= 31
        expect = {"min": 32, "max": None, "multiple_of": 32} if fmt == "pt2" else {"min": 31, "max": None, "multiple_of": 1}
        assert dyn["height"] == expect
        assert meta["test_acc"] == pytest.approx(0.89)
    side = exported["results"]["state_dict"].extra_paths[0]
    assert side.suffix == ".json" and Topology.from_dict(json.loads(side.read_text())["topology"]) == t
    # no aux weights travel with any export
    assert not [k for k in torch.load(exported["results"]["state_dict"].path, weights_only=True)["state_dict"]
                if k.startswith("aux")]


def test_load_run_checkpoint_and_folder(exported: dict[str, Any]) -> None:
    run = exported["run"]
    x, ref = exported["inputs"]["b7_r224"], exported["refs"]["b7_r224"]
    with torch.no_grad():
        for path in (run / "best" / "model.pt", run):
            model = hebbnas.load(path)
            assert not model.training and not any(k.startswith("aux") for k in model.state_dict())
            assert (model(x) - ref).abs().max().item() <= 1e-5
    assert read_metadata(run)["macs"] == tiny_topology().macs(DEPLOY)


@pytest.mark.parametrize("fmt", ["pt2", "torchscript"])
def test_load_trainable_from_graph_exports(exported: dict[str, Any], fmt: str) -> None:
    model = load_trainable(exported["results"][fmt].path, aux=True)
    assert isinstance(model, GoogLeNet) and model.aux_after  # fresh aux heads for fine-tuning at 224
    x, ref = exported["inputs"]["b1_r224"], exported["refs"]["b1_r224"]
    with torch.no_grad():
        assert (model(x) - ref).abs().max().item() <= 1e-5


# ---------------------------------------------------------------------------------------------
# CLI and run folders


def test_cli_export_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = make_run(tmp_path, "r2")
    assert main(["export", str(run), "--format", "state_dict"]) == 0
    out = capsys.readouterr().out
    target = run / "export" / "model.pt"
    assert target.is_file() and (run / "export" / "model.json").is_file()
    t = tiny_topology()
    for text in (str(target), "state_dict", "KB", f"{t.macs(DEPLOY):,}", f"{t.params():,}", "val acc 0.9000",
                 "test acc 0.8900", "digits at 32x32"):
        assert text in out, text
    assert main(["export", str(run), "--format", "torchscript", "-o", str(tmp_path)]) == 0
    assert (tmp_path / "model.torchscript.pt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_interrupted_run_exports_best_completed_trial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, models = make_run(tmp_path, "cut", best=False, trials=(
        ("t0", "completed", 0.50, True),   # lower case, as hebbnas search writes it
        ("t1", "STOPPED", 0.70, True),      # the best completed trial with a checkpoint
        ("t2", "ERROR", 0.90, True),
        ("t3", "RUNNING", 0.95, True),
        ("t4", "TERMINATED", 0.99, False),  # best of all, but its checkpoint never got written
        ("t5", "PENDING", float("nan"), False),
    ))
    out = tmp_path / "cut.pt"
    assert main(["export", str(run), "--format", "state_dict", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "exporting trial t1" in printed and "(trial t1)" in printed
    meta = read_metadata(out)
    assert meta["source"]["trial_id"] == "t1" and meta["val_acc"] == 0.70
    x = torch.randn(2, 3, PROXY, PROXY)
    with torch.no_grad():
        assert torch.allclose(hebbnas.load(out)(x), models["t1"](x), atol=1e-6)


def test_interrupted_run_exports_the_weights_it_ranks_by(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Defect: the export chose by any-epoch accuracy while the checkpoint holds last-epoch weights."""
    run, models = make_run(tmp_path, "cut", best=False, trials=(
        ("t0", "stopped", 0.60, True, 0.95),   # a great early epoch, but its last-epoch weights score 0.60
        ("t1", "completed", 0.80, True, 0.80),  # the better network as saved
    ))
    assert main(["export", str(run), "--format", "state_dict", "-o", str(tmp_path / "m.pt")]) == 0
    printed = capsys.readouterr().out
    assert "exporting trial t1" in printed and "val acc 0.8000" in printed
    assert read_metadata(tmp_path / "m.pt")["val_acc"] == 0.80


def test_exporting_a_checkpoint_never_overwrites_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Defect: `hebbnas export runs/X/best/model.pt --format state_dict` wrote over its own input."""
    run, models = make_run(tmp_path, "r")
    ckpt = run / "best" / "model.pt"
    before = ckpt.read_bytes()
    assert main(["export", str(ckpt), "--format", "state_dict"]) == 0
    assert ckpt.read_bytes() == before
    assert (run / "best" / "export" / "model.pt").is_file()  # the default: export/ beside the checkpoint
    capsys.readouterr()
    assert main(["export", str(ckpt), "--format", "state_dict", "--out", str(ckpt)]) == 2
    assert "is the checkpoint being exported" in _one_line_error(capsys)
    assert ckpt.read_bytes() == before


@pytest.mark.parametrize("statuses", [("RUNNING", "ERROR", "PENDING"), ()])
def test_interrupted_run_without_completed_trial(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 statuses: tuple[str, ...]) -> None:
    run, _ = make_run(tmp_path, "early", best=False,
                      trials=tuple((f"t{i}", s, 0.5, True) for i, s in enumerate(statuses)))
    assert main(["export", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"hebbnas export: error: no trial of {run} completed; nothing to export"
    assert not (run / "export").exists() or not list((run / "export").iterdir())


# ---------------------------------------------------------------------------------------------
# bad input: one line, exit code 2, nothing left behind


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("hebbnas export: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_not_a_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty")]) == 2
    assert "is not a hebbnas run folder" in _one_line_error(capsys)
    assert main(["export", str(tmp_path / "missing")]) == 2
    assert "no such run folder" in _one_line_error(capsys)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert main(["export", str(tmp_path / "junk.pt")]) == 2
    assert "cannot read" in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "junk.pt"]


def test_unknown_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path), "--format", "tflite"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'tflite'" in err and err.count("\n") == 1
    with pytest.raises(HebbnasError, match="unknown export format 'tflite'"):
        export_run(tmp_path, "tflite")
    with pytest.raises(HebbnasError, match="unknown export format"):
        export_model(build(tiny_topology(), aux=False), tmp_path / "m.x", "tflite")


def test_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = make_run(tmp_path, "r3")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["export", str(run), "-o", str(tmp_path / "no" / "such" / "dir" / "m.pt2")]) == 2
    assert "does not exist" in _one_line_error(capsys)
    (tmp_path / "afile").write_text("x")
    assert main(["export", str(run), "-o", str(tmp_path / "afile" / "m.pt2")]) == 2
    _one_line_error(capsys)
    (tmp_path / "m.pt").mkdir()
    assert main(["export", str(run), "--format", "state_dict", "-o", str(tmp_path / "m.json")]) == 2
    _one_line_error(capsys)
    if os.geteuid() != 0:  # root writes anywhere, so a read-only directory only tests something for others
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            assert main(["export", str(run), "-o", str(ro / "m.pt2")]) == 2
            assert "cannot write" in _one_line_error(capsys)
        finally:
            ro.chmod(0o755)
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert set(after) - set(before) <= {Path("afile"), Path("m.pt"), Path("ro")}


@pytest.mark.parametrize("fmt", ["torchscript", "state_dict"])
def test_failure_after_writing_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    run, _ = make_run(tmp_path, "r4")
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def broken(*args: object, **kwargs: object) -> None:
        raise HebbnasError("exported model disagrees with the eager model on input (3, 3, 224, 224); nothing written")

    monkeypatch.setattr("hebbnas.export.write.check_file", broken)
    assert main(["export", str(run), "--format", fmt, "-o", str(out_dir / "m.pt")]) == 2
    assert "disagrees" in _one_line_error(capsys)
    assert list(out_dir.iterdir()) == []  # neither the file, its JSON, nor a temporary


def test_existing_file_is_replaced_atomically(exported: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "m.pt"
    target.write_bytes(b"old")
    res = export_model(exported["model"], target, "state_dict")
    assert res.path == target and detect_format(target) == "state_dict"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.pt"]
    assert read_metadata(target)["input"] == list(DEPLOY)  # default metadata from the topology alone


NPZ = '''
    """An export format in one file: the weights as numpy arrays, the metadata as JSON inside the archive."""

    from __future__ import annotations

    import json
    from pathlib import Path
    from typing import Any

    import numpy as np
    import torch
    from torch import nn

    from hebbnas import Topology, build
    from hebbnas.export import Format, register
    from hebbnas.export.common import dynamic
    from hebbnas.model import inference_state_dict


    @register
    class Npz(Format):
        name = "npz"
        summary = "numpy arrays"
        file_name = "model.npz"
        load_hint = "numpy.load(path)"

        def write(self, model: nn.Module, path: Path, meta: dict[str, Any], shape: tuple[int, int, int],
                  min_size: int) -> tuple[Path, ...]:
            meta["dynamic"] = dynamic(min_size, None, 1)  # any batch, any size from the smallest the net takes
            arrays = {k: v.detach().cpu().numpy() for k, v in inference_state_dict(model).items()}
            with open(path, "wb") as f:  # a file object: numpy adds no suffix to the temporary name
                np.savez(f, __hebbnas__=np.array(json.dumps(meta)), **arrays)
            return ()

        @classmethod
        def recognises(cls, path: Path) -> bool:
            return path.suffix == ".npz"

        def load(self, path: Path) -> nn.Module:
            with np.load(path) as z:
                sd = {k: torch.from_numpy(z[k]) for k in z.files if k != "__hebbnas__"}
            model = build(Topology.from_dict(self.metadata(path)["topology"]), aux=False)
            model.load_state_dict(sd)
            return model.eval()

        def metadata(self, path: Path) -> dict[str, Any]:
            with np.load(path) as z:
                return json.loads(str(z["__hebbnas__"]))
'''


def test_a_new_format_is_one_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A format written as one new module: `hebbnas export --format` offers and writes it (verified against
    the eager model), and `hebbnas.load` recognises its files by asking it."""
    from hebbnas.export import FORMATS
    from tests.plugins import plugged

    run, models = make_run(tmp_path, "r-npz")
    target = tmp_path / "out" / "best.npz"
    target.parent.mkdir()
    assert main(["export", str(run), "--format", "npz", "-o", str(target)]) == 2  # not a format yet
    assert "invalid choice: 'npz'" in capsys.readouterr().err
    with plugged(tmp_path, "npz_format", NPZ, FORMATS, "npz"):
        assert main(["export", "--help"]) == 0
        assert "or npz (numpy arrays)" in " ".join(capsys.readouterr().out.split())
        assert main(["export", str(run), "--format", "npz", "-o", str(target)]) == 0
        assert f"wrote {target} (npz," in capsys.readouterr().out
        assert detect_format(target) == "npz" and read_metadata(target)["format"] == "npz"
        x = torch.randn(2, 3, PROXY, PROXY, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            torch.testing.assert_close(hebbnas.load(target)(x), models["best"](x))
    with pytest.raises(HebbnasError, match=r"unknown export format 'npz' for --format \(known: pt2, torchscript,"):
        get_format("npz")

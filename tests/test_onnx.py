"""ONNX export: dynamic batch and H/W, metadata in metadata_props, checked in onnxruntime; bad paths.

Skipped where onnx/onnxruntime are not installed (they are the optional extra ``hebbnas[onnx]``, also in
``[dev]``); the missing-dependency error is tested either way.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import hebbnas
from hebbnas import HebbnasError
from hebbnas.cli import main
from hebbnas.export import detect_format, export_run, load_trainable, read_metadata
from hebbnas.export.onnx import TOLERANCE as ONNX_TOLERANCE

from tests.builders import DEPLOY, MEAN, PROXY, STD, make_run, tiny_topology

HAVE_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="onnx/onnxruntime not installed (pip install 'hebbnas[onnx]')")


pytestmark = pytest.mark.usefixtures("one_thread_module")  # tiny convolutions: one thread is faster


@pytest.fixture(scope="module")
def onnx_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not HAVE_ONNX:
        pytest.skip("onnx/onnxruntime not installed")
    root = tmp_path_factory.mktemp("onnx")
    run, models = make_run(root, "r1")
    res = export_run(run, "onnx")
    return {"run": run, "model": models["best"], "res": res}


@needs_onnx
def test_onnx_export_runs_in_onnxruntime_without_hebbnas(onnx_run: dict[str, Any], tmp_path: Path) -> None:
    res, model = onnx_run["res"], onnx_run["model"]
    assert res.path == onnx_run["run"] / "export" / "model.onnx" and res.format == "onnx"
    assert res.max_abs_diff is not None and 0 <= res.max_abs_diff <= ONNX_TOLERANCE
    g = torch.Generator().manual_seed(3)
    inputs = {f"{b}x{h}x{w}": torch.randn(b, 3, h, w, generator=g)
              for b, h, w in ((1, 224, 224), (5, PROXY, PROXY), (2, 31, 45), (3, 97, 64))}
    np.savez(tmp_path / "in.npz", **{k: v.numpy() for k, v in inputs.items()})
    script = (
        "import json, sys, numpy as np, onnx, onnxruntime as ort\n"
        "sys.modules['hebbnas'] = None\n"
        "p, d, o = sys.argv[1:4]\n"
        "s = ort.InferenceSession(p, providers=['CPUExecutionProvider'])\n"
        "xs = np.load(d)\n"
        "np.savez(o, **{k: s.run(None, {'images': xs[k]})[0] for k in xs.files})\n"
        "meta = {e.key: e.value for e in onnx.load(p).metadata_props}\n"
        "print(json.dumps({'meta': json.loads(meta['hebbnas.json']), 'inputs': [[d.dim_param or d.dim_value "
        "for d in i.type.tensor_type.shape.dim] for i in onnx.load(p).graph.input]}))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(res.path), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["inputs"] == [["batch", 3, "height", "width"]]  # dynamic batch, height and width
    meta = info["meta"]
    t = tiny_topology()
    assert meta["format"] == "onnx" and meta["macs"] == t.macs(DEPLOY) and meta["params"] == t.params()
    assert (meta["mean"], meta["std"], meta["dataset"], meta["resolution"]) == (MEAN, STD, "digits", PROXY)
    assert meta["dynamic"]["height"] == {"min": 31, "max": None, "multiple_of": 1}
    outs = np.load(tmp_path / "out.npz")
    with torch.no_grad():
        for k, x in inputs.items():
            assert np.abs(outs[k] - model(x).numpy()).max() <= ONNX_TOLERANCE, k


@needs_onnx
def test_onnx_load_metadata_and_cli(onnx_run: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = onnx_run["res"]
    assert detect_format(res.path) == "onnx"
    assert read_metadata(res.path)["topology_hash"] == tiny_topology().hash()
    m = hebbnas.load(res.path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (m(x) - onnx_run["model"](x)).abs().max().item() <= ONNX_TOLERANCE
    with pytest.raises(HebbnasError, match="fused inference weights"):
        load_trainable(res.path)
    assert main(["export", str(onnx_run["run"]), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "(onnx," in out and "checked in onnxruntime" in out and "max abs difference" in out
    assert (tmp_path / "m.onnx").is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@needs_onnx
def test_onnx_that_disagrees_is_never_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import hebbnas.export.onnx as ex

    run, _ = make_run(tmp_path, "r2")
    real = ex.onnx_bytes

    def perturbed(model, shape, meta):  # noqa: ANN001, ANN202 - the exported graph gets a wrong bias
        import onnx
        from onnx import numpy_helper

        proto = onnx.load_from_string(real(model, shape, meta))
        init = proto.graph.initializer[-1]
        arr = numpy_helper.to_array(init) + 0.01
        init.CopyFrom(numpy_helper.from_array(arr.astype(np.float32), init.name))
        return proto.SerializeToString()

    monkeypatch.setattr(ex, "onnx_bytes", perturbed)
    assert main(["export", str(run), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "disagrees with PyTorch" in err and "nothing written" in err
    assert not list((run / "export").iterdir())


def test_missing_onnx_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util as iu

    real = iu.find_spec
    monkeypatch.setattr(iu, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    run, _ = make_run(tmp_path, "r3")
    assert main(["export", str(run), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs onnxruntime" in err and "pip install 'hebbnas[onnx]'" in err
    assert not (run / "export" / "model.onnx").exists()


@needs_onnx
def test_not_an_onnx_file(tmp_path: Path) -> None:
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"not a protobuf at all \x00\x01")
    with pytest.raises(HebbnasError, match="not a readable ONNX model"):
        read_metadata(bad)

"""The Python front door: `hebbnas.search(...)` and `hebbnas.probe(...)` run what the commands run and hand
back values; bad input raises HebbnasError (never SystemExit) before any folder or Ray exists."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import hebbnas
from hebbnas.cli import main
from hebbnas.errors import HebbnasError
from tests.builders import make_run
from tests.cluster_helpers import _check_run

OLD_SETTINGS = {  # config.yaml's settings as written before the proxy had its own field (flat, old names)
    "budget": 3e8, "space": "googlenet", "strategy": "tpe", "dataset": "digits", "data_dir": None, "resolution": 32,
    "probe_resolution": 32, "train_subset": 160, "seed_epochs": 1, "probe_images": 64, "trials": 3, "max_epochs": 2,
    "rounds": 1, "grace_period": 1, "reduction_factor": 2, "seed": 0, "cpus_per_trial": 1.0, "gpus_per_trial": 0.0,
    "concurrency": 2, "smoke": True, "fixed": {"optimizer": "adamw"}, "width": 1.0, "prescreen": 0,
    "prescreen_score": "naswot_k", "compile": False, "latency_budget": None, "objectives": ["accuracy"],
    "final_top": 1, "final_seeds": 2, "final": {"epochs": 1, "train_subset": 160, "val_images": None,
                                                "augment": False, "width": 1.0, "resolution": 32, "margin": 0.0},
}


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def test_the_front_door_names_stay_callable_beside_their_modules() -> None:
    import hebbnas.probe as probe_module  # noqa: F401 - binds hebbnas.probe, the module
    import hebbnas.search.rounds  # noqa: F401 - binds hebbnas.search, the package
    from hebbnas.probe import ProbeResult  # noqa: F401 - the modules keep their contents
    from hebbnas.search import SearchSettings  # noqa: F401

    assert callable(hebbnas.search) and callable(hebbnas.probe)
    assert probe_module is hebbnas.probe and ProbeResult.__name__ == "ProbeResult"
    assert SearchSettings.__name__ == "SearchSettings"
    search = inspect.signature(hebbnas.search).parameters
    assert list(search)[:5] == ["budget", "space", "strategy", "out", "smoke"] and search["budget"].default == 1.5e9
    assert list(inspect.signature(hebbnas.probe).parameters)[:2] == ["budget", "out"]
    assert hebbnas.SearchResult.__name__ == "SearchResult" and hebbnas.ProbeRun.__name__ == "ProbeRun"


@pytest.mark.parametrize(("call", "match"), [
    (lambda out: hebbnas.search(budget=-1, out=out), r"--budget must be a positive number"),
    (lambda out: hebbnas.search(budget=3e8, out=out, frobnicate=1), r"unknown search settings \['frobnicate'\]"),
    (lambda out: hebbnas.search(budget=3e8, out=out, proxy_width=2), r"--proxy-width must be a number in \(0, 1\]"),
    (lambda out: hebbnas.search(budget=3e8, out=out, strategy="nope"), r"nope"),
    (lambda out: hebbnas.search(budget=1e3, out=out), r"budget"),
    (lambda out: hebbnas.probe(budget="many", out=out), r"--budget must be a positive number"),
    (lambda out: hebbnas.probe(budget=3e8, out=out, threads=-1), r"--threads must be 0"),
    (lambda out: hebbnas.probe(budget=3e8, out=out, trials=3), r"unknown proxy settings \['trials'\]"),
])
def test_bad_input_raises_hebbnas_error_before_any_folder_or_ray(call, match: str, tmp_path: Path) -> None:  # noqa: ANN001
    out, ray_before = tmp_path / "run", _ray_running()  # another test of the session may have left one running
    with pytest.raises(HebbnasError, match=match):
        call(out)
    assert not out.exists() and _ray_running() == ray_before


def test_old_keyword_names_are_taken_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hebbnas.renames import _SAID

    _SAID.clear()
    with pytest.raises(HebbnasError, match=r"--proxy-width must be"):  # width= reached proxy_width
        hebbnas.search(budget=3e8, out=tmp_path / "r", width=2, max_epochs=0)
    assert capsys.readouterr().err.splitlines() == ["width= is now proxy_width=", "max_epochs= is now trial_epochs="]


def test_an_old_config_yaml_is_read_and_its_result_is_a_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A finished run whose config.yaml predates the proxy field: --resume summarises it, from_run reads it."""
    from hebbnas.renames import _SAID

    run, models = make_run(tmp_path, "old", trials=(("t_best", "completed", 0.9, True),))
    (run / "config.yaml").write_text(yaml.safe_dump({"settings": OLD_SETTINGS, "space": {"name": "googlenet",
                                                                                         "base": "googlenet"}}))
    (run / "final.csv").write_text("network,control,seeds,val_acc\ncontrol,True,2,0.5\n")
    metrics = json.loads((run / "best" / "metrics.json").read_text())
    (run / "best" / "metrics.json").write_text(json.dumps({**metrics, "round": 1, "budget": 3e8}))
    _SAID.clear()
    result = hebbnas.SearchResult.from_run(run)
    err = capsys.readouterr().err
    assert "settings.max_epochs is now settings.trial_epochs" in err and "settings.proxy.proxy_width" in err
    s = result.settings
    assert (s.trial_epochs, s.proxy.proxy_width, s.proxy.train_subset, s.final["proxy_width"]) == (2, 1.0, 160, 1.0)
    assert result.run == run.absolute() and list(result.trials["trial_id"]) == ["t_best"]
    assert result.final is not None and list(result.final["network"]) == ["control"]
    assert result.best.metrics["trial_id"] == "t_best" and result.best.topology.name == "tiny"
    model = result.best.load()
    assert isinstance(model, nn.Module) and not model.training
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model(x), models["best"](x), atol=1e-5)
    assert main(["search", "--resume", str(run)]) == 0
    assert "is complete" in capsys.readouterr().out


def test_an_unfinished_run_is_no_result(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path, "cut", best=False)
    (run / "config.yaml").write_text(yaml.safe_dump({"settings": OLD_SETTINGS}))
    with pytest.raises(HebbnasError, match="did not finish"):
        hebbnas.SearchResult.from_run(run)


@pytest.mark.slow
def test_search_and_probe_from_python_with_smoke(tmp_path: Path) -> None:
    """`hebbnas.search(..., smoke=True)` starts a local Ray, runs the smoke search (final stage included),
    shuts Ray down, and returns the best network (which loads) and the trials; `hebbnas.probe` likewise.
    The search is the default strategy's (reallocate) end-to-end check too."""
    out = tmp_path / "run"
    from hebbnas.search.ray_cluster import shutdown_ray

    shutdown_ray()  # a Ray another test left running would be used, and left running: start from none
    try:
        result = hebbnas.search(budget=3e8, smoke=True, out=out)
    finally:
        shutdown_ray()  # also when the search failed: no Ray outlives the test
    assert not _ray_running()
    assert result.run == out.absolute() and (out / "best" / "metrics.json").is_file()
    assert len(result.trials) > 0 and set(result.trials["stage"]) == {"search", "final"}
    assert (result.trials["stage"] == "search").sum() == result.settings.trials == 3
    assert result.final is not None and result.final["control"].any()
    best = result.best
    assert best.metrics["macs"] == best.topology.macs((3, 224, 224)) <= 3e8
    assert best.metrics["trial_id"] in set(result.trials["trial_id"])
    model = best.load()
    assert isinstance(model, nn.Module) and model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["command"].startswith("hebbnas search --budget 3e8 --space googlenet") and "--smoke" in cfg["command"]
    assert cfg["settings"]["proxy"]["train_subset"] == 160 and cfg["settings"]["trial_epochs"] == 2
    # the default strategy, reallocate, end to end (one smoke search serves both: CI time): the run folder keeps
    # every promise, the seed was probed, round 1 trains the start once, round 2 tries two different moves of it
    assert result.settings.strategy == "reallocate" and result.settings.rounds == 2
    df = _check_run(out, 3e8, "reallocate", 3)
    assert (out / "probe" / "round-1.npz").is_file()
    first, moves = df[df["round"] == 1], df[df["round"] == 2]
    assert len(first) == 1 and sorted(moves["move.option"]) == [0, 1]
    assert moves["topology_hash"].nunique() == 2 and first["topology_hash"].iloc[0] not in set(moves["topology_hash"])

    p = hebbnas.probe(budget=3e8, out=tmp_path / "probe", smoke=True, threads=1)
    assert p.topology.macs((3, 224, 224)) <= 3e8 and (p.report / "report.md").is_file()
    assert p.out == tmp_path / "probe" and set(p.probe.modules) == {m.name for m in p.seed_topology.modules}
    assert json.loads((p.out / "probe.json").read_text())["proxy_width"] == 1.0

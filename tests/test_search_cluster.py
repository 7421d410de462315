"""End-to-end searches on real Ray: a head node started here, `--smoke` runs, kill and resume, PRUNED.

One Ray head (started by `ray start --head --block` on 127.0.0.1 in its own process group and temp dir)
serves every test of this module that passes `--address`; it is killed by process group afterwards,
and so is exactly the head this module started, never another Ray on the machine. The kill/resume test
runs the default local mode (the CLI starts its own Ray), killing the whole process group with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.cluster_helpers import (
    BUDGET,
    ENV,
    HEBBNAS,
    RAY,
    _alive,
    _check_run,
    _descendants,
    _free_port,
    _kill_group,
    _no_asha_space,
    _pids_mentioning,
    _search,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_head() -> Iterator[tuple[str, Path]]:
    """A Ray head on 127.0.0.1 (2 CPUs, no dashboard) in its own temp dir and process group."""
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="hbr", dir="/tmp"))  # short: Ray's socket paths have a length limit
    proc = subprocess.Popen(
        [RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
         "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", str(temp), "--block"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    started = threading.Event()
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Ray runtime started" in line:
                started.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if not started.wait(120):
            raise RuntimeError("ray head did not start:\n" + "".join(lines[-20:]))
        yield f"127.0.0.1:{port}", temp
    finally:
        _kill_group(proc.pid)
        proc.wait(30)
        for pid in _pids_mentioning(str(temp)):  # anything of this head that left the group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        import shutil

        shutil.rmtree(temp, ignore_errors=True)


def _layout(run: Path) -> set[str]:
    """The run folder's shape: files and folders with trial ids and round numbers abstracted."""
    out = set()
    for p in run.rglob("*"):
        rel = p.relative_to(run).parts
        if rel[0] == "tune":
            continue
        if rel[0] == "trials" and len(rel) > 1:
            rel = ("trials", "<id>", *rel[2:])
        if rel[0] == "report" and len(rel) > 2 and rel[2] == "plots":
            rel = rel[:3]
        out.add("/".join(rel))
    return out


@pytest.fixture(scope="module")
def hebbian_run(ray_head: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    address, _ = ray_head
    run = tmp_path_factory.mktemp("cluster") / "hebbian"
    res = _search("--budget", str(BUDGET), "--smoke", "--strategy", "hebbian", "--address", address, "--out", str(run))
    assert res.returncode == 0, res.stderr[-3000:]
    return run


def test_smoke_search_runs_on_the_given_cluster(hebbian_run: Path, ray_head: tuple[str, Path]) -> None:
    import yaml

    address, temp = ray_head
    run = hebbian_run
    df = _check_run(run, BUDGET, "hebbian", 3)
    assert (run / "probe" / "round-1.npz").is_file()
    assert any(c.startswith("derive.") for c in df.columns)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["ray"]["local"] is False
    # it connected to this head (the head's session logs hold the CLI's driver log) ...
    port = address.rsplit(":", 1)[1]
    assert cfg["ray"]["address"].endswith(f":{port}")
    drivers = list(temp.glob("session_*/logs/python-core-driver-*.log"))
    assert drivers, "the search never connected to the test's head node"
    # ... and its trials ran on that head's node
    node_ids = {n for n in cfg["ray"]["node_ids"]}
    assert set(df["node_id"]) <= node_ids and len(node_ids) == 1


def test_baselines_share_the_run_folder_layout(hebbian_run: Path, ray_head: tuple[str, Path],
                                               tmp_path: Path) -> None:
    address, _ = ray_head
    layouts = {"hebbian": _layout(hebbian_run)}
    for strategy in ("random", "paper"):
        run = tmp_path / strategy
        res = _search("--budget", str(BUDGET), "--smoke", "--strategy", strategy, "--trials", "1",
                      "--address", address, "--out", str(run))
        assert res.returncode == 0, res.stderr[-3000:]
        df = _check_run(run, BUDGET, strategy, 1)
        knob_groups = {c.split(".")[0] for c in df.columns if c.startswith(("derive.", "width.", "train."))}
        assert knob_groups == ({"width"} if strategy == "random" else set())  # one recipe: no training knob
        assert set(df["drawn_by"]) == ({"random"} if strategy == "random" else {"start-up"})
        if strategy == "paper":
            assert df["topology_hash"].nunique() == 1  # the paper's net
        layouts[strategy] = _layout(run)
    assert layouts["random"] == layouts["paper"] == layouts["hebbian"]


def test_probe_guided_strategies_run_a_smoke_search(ray_head: tuple[str, Path], tmp_path: Path) -> None:
    address, _ = ray_head
    # tpe (reallocate, the default strategy, is checked on test_api's smoke search: CI time): the seed was probed,
    # and tpe trains the paper's widths first (every multiplier 1), then the derivations
    run = tmp_path / "tpe"
    res = _search("--budget", str(BUDGET), "--smoke", "--strategy", "tpe", "--trials", "3",
                  "--final-top", "0", "--address", address, "--out", str(run))  # the final stage: tests of its own
    assert res.returncode == 0, res.stderr[-3000:]
    df = _check_run(run, BUDGET, "tpe", 3)
    assert "width.inception3a.b1" in df.columns and (run / "probe" / "round-1.npz").is_file()
    widths = df[[c for c in df.columns if c.startswith("width.")]]
    assert (widths == 1.0).all(axis=1).sum() == 1  # exactly one trial is the paper's widths
    # slim samples its energy
    run = tmp_path / "slim"
    res = _search("--budget", str(BUDGET), "--smoke", "--strategy", "slim", "--trials", "2", "--final-top", "0",
                  "--address", address, "--out", str(run))
    assert res.returncode == 0, res.stderr[-3000:]
    df = _check_run(run, BUDGET, "slim", 2)
    assert "slim.energy" in df.columns and (run / "probe" / "round-1.npz").is_file()


def test_latency_budget_rejects_before_training_and_objectives_write_the_front(ray_head: tuple[str, Path],
                                                                               tmp_path: Path) -> None:
    from hebbnas.cli import main

    address, _ = ray_head
    # a budget no candidate meets: every trial measured and rejected, none trained; one line
    run = tmp_path / "tight"
    res = _search("--budget", str(BUDGET), "--smoke", "--strategy", "random", "--trials", "2",
                  "--latency-budget", "0.001", "--address", address, "--out", str(run))
    assert res.returncode == 2 and "no trial trained to the end" in res.stderr, res.stderr[-2000:]
    df = pd.read_csv(run / "trials.csv", dtype={"trial_id": str})
    df = df[df["stage"] == "search"]
    assert len(df) == 2 and (df["status"] == "rejected").all() and (df["epochs"] == 0).all()
    assert (df["latency_ms"] > 0.001).all() and df["error"].str.contains("budget 0.001 ms").all()
    assert len(list((run / "latency").glob("*.json"))) == df["topology_hash"].nunique()  # cached per topology
    # accuracy and latency: every trial measured, the front written, any trial of it exported (the front is of
    # the search's trials: no final stage, which hebbian_run checks on this cluster; two trials, one wave)
    run = tmp_path / "front"
    res = _search("--budget", str(BUDGET), "--smoke", "--strategy", "random", "--trials", "2",
                  "--objectives", "accuracy,latency", "--latency-budget", "1e6", "--final-top", "0",
                  "--address", address, "--out", str(run))
    assert res.returncode == 0, res.stderr[-3000:]
    df = _check_run(run, BUDGET, "random", 2)
    assert (df["latency_ms"] > 0).all() and df["latency_iqr_ms"].notna().all()
    front = pd.read_csv(run / "best" / "pareto.csv", dtype={"trial_id": str})
    assert 1 <= len(front) <= 2 and set(front["trial_id"]) <= set(df["trial_id"])
    tid = front["trial_id"].iloc[-1]
    assert main(["export", str(run), "--trial", tid, "--format", "state_dict", "-o", str(tmp_path / "m.pt")]) == 0


def test_gpu_request_on_a_cpu_cluster_is_refused(ray_head: tuple[str, Path], tmp_path: Path) -> None:
    address, _ = ray_head
    run = tmp_path / "gpu"
    res = _search("--budget", str(BUDGET), "--smoke", "--gpus-per-trial", "1", "--address", address,
                  "--out", str(run), timeout=120)
    err = res.stderr.strip()
    assert res.returncode == 2 and "has no GPU" in err and "\n" not in err and "Traceback" not in err
    assert not run.exists()


def test_asha_stopped_trials_are_pruned_in_a_real_tune_run(ray_head: tuple[str, Path], tmp_path: Path) -> None:
    """A real Tuner with the search's searcher and ASHA on a trainable whose accuracy is its knob.

    Trials whose knob is below 0.1 diverge (raise): they are FAILED and the search goes on.
    """
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from hebbnas.search.searcher import Sampler, make_searcher, read_optuna_states
    from hebbnas.search.trial import trial_dirname
    from hebbnas.space import Distribution

    address, _ = ray_head
    sampler = Sampler("paper", params=(("train.lr", Distribution("float", 0.0, 1.0)),))
    searcher = make_searcher(sampler, max_epochs=4, seed=3, n_trials=8)
    from hebbnas.search.ray_cluster import connect_ray

    connect_ray(address)  # joins in token mode: the head keeps Ray's default token auth
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test file
    try:
        tuner = tune.Tuner(
            _knob_is_accuracy,
            tune_config=tune.TuneConfig(
                search_alg=searcher, num_samples=8, max_concurrent_trials=1, reuse_actors=True,
                trial_dirname_creator=trial_dirname,
                scheduler=ASHAScheduler(time_attr="epoch", metric="val_acc", mode="max", max_t=4,
                                        grace_period=1, reduction_factor=2)),
            run_config=tune.RunConfig(name="pruned", storage_path=str(tmp_path), verbose=0),
        )
        grid = tuner.fit()
    finally:
        ray.shutdown()
    from hebbnas.errors import error_line as _error_line

    assert len(grid) == 8
    failed = {Path(str(r.path)).name for r in grid if r.error is not None}
    for r in grid:
        if r.error is not None:
            assert _error_line(r.error).startswith("training diverged")
    epochs = {r.metrics["trial_id"]: r.metrics["epoch"] for r in grid if r.error is None}
    states = read_optuna_states(grid.experiment_path)
    assert all(states[t] == "FAIL" for t in failed) and len(states) == 8
    stopped = {t for t, e in epochs.items() if e < 4}
    assert stopped, "ASHA stopped no trial; the test needs at least one"
    assert all(states[t] == "PRUNED" for t in stopped)
    assert all(states[t] == "COMPLETE" for t in set(epochs) - stopped)


def _knob_is_accuracy(config: dict) -> None:
    from ray import tune

    from hebbnas.errors import HebbnasError

    if config["train.lr"] < 0.1:
        raise HebbnasError("training diverged: loss is nan at epoch 0")
    for e in range(1, 5):
        tune.report({"val_acc": float(config["train.lr"]), "epoch": e})


def test_killed_search_resumes_without_losing_or_repeating_trials(tmp_path: Path) -> None:
    """SIGKILL the whole process group (driver + its local Ray) mid-trial, then --resume to the end.

    The kill lands while the first two trials (run concurrently) are both mid-way: each has reported and
    checkpointed at least one epoch, none has finished. After the resume every trial finishes, the two
    continue from their checkpoints (never from scratch), and no trial is sampled twice or lost.
    """
    run = tmp_path / "killed"
    log = tmp_path / "first.log"
    n_trials, epochs = 3, 8  # enough epochs that the kill lands mid-way even on a fast machine
    # no final stage: the search's trials are what this kill hits (a kill in the final stage: the next test)
    space = _no_asha_space(tmp_path, epochs, final_top=0)
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [*HEBBNAS, "search", "--budget", str(BUDGET), "--strategy", "random", "--space", str(space),
             "--out", str(run)],
            env=ENV, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            text = log.read_text()
            running = {ln.split()[0] for ln in text.splitlines() if ln.startswith("  ") and ln.endswith("running")}
            if len(running) >= 2 or "completed" in text:
                break
            time.sleep(0.2)
        assert "completed" not in log.read_text(), "a trial finished before the kill:\n" + log.read_text()
        time.sleep(1.0)  # away from the state upload that follows each report (Ray's copy is not atomic)
        assert proc.poll() is None, "the search ended before it could be killed:\n" + log.read_text()[-2000:]
        family = _descendants(proc.pid)  # driver, its local Ray (gcs, raylet, ...) and the trial workers
        assert len(family) > 3
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        _kill_group(proc.pid)
    # nothing of the first search survives: the local Ray and its workers died with the process group
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(p) for p in family):
        time.sleep(0.5)
    leftovers = [p for p in family if _alive(p)]
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"processes of the killed search survived: {leftovers}"
    exp = run / "tune" / "round-1"
    before = {d.name: _epochs(d) for d in exp.iterdir() if d.is_dir()}
    midway = {t for t, e in before.items() if e}
    assert len(midway) == 2 and all(max(before[t]) < epochs for t in midway), before
    assert not (run / "best").exists()

    # a moved folder is refused in one line naming where it ran (defect: it resumed against the old
    # absolute storage path, silently started over and left stale rows in trials.csv); moved back, it resumes
    moved = tmp_path / "elsewhere" / "killed"
    moved.parent.mkdir()
    shutil.move(str(run), str(moved))
    res = _search("--resume", str(moved))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and f"move it back to {run}" in res.stderr, res.stderr
    shutil.move(str(moved), str(run))
    res = _search("--resume", str(run))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "resuming" in res.stdout
    df = _check_run(run, BUDGET, "random", n_trials)
    assert (df["status"] == "completed").all() and (df["epochs"] == epochs).all()
    trial_dirs = sorted(d.name for d in exp.iterdir() if d.is_dir())
    assert trial_dirs == sorted(df["trial_id"])  # no extra trial was sampled after the resume
    for t in trial_dirs:
        seq = _epochs(exp / t)
        assert seq == list(range(1, epochs + 1)), f"{t} lost or repeated epochs: {seq}"
    for t in midway:  # the trials killed mid-way continued from their checkpoints
        resumed = [json.loads(ln)["resumed_from"] for ln in (exp / t / "result.json").open()]
        assert max(resumed) == max(before[t]) > 0
    states = json.loads((run / "best" / "metrics.json").read_text())
    assert states["stage"] == "search" and states["trial_id"] in set(df["trial_id"])  # the stage is off
    # the Optuna journal moved with the folder and the resume kept its one study (optuna-dashboard's view)
    import optuna

    from hebbnas.search.searcher import journal_storage

    storage = journal_storage(run / "optuna.journal")
    assert [st.study_name for st in optuna.get_all_study_summaries(storage)] == ["round-1"]
    ot = optuna.load_study(study_name="round-1", storage=storage).trials
    assert sum(t.state.name == "COMPLETE" for t in ot) == n_trials
    assert not any(t.state.name == "RUNNING" for t in ot)


def test_a_search_killed_in_its_final_stage_resumes_without_losing_or_repeating_units(tmp_path: Path) -> None:
    """SIGKILL the whole process group while the final stage's first units are mid-way, then --resume: the
    rounds are read back (no trial trains again), every unit continues from its checkpoint and finishes, no
    unit is added or lost, and the decision and best/ come from the stage."""
    import yaml

    from hebbnas.space import SPACES_DIR

    run, log = tmp_path / "killed-final", tmp_path / "first.log"
    epochs = 8
    raw = yaml.safe_load((SPACES_DIR / "googlenet.yaml").read_text())
    raw["proxy"].update(train_subset=160, resolution=32, probe_resolution=32, seed_epochs=1, probe_images=64)
    raw["search"].update(trials=2, trial_epochs=1, grace_period=1, concurrency=2, cpus_per_trial=1, final_top=1,
                         final_seeds=2)
    raw["final"] = {"epochs": epochs}
    space = tmp_path / "final.yaml"
    space.write_text(yaml.safe_dump(raw))
    with open(log, "w") as fh:
        proc = subprocess.Popen([*HEBBNAS, "search", "--budget", str(BUDGET), "--strategy", "random", "--space",
                                 str(space), "--out", str(run)], env=ENV, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            text = log.read_text().split("final stage:", 1)
            stage = text[1] if len(text) > 1 else ""
            running = {ln.split()[0] for ln in stage.splitlines() if ln.startswith("  ") and ln.endswith("running")}
            if len(running) >= 2 or "completed" in stage:
                break
            time.sleep(0.2)
        stage = log.read_text().split("final stage:", 1)[-1]
        assert "completed" not in stage, "a unit finished before the kill:\n" + log.read_text()
        time.sleep(1.0)  # away from the state upload that follows each report
        assert proc.poll() is None, "the search ended before it could be killed:\n" + log.read_text()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        _kill_group(proc.pid)
    exp = run / "tune" / "final"
    before = {d.name: _epochs(d) for d in exp.iterdir() if d.is_dir()}
    midway = {t for t, e in before.items() if e}
    assert len(midway) >= 1 and all(max(before[t]) < epochs for t in midway), before
    search_dirs = sorted(d.name for d in (run / "tune" / "round-1").iterdir() if d.is_dir())
    assert not (run / "best").exists()

    res = _search("--resume", str(run))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "final stage: resuming" in res.stdout and "decision:" in res.stdout
    df = _check_run(run, BUDGET, "random", 2)
    assert sorted(d.name for d in (run / "tune" / "round-1").iterdir() if d.is_dir()) == search_dirs
    every = pd.read_csv(run / "trials.csv", dtype={"trial_id": str})
    final = every[every["stage"] == "final"]
    units = sorted(d.name for d in exp.iterdir() if d.is_dir())
    assert units == sorted(final["trial_id"]) and len(units) == 4  # control + 1 finalist, 2 seeds: none added
    for t in units:
        assert _epochs(exp / t) == list(range(1, epochs + 1)), f"{t} lost or repeated epochs"
    for t in midway:
        resumed = [json.loads(ln)["resumed_from"] for ln in (exp / t / "result.json").open()]
        assert max(resumed) == max(before[t]) > 0
    assert len(df) == 2


def _epochs(trial_dir: Path) -> list[int]:
    p = trial_dir / "result.json"
    if not p.is_file():
        return []
    return [int(json.loads(ln)["epoch"]) for ln in p.read_text().splitlines() if ln.strip()]


def _flaky_or_broken(config: dict) -> None:
    """A trial body: 'crash' kills its worker on the first attempt (infrastructure), 'broken' raises."""
    from ray import tune

    from hebbnas.search.trial import run_guarded

    def body() -> None:
        marker = Path(config["dir"]) / f"{config['kind']}-attempts"
        attempts = int(marker.read_text()) + 1 if marker.exists() else 1
        marker.write_text(str(attempts))
        if config["kind"] == "crash" and attempts == 1:
            os._exit(1)  # the worker process dies, as under the OOM killer or a lost node
        if config["kind"] == "broken":
            raise ValueError("the model raised")
        tune.report({"val_acc": 0.5, "epoch": 1})

    run_guarded(body, round_=1)


def test_infrastructure_failures_retry_and_model_failures_are_final(tmp_path: Path) -> None:
    """Defect: a trial lost to the infrastructure was final like a diverged one."""
    import ray
    from ray import tune

    from hebbnas.trials import TRIAL_ERROR, TrialStatus, finished_status
    from hebbnas.search.trial import INFRA_RETRIES, failure_config

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            tune.with_resources(_flaky_or_broken, {"cpu": 1}),
            param_space={"kind": tune.grid_search(["crash", "broken"]), "dir": str(tmp_path)},
            tune_config=tune.TuneConfig(metric="val_acc", mode="max"),
            run_config=tune.RunConfig(name="failures", storage_path=str(tmp_path / "tune"), verbose=0,
                                      failure_config=failure_config()),
        )
        grid = tuner.fit()
    finally:
        ray.shutdown()
    assert INFRA_RETRIES >= 1
    by_kind = {r.config["kind"]: r for r in grid}
    crash, broken = by_kind["crash"], by_kind["broken"]
    assert (tmp_path / "crash-attempts").read_text() == "2"   # retried once, then finished
    assert crash.error is None and crash.metrics["val_acc"] == 0.5
    assert finished_status(crash.metrics, False, 1) is TrialStatus.COMPLETED
    assert (tmp_path / "broken-attempts").read_text() == "1"  # never retried
    assert broken.error is None and "ValueError: the model raised" in broken.metrics[TRIAL_ERROR]
    assert finished_status(broken.metrics, False, 1) is TrialStatus.ERROR

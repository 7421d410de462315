"""Many machines, simulated on one with Ray's own `ray.cluster_utils.Cluster` (as Ray's tests do): a head
without CPUs and two one-CPU worker nodes, token auth on every node and the driver. Trials spread over both
workers; a worker removed mid-trial costs that trial at most an epoch; a killed driver resumes against
the running cluster; a client whose auth mode differs from the cluster's is told so in one line.

Every process a test starts is ended by the test (the cluster by `Cluster.shutdown`, the search by its
process group), never another Ray on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.cluster_helpers import BUDGET, ENV, HEBBNAS, _kill_group, _no_asha_space

pytestmark = pytest.mark.slow
LOOPBACK = "127.0.0.2"
"""The simulated nodes' address: loopback (nothing leaves the machine), and not 127.0.0.1, which Ray rewrites
to the machine's external address when a driver joins."""


def _reload_ray_auth() -> None:
    """Make this process's Ray read RAY_AUTH_MODE/RAY_AUTH_TOKEN again (it caches them in its C++ config)."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):
        pass


def _restore_env(saved: dict[str, str | None]) -> None:
    """Put RAY_AUTH_MODE/RAY_AUTH_TOKEN back as they were and let Ray read them again: a later test in this
    process (an in-process Tuner in test_search_cluster.py) must not inherit this module's auth mode."""
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _reload_ray_auth()


def _cluster(auth: str, token: str | None) -> Any:
    """A head without CPUs and two one-CPU workers on the loopback, in `auth` mode."""
    os.environ["RAY_AUTH_MODE"] = auth
    if token:
        os.environ["RAY_AUTH_TOKEN"] = token
    _reload_ray_auth()
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "node_ip_address": LOOPBACK,
                                                       "include_dashboard": False})
    c.add_node(num_cpus=1, node_ip_address=LOOPBACK)
    c.add_node(num_cpus=1, node_ip_address=LOOPBACK)
    c.wait_for_nodes()
    return c


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Any, dict[str, str]]]:
    token = secrets.token_hex(16)
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    c = _cluster("token", token)
    try:
        yield c, {**ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    finally:
        c.shutdown()
        _restore_env(saved)


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "w") as fh:
        return subprocess.Popen([*HEBBNAS, "search", *args], env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _results(run: Path) -> dict[str, list[dict[str, Any]]]:
    """Every trial's reported results so far (Tune's result.json lines), by trial id."""
    out = {}
    for f in (run / "tune").glob("round-*/*/result.json"):
        lines = [json.loads(ln) for ln in f.read_text().splitlines() if ln.strip()]
        out[f.parent.name] = lines
    return out


def _journal_trials(run: Path) -> tuple[int, int]:
    """Optuna trials in the run's journal: (trained ones, orphans a kill left between ask and Tune's state)."""
    import optuna

    from hebbnas.search.searcher import ORPHAN_ATTR, journal_storage

    storage = journal_storage(run / "optuna.journal")
    trials = [t for s in optuna.get_all_study_summaries(storage)
              for t in optuna.load_study(study_name=s.study_name, storage=storage).trials]
    orphans = [t for t in trials if ORPHAN_ATTR in t.user_attrs]
    assert all(t.state == optuna.trial.TrialState.FAIL and not t.intermediate_values for t in orphans)
    return len(trials) - len(orphans), len(orphans)


def test_trials_spread_over_two_worker_nodes(cluster: tuple[Any, dict[str, str]], tmp_path: Path) -> None:
    c, env = cluster
    run = tmp_path / "spread"
    t0 = time.perf_counter()
    # the search's trials are what spread; no final stage (test_search_cluster's runs cover it; CI time)
    r = subprocess.run([*HEBBNAS, "search", "--budget", str(BUDGET), "--smoke", "--strategy", "random", "--trials",
                        "4", "--final-top", "0", "--address", c.address, "--out", str(run)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    df = pd.read_csv(run / "trials.csv", dtype={"trial_id": str})
    df = df[df["stage"] == "search"]
    workers = {n["NodeID"] for n in _nodes(c) if n["Resources"].get("CPU", 0) > 0}
    assert len(df) == 4 and set(df["node_id"]) <= workers and df["node_id"].nunique() == 2, df["node_id"].tolist()
    print(f"4 smoke trials on two workers in {time.perf_counter() - t0:.0f} s")


def _nodes(c: Any) -> list[dict[str, Any]]:
    import ray

    ray.init(address=c.address, log_to_driver=False)
    try:
        return [n for n in ray.nodes() if n.get("Alive")]
    finally:
        ray.shutdown()


def test_a_worker_lost_mid_trial_costs_that_trial_at_most_an_epoch(cluster: tuple[Any, dict[str, str]],
                                                                   tmp_path: Path) -> None:
    c, env = cluster
    run = tmp_path / "lost"
    space = _no_asha_space(tmp_path, epochs=4, final_top=0)  # 3 trials of 4 epochs each, ASHA stops none
    proc = _start(["--budget", str(BUDGET), "--strategy", "random", "--space", str(space), "--address", c.address,
                   "--out", str(run)], env, tmp_path / "lost.log")
    t_kill = None
    try:
        deadline = time.time() + 400
        victim = None
        while time.time() < deadline and proc.poll() is None:
            res = _results(run)
            mid = [(tid, rs[-1]) for tid, rs in res.items() if rs and 1 <= rs[-1].get("epoch", 0) < 4]
            if mid:
                victim_tid, last = mid[0]
                victim = last["node_id"]
                break
            time.sleep(0.5)
        assert victim, "no trial got past its first epoch:\n" + (tmp_path / "lost.log").read_text()[-2000:]
        node = next(n for n in c.worker_nodes if n.node_id == victim)
        c.remove_node(node, allow_graceful=False)  # the trial's worker dies with its node
        t_kill = time.perf_counter()
        c.add_node(num_cpus=1, node_ip_address=LOOPBACK)  # capacity back, as a cluster's autoscaler would
        assert proc.wait(600) == 0, (tmp_path / "lost.log").read_text()[-3000:]
    finally:
        _kill_group(proc.pid)
    recovered = time.perf_counter() - t_kill
    df = pd.read_csv(run / "trials.csv", dtype={"trial_id": str})
    df = df[df["stage"] == "search"]
    assert len(df) == 3 and df["trial_id"].is_unique and (df["status"] == "completed").all()
    assert _journal_trials(run) == (3, 0)  # no trial sampled twice
    hist = _results(run)[victim_tid]
    epochs = [h["epoch"] for h in hist]
    resumed = [h.get("resumed_from", 0) for h in hist]
    assert max(resumed) >= 1, resumed  # continued from its checkpoint, not from epoch 0
    assert epochs.count(1) <= 2 and epochs[-1] == 4  # at most one epoch done twice
    row = df.set_index("trial_id").loc[victim_tid]
    assert victim in str(row["nodes"]).split(";") and len(str(row["nodes"]).split(";")) == 2  # both nodes kept
    print(f"worker lost mid-trial: the search finished {recovered:.0f} s after the node was removed")


def test_a_killed_driver_resumes_against_the_running_cluster(cluster: tuple[Any, dict[str, str]],
                                                             tmp_path: Path) -> None:
    c, env = cluster
    run = tmp_path / "driver"
    space = _no_asha_space(tmp_path, epochs=3, final_top=0)  # the search's trials resume; no final stage
    proc = _start(["--budget", str(BUDGET), "--strategy", "random", "--space", str(space), "--address", c.address,
                   "--out", str(run)], env, tmp_path / "first.log")
    try:
        deadline = time.time() + 400
        while time.time() < deadline and proc.poll() is None:
            if any(rs and rs[-1].get("epoch", 0) >= 1 for rs in _results(run).values()):
                break
            time.sleep(0.5)
        time.sleep(1.0)
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)  # the driver only: the cluster is not in its process group
        proc.wait(30)
    finally:
        _kill_group(proc.pid)
    t0 = time.perf_counter()
    r = subprocess.run([*HEBBNAS, "search", "--resume", str(run), "--address", c.address], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    df = pd.read_csv(run / "trials.csv", dtype={"trial_id": str})
    df = df[df["stage"] == "search"]
    assert len(df) == 3 and df["trial_id"].is_unique and (df["status"] == "completed").all(), (
        df[["trial_id", "status", "error"]].to_string() + "\n" + r.stdout[-2000:] + r.stderr[-3000:])
    trained, orphans = _journal_trials(run)
    # no trial trained twice; a kill between Optuna's ask and Tune's saved state leaves one orphan, closed as FAIL
    assert (run / "best" / "metrics.json").is_file() and trained == 3 and orphans <= 1, (trained, orphans)
    print(f"driver killed: the resumed search finished in {time.perf_counter() - t0:.0f} s")


def test_a_client_in_another_auth_mode_is_told_how_to_match(tmp_path: Path) -> None:
    """The cluster runs without authentication (Ray's test utilities' default); hebbnas joins in token mode,
    once with a token of its own and once with none anywhere (no RAY_AUTH_TOKEN, an empty home): one line each."""
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.pop("RAY_AUTH_TOKEN", None)
    c = _cluster("disabled", None)
    base = {k: v for k, v in ENV.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    (tmp_path / "home").mkdir()
    clients = {"own token": {**base, "RAY_AUTH_TOKEN": secrets.token_hex(16)},
               "no token": {**base, "HOME": str(tmp_path / "home")}}
    out = {}
    try:
        for name, env in clients.items():
            t0 = time.perf_counter()
            r = subprocess.run([*HEBBNAS, "search", "--budget", str(BUDGET), "--smoke", "--address", c.address,
                                "--out", str(tmp_path / name.replace(" ", "-"))], env=env, capture_output=True,
                               text=True, timeout=300)
            out[name] = (r, time.perf_counter() - t0)
    finally:
        c.shutdown()
        _restore_env(saved)
    for name, (r, took) in out.items():
        err = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(err) == 1, (name, r.stderr[-2000:])
        assert "authentication mode differs" in err[0] and "RAY_AUTH_MODE" in err[0] and "RAY_AUTH_TOKEN" in err[0], err
        assert took < 120, (name, took)

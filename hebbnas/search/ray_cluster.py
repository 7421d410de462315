"""Ray: connecting (to a cluster, or starting one on this machine), the resources a trial may ask for,
and the environment Ray reads at start.

Authentication stays on: Ray's token auth works for a local instance (the token is generated in the
user's Ray folder), while ``RAY_AUTH_MODE=disabled`` makes a local Ray's GCS and raylets listen on all
interfaces with no authentication, so anyone who can reach the machine can run code in it.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any

from hebbnas.errors import HebbnasError, first_line

REACH_TIMEOUT_S = 5.0
"""How long to wait for a TCP connection to a given cluster address before saying it is not there."""
PING_TIMEOUT_S = 30.0
"""How long a joined cluster may take to run one trivial task before hebbnas says it cannot work there."""


def quiet_ray_env() -> None:
    """Environment Ray reads at import/start: no usage stats, no AIR banner, no snapshot warnings."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def auth_warning() -> str | None:
    """One line when the user turned Ray's authentication off, else None."""
    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "disabled":
        return ("warning: RAY_AUTH_MODE=disabled: Ray will accept unauthenticated connections on every "
                "interface while the search runs; unset it (token auth works locally)")
    return None


def check_reachable(address: str) -> None:
    """Fail in one line, within seconds, when nothing listens at a ``host:port`` cluster address.

    Without this, `ray.init` retries an unreachable GCS for minutes, printing warnings.
    """
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise HebbnasError(f"--address must be auto or HOST:PORT, got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise HebbnasError(f"cannot reach a Ray cluster at {address}: {reason.lower()} "
                           "(is `ray start --head` running there?)") from None


def client_token_mode() -> None:
    """Join clusters in token mode unless the user chose a mode.

    `ray start` keeps token auth by default, but a Ray client sends its token only when RAY_AUTH_MODE
    says token; without it, joining a cluster that kept the default fails as unauthenticated. Ray reads
    the mode when it is imported, so the configuration is refreshed when Ray is already loaded.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    if "ray" in sys.modules:
        try:
            from ray._raylet import AuthenticationTokenLoader, Config

            Config.initialize("")
            AuthenticationTokenLoader.instance().reset_cache()
        except (ImportError, AttributeError):  # a Ray without these: the env var alone must do
            pass


def connect_ray(address: str | None, *, verbose: bool = False) -> str:
    """Connect to a running cluster (`address`, or RAY_ADDRESS) or start Ray on this machine.

    Returns the GCS address actually used, so the run records where it ran.
    """
    import ray

    if not verbose:
        for name in ("ray", "ray.tune", "ray.train", "ray.air"):
            logging.getLogger(name).setLevel(logging.ERROR)
    level = logging.INFO if verbose else logging.ERROR
    kw: dict[str, Any] = {"log_to_driver": verbose, "logging_level": level, "include_dashboard": False}
    if ray.is_initialized():
        return str(ray.get_runtime_context().gcs_address)
    target = address or os.environ.get("RAY_ADDRESS") or None
    try:
        if target:
            check_reachable(target)
            client_token_mode()
            kw.pop("include_dashboard")
            host = target.rpartition(":")[0].strip("[]")
            if _is_loopback(host):  # a cluster on this machine's loopback: the driver joins its raylet there
                kw["_node_ip_address"] = host
            ray.init(address=target, **kw)
            check_cluster_works(target)
        else:
            ray.init(**kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {target}" if target else "a local Ray instance"
        raise HebbnasError(f"cannot connect to {where}: {first_line(e)}") from None
    except ray.exceptions.AuthenticationError as e:
        first = first_line(e)
        raise HebbnasError(no_token_line(target) if target else f"cannot start a local Ray instance: {first}") from None
    return str(ray.get_runtime_context().gcs_address)


def no_token_line(target: str) -> str:
    """What to do when this client is in token mode but has no token to show the cluster."""
    return (f"cannot join the Ray cluster at {target}: this client's authentication mode is token "
            "(RAY_AUTH_MODE=token) but it has no token; set RAY_AUTH_TOKEN to the cluster's token (or put it in "
            "~/.ray/auth_token); if the cluster runs without authentication, its authentication mode differs from "
            "this client's: start it with RAY_AUTH_MODE=token, or run hebbnas with RAY_AUTH_MODE=disabled, which "
            "lets anyone who reaches it run code")


def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_cluster_works(target: str, timeout: float = PING_TIMEOUT_S) -> None:
    """Run one small task on the joined cluster that reads an object this driver owns, as every trial
    does (its data arrive through the object store); when it cannot, say in one line that the cluster's
    and this client's authentication modes differ and how to make them agree.

    A client in token mode joined to a cluster started without authentication (Ray's test utilities, an
    older set-up) connects, but a worker cannot fetch the driver's objects: Ray's own error names an
    owner worker, not the cause.
    """
    import numpy as np
    import ray

    @ray.remote(num_cpus=0.001, max_retries=0)  # a node with CPUs, as a trial's (the head may have none)
    def ping(a: np.ndarray) -> int:
        return int(a.size)

    try:
        ray.get(ping.remote(ray.put(np.zeros(1 << 18, dtype=np.float32))), timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        return  # every CPU busy: nothing to learn here; the search waits for its turn as Tune would
    except ray.exceptions.RayError as e:
        mode = os.environ.get("RAY_AUTH_MODE", "token")
        first = first_line(e)[:120]
        raise HebbnasError(
            f"joined the Ray cluster at {target} but it runs no task ({first}): its authentication mode differs "
            f"from this client's (RAY_AUTH_MODE={mode}); start every node with RAY_AUTH_MODE=token and the same "
            "RAY_AUTH_TOKEN as this shell (or, for a cluster you started without authentication, run hebbnas "
            "with RAY_AUTH_MODE=disabled, which lets anyone who reaches it run code)") from None


def shutdown_ray() -> None:
    """Best effort on the way out: a local Ray stops with the search; a cluster keeps running."""
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except Exception:  # noqa: BLE001
        pass


def check_resources(cpus: float, gpus: float) -> dict[str, Any]:
    """Fail clearly (instead of pending forever) when no node can host one trial.

    Returns the alive nodes' ids and the largest CPU and GPU count of any of them.
    """
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    nodes = [n.get("Resources", {}) for n in alive]
    max_cpu = max((float(r.get("CPU", 0)) for r in nodes), default=0.0)
    max_gpu = max((float(r.get("GPU", 0)) for r in nodes), default=0.0)
    total = ray.cluster_resources()
    if gpus > 0 and float(total.get("GPU", 0)) == 0:
        raise HebbnasError(f"--gpus-per-trial {gpus:g} but the Ray cluster has no GPU "
                           f"({len(nodes)} node(s), {float(total.get('CPU', 0)):g} CPUs)")
    if gpus > max_gpu:
        raise HebbnasError(f"--gpus-per-trial {gpus:g} but the largest node has {max_gpu:g} GPU(s)")
    if cpus > max_cpu:
        raise HebbnasError(f"--cpus-per-trial {cpus:g} but the largest node has {max_cpu:g} CPU(s)")
    return {"nodes": len(nodes), "node_ids": [str(n.get("NodeID")) for n in alive],
            "max_node_cpus": max_cpu, "max_node_gpus": max_gpu}



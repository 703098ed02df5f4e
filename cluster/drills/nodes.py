"""The node-loss drill: a multi-node Ray cluster on this machine, and one of its nodes lost
mid-trial — its raylet and every process on it SIGKILLed, as when a machine dies.

`ray.cluster_utils.Cluster` starts a head node with no CPUs (so no training worker can land
there, only the trial drivers, which are pinned to it) and two 1-CPU worker nodes, all with
Ray's token authentication on. The sweep connects through RAY_ADDRESS like any cluster user.
"""

from __future__ import annotations

from pathlib import Path

from cluster.drills.harness import (
    KILL_CHECKPOINT_EVERY,
    TRIAL,
    DrillResult,
    SweepProcess,
    books_check,
    count_rows,
    count_runs,
    has_checkpoint,
    rows,
    sqlite_uri,
    wait_for,
)

__all__ = ["node_loss"]


def _token_auth_on() -> None:
    """Token auth for the cluster's processes and the sweep's, as `ray start` users have it.
    Ray caches the mode when it is first imported, so this process's cached config is
    refreshed too (Ray's own helper for that, which `ray.init` uses)."""
    from ray._private.authentication.authentication_token_setup import (
        _enable_token_auth,
        ensure_token_if_auth_enabled,
    )

    _enable_token_auth()  # sets RAY_AUTH_MODE=token, inherited by every process started here
    ensure_token_if_auth_enabled(create_token_if_missing=True)


def _node_of(pid: int, nodes: list) -> object | None:
    """The cluster node whose raylet is an ancestor of process `pid`."""
    import psutil
    from ray._private import ray_constants

    raylets = {
        node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid: node for node in nodes
    }
    try:
        for parent in psutil.Process(pid).parents():
            if parent.pid in raylets:
                return raylets[parent.pid]
    except psutil.NoSuchProcess:
        return None
    return None


def _training_workers() -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if "RayTrainWorker" in cmdline:
            found.append(proc.info["pid"])
    return found


def node_loss(work: Path, reference: float, overrides: list[str]) -> DrillResult:
    from ray.cluster_utils import Cluster

    result = DrillResult(
        "node loss",
        "3-node Ray cluster (token auth): the worker node running the trial removed mid-trial",
    )
    runs, name = work / "node-loss", "node-loss"
    _token_auth_on()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        env = {"RAY_ADDRESS": cluster.address, "RAY_AUTH_MODE": "token"}
        sweep = SweepProcess(runs, overrides, env=env)
        try:
            wait_for(has_checkpoint(runs, name, KILL_CHECKPOINT_EVERY), 300, "a checkpoint")
            hosts = [_node_of(pid, workers) for pid in _training_workers()]
            hosts = [h for h in hosts if h is not None]
            result.check("the trial's worker runs on a worker node", len(hosts) == 1, hosts)
            result.rows_before = count_rows(runs, name)
            result.runs_before = count_runs(sqlite_uri(runs), name)
            if hosts:
                cluster.remove_node(hosts[0], allow_graceful=False)
            code = sweep.wait(600)
            log = sweep.log()
        finally:
            sweep.end()
    finally:
        cluster.shutdown()
    result.check("the sweep completes (exit 0)", code == 0, log[-3000:])
    row = rows(runs, name).get(TRIAL, {})
    value = row.get("val_loss")
    result.check(
        "val_loss after losing the node == uninterrupted run",
        value == reference,
        f"{value!r} vs {reference!r}",
    )
    resumed = row.get("resumed_from")
    result.check("the trial restarted from a checkpoint, not from scratch", resumed, resumed)
    books_check(result, runs, name, sqlite_uri(runs), trials=1)
    result.outcome = f"resumed on the other node, val_loss {value} (clean {reference})"
    return result

"""Connecting to Ray: the cluster at $RAY_ADDRESS, or a local one started on 127.0.0.1."""

from __future__ import annotations

import os

__all__ = ["available_cpus", "connect", "outside_placement_group"]


def connect(*, num_cpus: int | None = None, verbose: bool = True) -> None:
    """`ray.init` once: to $RAY_ADDRESS when set, else a private local instance. Without
    `verbose`, what workers print stays in their logs (Ray's, and the trials' own) instead of
    being forwarded here, and Ray's own INFO lines are not shown."""
    import logging

    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    quiet = {} if verbose else {"logging_level": logging.WARNING}
    address = os.environ.get("RAY_ADDRESS", "")
    if address.startswith("ray://"):
        _connect_client(address, verbose)
        return
    if address:
        ray.init(address=address, log_to_driver=verbose, **quiet)
        return
    # One machine has no spot preemption to watch for: skip Ray Train's per-trial watcher
    # actor (one more Python process per trial). Cluster runs keep it.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    # The dashboard serves Ray's state API, which Ray Train's controller polls; without
    # it the driver log fills with "Failed to query ... actor state" warnings.
    # address="local": always a new private instance, never one a dead driver left behind
    # (plain ray.init() would try to join whatever /tmp/ray/ray_current_cluster names).
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        log_to_driver=verbose,
        _node_ip_address="127.0.0.1",
        **quiet,
    )


CLIENT_CONNECT_TRIES = 3


def _connect_client(address: str, verbose: bool) -> None:
    """Ray Client (`ray://head:10001`). The head's proxy starts one server process per client
    connection, and that start sometimes fails on a loaded head ("Starting Ray client server
    failed", seen on this 2-core machine); a new connection gets a new server, so try again."""
    import time

    import ray

    for attempt in range(1, CLIENT_CONNECT_TRIES + 1):
        try:
            ray.init(address=address, log_to_driver=verbose)
            return
        except ConnectionAbortedError as err:
            if attempt == CLIENT_CONNECT_TRIES:
                raise
            print(f"ray client: connecting to {address} failed ({err}); trying again", flush=True)
            time.sleep(2.0 * attempt)


def available_cpus() -> float:
    """CPUs the trial can use: the cluster's total when connected, else this machine's."""
    import ray

    if ray.is_initialized():
        return float(ray.cluster_resources().get("CPU", 0))
    return float(os.cpu_count() or 1)


def outside_placement_group():
    """Scheduling strategy for a task launched from inside a Tune trial that must take its own
    resources: Tune's trial placement group (the trial driver's sliver of the head node)
    would otherwise capture it, and a 1-CPU task cannot fit there."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return PlacementGroupSchedulingStrategy(placement_group=None)

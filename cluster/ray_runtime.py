"""Connecting to Ray: the cluster at $RAY_ADDRESS, or a local one started on 127.0.0.1."""

from __future__ import annotations

import os

__all__ = ["available_cpus", "connect", "local_driver_reserve", "outside_placement_group"]


def local_driver_reserve() -> int:
    """CPUs a local Ray is started with on top of the machine's, for the sweep's Tune trial
    drivers. Each driver holds 0.01 CPU (Tune refuses 0); without the extra slot, two drivers
    on a 2-core machine would leave 1.98 CPUs and only one 1-CPU trial could train at once.
    Zero on a cluster, whose head node's CPUs host the drivers."""
    return 0 if os.environ.get("RAY_ADDRESS") else 1


def connect(*, num_cpus: int | None = None, reserve_for_drivers: bool = False) -> None:
    """`ray.init` once: to $RAY_ADDRESS when set, else a private local instance."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    # One machine has no spot preemption to watch for: skip Ray Train's per-trial watcher
    # actor (one more Python process per trial). Cluster runs keep it.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    if reserve_for_drivers:
        num_cpus = (num_cpus or os.cpu_count() or 1) + local_driver_reserve()
    # The dashboard serves Ray's state API, which Ray Train's controller polls; without
    # it the driver log fills with "Failed to query ... actor state" warnings.
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        log_to_driver=True,
        _node_ip_address="127.0.0.1",
    )


def available_cpus() -> float:
    """CPUs the trial can use: the cluster's total when connected, else this machine's."""
    import ray

    if ray.is_initialized():
        return float(ray.cluster_resources().get("CPU", 0))
    return float(os.cpu_count() or 1)


def outside_placement_group():
    """Scheduling strategy for a task launched from inside a Tune trial that must take its own
    resources: Tune's trial placement group (0.01 CPU for the trial driver) would otherwise
    capture it, and a 1-CPU task cannot fit there."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return PlacementGroupSchedulingStrategy(placement_group=None)

"""Connecting to Ray: the cluster at $RAY_ADDRESS, or a local one started on 127.0.0.1."""

from __future__ import annotations

import os

__all__ = ["available_cpus", "connect"]


def connect(*, num_cpus: int | None = None) -> None:
    """`ray.init` once: to $RAY_ADDRESS when set, else a private local instance."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
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

"""MLflow tracking for a sweep: one parent run per sweep, one nested child run per trial.

Runs are found again by tags, never created twice: a re-run of the sweep reuses the parent
run, and a retried trial reuses its child run (step metrics already logged are not logged
again). Everything goes through `MlflowClient` with an explicit tracking URI, so nothing
depends on MLflow's process-global "active run".
"""

from __future__ import annotations

import math
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = [
    "SweepTracker",
    "TrackingUnavailable",
    "check_reachable",
    "default_tracking_uri",
    "flatten",
]

SWEEP_TAG = "voicescale.sweep"
ROLE_TAG = "voicescale.role"
TRIAL_TAG = "voicescale.trial"
PARENT_TAG = "mlflow.parentRunId"
STEP_METRICS = ("train_loss", "val_loss", "lr")


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking store cannot be used (unreachable server, unwritable path)."""


def default_tracking_uri(runs_dir: Path) -> str:
    """$MLFLOW_TRACKING_URI, else a sqlite database in `runs_dir` (shared by every sweep)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(runs_dir / 'mlflow.db').resolve()}"


def check_reachable(uri: str, *, timeout_s: float = 10.0) -> None:
    """Fail fast — before any training — if the tracking store cannot be used."""
    if uri.startswith(("http://", "https://")):
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=timeout_s) as response:
                if response.status != 200:
                    raise TrackingUnavailable(
                        f"MLflow tracking server {uri} answered {response.status} on /health"
                    )
        except (urllib.error.URLError, OSError) as err:
            raise TrackingUnavailable(
                f"MLflow tracking server {uri} is unreachable ({err}); start it, fix "
                "MLFLOW_TRACKING_URI, or unset it to use the local sqlite store"
            ) from None
    elif uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TrackingUnavailable(f"MLflow sqlite store {path}: {err}") from None
    # Any other scheme (databricks, file, postgresql…) is checked by the first client call.


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """`{"model": {"width": 96}}` → `{"model.width": "96"}`: MLflow params are flat strings."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = "null" if value is None else str(value)
    return out


def _artifact_root(uri: str, runs_dir: Path) -> str | None:
    """Local stores keep artifacts beside the database (MLflow's default is ./mlruns in the
    current directory); a server decides for itself."""
    if uri.startswith("sqlite:///") or uri.startswith("file:"):
        return (runs_dir / "mlartifacts").resolve().as_uri()
    return None


class SweepTracker:
    """The parent run of one sweep and the child runs of its trials."""

    def __init__(self, uri: str, sweep_name: str, runs_dir: Path) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.sweep_name = sweep_name
        self.experiment_id = self._experiment(f"voicescale-{sweep_name}", runs_dir)
        self.parent_run_id: str | None = None
        self._logged_step: dict[str, int] = {}
        self._monitors: dict[str, Any] = {}

    def _experiment(self, name: str, runs_dir: Path) -> str:
        existing = self.client.get_experiment_by_name(name)
        if existing is not None:
            return existing.experiment_id
        root = _artifact_root(self.uri, runs_dir)
        if root is not None:
            root = f"{root}/{name}"
        return self.client.create_experiment(name, artifact_location=root)

    def _find(self, filter_string: str) -> Any | None:
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=filter_string, max_results=2
        )
        return runs[0] if runs else None

    def open_parent(self, sweep_config: dict[str, Any], tags: dict[str, str]) -> str:
        """Find or create the sweep's parent run and mark it running."""
        run = self._find(
            f"tags.`{SWEEP_TAG}` = '{self.sweep_name}' and tags.`{ROLE_TAG}` = 'sweep'"
        )
        if run is None:
            run = self.client.create_run(
                self.experiment_id,
                run_name=self.sweep_name,
                tags={SWEEP_TAG: self.sweep_name, ROLE_TAG: "sweep", **tags},
            )
            self.client.log_dict(run.info.run_id, sweep_config, "sweep_config.json")
        else:
            self.client.update_run(run.info.run_id, status="RUNNING")
            for key, value in tags.items():
                self.client.set_tag(run.info.run_id, key, value)
        self.parent_run_id = run.info.run_id
        return self.parent_run_id

    def close_parent(self, status: str, summary: dict[str, float]) -> None:
        """Final sweep-level metrics and status (FINISHED, FAILED or KILLED)."""
        assert self.parent_run_id is not None
        self._log_metrics(self.parent_run_id, summary, step=0)
        self.client.set_terminated(self.parent_run_id, status=status)

    def child_run(self, trial_name: str, params: dict[str, Any]) -> str:
        """Find or create the trial's child run (a retried trial reuses it)."""
        assert self.parent_run_id is not None, "open_parent first"
        run = self._find(
            f"tags.`{PARENT_TAG}` = '{self.parent_run_id}' and tags.`{TRIAL_TAG}` = '{trial_name}'"
        )
        if run is None:
            run = self.client.create_run(
                self.experiment_id,
                run_name=trial_name,
                tags={
                    PARENT_TAG: self.parent_run_id,
                    TRIAL_TAG: trial_name,
                    SWEEP_TAG: self.sweep_name,
                    ROLE_TAG: "trial",
                },
            )
            self._log_params(run.info.run_id, flatten(params))
            self._logged_step[run.info.run_id] = -1
        else:
            run_id = run.info.run_id
            self.client.update_run(run_id, status="RUNNING")
            history = self.client.get_metric_history(run_id, "train_loss")
            self._logged_step[run_id] = max((m.step for m in history), default=-1)
        return run.info.run_id

    def log_step(self, run_id: str, metrics: dict[str, Any]) -> None:
        """Step metrics from an intermediate training report; steps already logged (before a
        restart) are skipped, so a resumed trial's history has each step once."""
        step = metrics.get("step")
        if not isinstance(step, int) or step <= self._logged_step.get(run_id, -1):
            return
        self._log_metrics(run_id, {k: metrics.get(k) for k in STEP_METRICS}, step=step)
        self._logged_step[run_id] = step

    def start_system_metrics(self, run_id: str) -> None:
        """CPU/memory/GPU of the driver's node, sampled while the trial runs."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        if run_id in self._monitors:
            return
        monitor = SystemMetricsMonitor(
            run_id, sampling_interval=5, resume_logging=True, tracking_uri=self.uri
        )
        monitor.start()
        self._monitors[run_id] = monitor

    def stop_system_metrics(self, run_id: str) -> None:
        monitor = self._monitors.pop(run_id, None)
        if monitor is not None:
            monitor.finish()

    def finish_child(
        self,
        run_id: str,
        final: dict[str, Any],
        artifacts: dict[str, Path],
        tags: dict[str, str],
        status: str,
    ) -> None:
        """Final metrics, artifacts (artifact path → local dir or file) and the run's status."""
        self.stop_system_metrics(run_id)
        self._log_metrics(run_id, final, step=int(final.get("steps") or 0))
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)
        for artifact_path, local in artifacts.items():
            if local.is_dir():
                self.client.log_artifacts(run_id, str(local), artifact_path)
            elif local.is_file():
                self.client.log_artifact(run_id, str(local), artifact_path)
        self.client.set_terminated(run_id, status=status)

    def close(self) -> None:
        for run_id in list(self._monitors):
            self.stop_system_metrics(run_id)

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in sorted(params.items())]
        for start in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            self.client.log_batch(run_id, params=items[start : start + 100])

    def _log_metrics(self, run_id: str, metrics: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in sorted(metrics.items())
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ]
        if items:
            self.client.log_batch(run_id, metrics=items)

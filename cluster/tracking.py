"""MLflow tracking for a sweep: one parent run per sweep, one nested child run per trial.

Runs are found again by tags, never created twice: a re-run of the sweep reuses the parent
run, and a retried trial reuses its child run (step metrics already logged are not logged
again). A trial's final record is written once: the run is tagged `voicescale.recorded` when
it is complete, and recording it again changes nothing, so a driver that died half-way
through is simply repeated. Runs a dead driver left RUNNING are closed as KILLED with a tag
saying why. Everything goes through `MlflowClient` with an explicit tracking URI, so nothing
depends on MLflow's process-global "active run". The sweep calls this from one background
thread (`cluster.tracking_queue`), never from Tune's loop.
"""

from __future__ import annotations

import math
import os
import socket
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
    "health_problem",
]

SWEEP_TAG = "voicescale.sweep"
ROLE_TAG = "voicescale.role"
TRIAL_TAG = "voicescale.trial"
PARENT_TAG = "mlflow.parentRunId"
DRIVER_TAG = "voicescale.driver"
RECORDED_TAG = "voicescale.recorded"
CLOSED_TAG = "voicescale.closed_reason"
STEP_METRICS = ("train_loss", "val_loss", "lr")


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking store cannot be used (unreachable server, unwritable path)."""


def default_tracking_uri(runs_dir: Path) -> str:
    """$MLFLOW_TRACKING_URI, else a sqlite database in `runs_dir` (shared by every sweep)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(runs_dir / 'mlflow.db').resolve()}"


def health_problem(uri: str, *, timeout_s: float = 10.0) -> str | None:
    """Why the tracking store cannot be used right now, or None when it can."""
    if uri.startswith(("http://", "https://")):
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=timeout_s) as response:
                if response.status != 200:
                    return f"MLflow tracking server {uri} answered {response.status} on /health"
        except (urllib.error.URLError, OSError) as err:
            return f"MLflow tracking server {uri} is unreachable ({err})"
    elif uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            return f"MLflow sqlite store {path}: {err}"
    # Any other scheme (databricks, file, postgresql…) is checked by the first client call.
    return None


def check_reachable(uri: str, *, timeout_s: float = 10.0) -> None:
    """Fail fast — before any training — if the tracking store cannot be used."""
    problem = health_problem(uri, timeout_s=timeout_s)
    if problem is not None:
        hint = (
            "; start it, fix MLFLOW_TRACKING_URI, or unset it to use the local sqlite store"
            if uri.startswith("http")
            else ""
        )
        raise TrackingUnavailable(problem + hint)


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


def record_key(status: str, finished_at: float | None) -> str:
    """What identifies one result of a trial in its run's `voicescale.recorded` tag."""
    return f"{status}@{finished_at if finished_at is not None else 0.0!r}"


def _record_time_ms(record: str) -> int:
    seconds = float(record.rsplit("@", 1)[1])
    return int(1000 * seconds) if seconds > 0 else int(time.time() * 1000)


def _artifact_root(uri: str, runs_dir: Path) -> str | None:
    """Local stores keep artifacts beside the database (MLflow's default is ./mlruns in the
    current directory); a server decides for itself."""
    if uri.startswith("sqlite:///") or uri.startswith("file:"):
        return (runs_dir / "mlartifacts").resolve().as_uri()
    return None


class SweepTracker:
    """The parent run of one sweep and the child runs of its trials, addressed by trial name.
    Not thread-safe: one thread (the tracking queue's) uses it."""

    def __init__(self, uri: str, sweep_name: str, runs_dir: Path) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.sweep_name = sweep_name
        self.runs_dir = runs_dir
        self.driver = f"{socket.gethostname()}:{os.getpid()}"
        self._experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.run_ids: dict[str, str] = {}
        self._logged_step: dict[str, int] = {}
        self._monitors: dict[str, Any] = {}

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = self._experiment(f"voicescale-{self.sweep_name}")
        return self._experiment_id

    def _experiment(self, name: str) -> str:
        existing = self.client.get_experiment_by_name(name)
        if existing is not None:
            return existing.experiment_id
        root = _artifact_root(self.uri, self.runs_dir)
        if root is not None:
            root = f"{root}/{name}"
        return self.client.create_experiment(name, artifact_location=root)

    def _search(self, filter_string: str, max_results: int = 2) -> list[Any]:
        return self.client.search_runs(
            [self.experiment_id], filter_string=filter_string, max_results=max_results
        )

    # -- the sweep's parent run ---------------------------------------------------------------

    def find_parent(self) -> Any | None:
        runs = self._search(
            f"tags.`{SWEEP_TAG}` = '{self.sweep_name}' and tags.`{ROLE_TAG}` = 'sweep'"
        )
        if runs:
            self.parent_run_id = runs[0].info.run_id
        return runs[0] if runs else None

    def open_parent(
        self, sweep_config: dict[str, Any], tags: dict[str, str], *, running: bool = True
    ) -> str:
        """Find or create the sweep's parent run; `running` marks it RUNNING, by this driver
        (a sweep with nothing to train only needs it to exist)."""
        run = self.find_parent()
        tags = {**tags, DRIVER_TAG: self.driver}
        if run is None:
            run = self.client.create_run(
                self.experiment_id,
                run_name=self.sweep_name,
                tags={SWEEP_TAG: self.sweep_name, ROLE_TAG: "sweep", **tags},
            )
            self.client.log_dict(run.info.run_id, sweep_config, "sweep_config.json")
        elif running:
            self.client.update_run(run.info.run_id, status="RUNNING")
            for key, value in tags.items():
                self.client.set_tag(run.info.run_id, key, value)
        self.parent_run_id = run.info.run_id
        return self.parent_run_id

    def close_parent(self, status: str, summary: dict[str, float]) -> None:
        """Final sweep-level metrics and status (FINISHED, FAILED or KILLED); nothing is
        logged when the run already says exactly that (a re-run that changed nothing)."""
        if self.parent_run_id is None and self.find_parent() is None:
            return
        assert self.parent_run_id is not None
        run = self.client.get_run(self.parent_run_id)
        logged = run.data.metrics
        if run.info.status == status and all(logged.get(k) == v for k, v in summary.items()):
            return
        self._log_metrics(self.parent_run_id, summary, step=0)
        self.client.set_terminated(self.parent_run_id, status=status)

    def log_forecast(
        self, forecast: dict[str, Any], metrics: dict[float, dict[str, float]]
    ) -> None:
        """The sweep's forecast on its parent run: `forecast` as the artifact forecast.json,
        and `metrics` (made-at time in seconds → {name: value}) stamped with the time each
        forecast was made, so logging the same forecast again stores nothing new."""
        if self.parent_run_id is None and self.find_parent() is None:
            return
        assert self.parent_run_id is not None
        self.client.log_dict(self.parent_run_id, forecast, "forecast.json")
        for made_at, values in metrics.items():
            self._log_metrics(self.parent_run_id, values, step=0, timestamp_ms=int(1000 * made_at))

    # -- runs a dead driver left behind -------------------------------------------------------

    def close_stale_runs(self) -> list[str]:
        """Close every run of this sweep still RUNNING but not by this driver: the caller
        holds the runs directory's lock, so their driver is dead. Returns their names."""
        closed = []
        runs = self._search(
            f"tags.`{SWEEP_TAG}` = '{self.sweep_name}' and attributes.status = 'RUNNING'",
            max_results=1000,
        )
        for run in runs:
            driver = run.data.tags.get(DRIVER_TAG, "an earlier driver")
            if driver == self.driver:
                continue
            reason = (
                f"left RUNNING by {driver}, which died; closed by {self.driver} at "
                f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
            )
            self.client.set_tag(run.info.run_id, CLOSED_TAG, reason)
            self.client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_name)
        return closed

    # -- one trial's child run ----------------------------------------------------------------

    def children(self) -> dict[str, Any]:
        """This sweep's child runs by trial name (one query)."""
        if self.parent_run_id is None:
            self.find_parent()
        if self.parent_run_id is None:
            return {}
        runs = self._search(
            f"tags.`{PARENT_TAG}` = '{self.parent_run_id}' and tags.`{ROLE_TAG}` = 'trial'",
            max_results=10000,
        )
        return {r.data.tags.get(TRIAL_TAG): r for r in runs}

    def _find_child(self, trial_name: str) -> Any | None:
        assert self.parent_run_id is not None, "open_parent first"
        runs = self._search(
            f"tags.`{PARENT_TAG}` = '{self.parent_run_id}' and tags.`{TRIAL_TAG}` = '{trial_name}'"
        )
        return runs[0] if runs else None

    def child_run(self, trial_name: str, params: dict[str, Any], reopen: bool = True) -> str:
        """Find or create the trial's child run (a retried trial reuses it); `reopen` marks
        an existing one RUNNING again, by this driver."""
        if self.parent_run_id is None:
            self.find_parent()
        run = self._find_child(trial_name)
        if run is None:
            run = self.client.create_run(
                self.experiment_id,
                run_name=trial_name,
                tags={
                    PARENT_TAG: self.parent_run_id,
                    TRIAL_TAG: trial_name,
                    SWEEP_TAG: self.sweep_name,
                    ROLE_TAG: "trial",
                    DRIVER_TAG: self.driver,
                },
            )
            self._log_params(run.info.run_id, flatten(params))
            self._logged_step[run.info.run_id] = -1
        else:
            run_id = run.info.run_id
            if reopen:
                self.client.update_run(run_id, status="RUNNING")
                self.client.set_tag(run_id, DRIVER_TAG, self.driver)
            history = self.client.get_metric_history(run_id, "train_loss")
            self._logged_step[run_id] = max((m.step for m in history), default=-1)
        self.run_ids[trial_name] = run.info.run_id
        return run.info.run_id

    def start_trial(self, trial_name: str, params: dict[str, Any]) -> str:
        run_id = self.child_run(trial_name, params)
        self.start_system_metrics(run_id)
        return run_id

    def log_step(self, trial_name: str, params: dict[str, Any], metrics: dict[str, Any]) -> None:
        """Step metrics from an intermediate training report; steps already logged (before a
        restart) are skipped, so a resumed trial's history has each step once."""
        run_id = self.run_ids.get(trial_name) or self.child_run(trial_name, params)
        step = metrics.get("step")
        if not isinstance(step, int) or step <= self._logged_step.get(run_id, -1):
            return
        self._log_metrics(run_id, {k: metrics.get(k) for k in STEP_METRICS}, step=step)
        self._logged_step[run_id] = step

    def record_trial(
        self,
        trial_name: str,
        params: dict[str, Any],
        *,
        final: dict[str, Any],
        artifacts: dict[str, Path],
        tags: dict[str, str],
        status: str,
        record: str,
    ) -> str:
        """The trial's final metrics, artifacts (artifact path → local dir or file), tags and
        status, exactly once per `record` (what identifies this result, e.g. "done@<time>"):
        a run already tagged with it is left as it is (at most its status is set again), so
        a repeat of an interrupted recording adds nothing twice; a retried trial's new
        result is a new record. Returns the run id."""
        run_id = self.run_ids.get(trial_name) or self.child_run(trial_name, params, reopen=False)
        self.stop_system_metrics(run_id)
        run = self.client.get_run(run_id)
        if run.data.tags.get(RECORDED_TAG) != record:
            # Metric timestamps from the record: a repeat hits the same (key, time, step,
            # value) rows, which MLflow stores once.
            timestamp_ms = _record_time_ms(record)
            self._log_metrics(
                run_id, final, step=int(final.get("steps") or 0), timestamp_ms=timestamp_ms
            )
            for artifact_path, local in artifacts.items():
                if local.is_dir():
                    self.client.log_artifacts(run_id, str(local), artifact_path)
                elif local.is_file():
                    self.client.log_artifact(run_id, str(local), artifact_path)
            for key, value in {**tags, RECORDED_TAG: record}.items():
                self.client.set_tag(run_id, key, value)
        if run.info.status != status:
            self.client.set_terminated(run_id, status=status)
        return run_id

    # -- system metrics -----------------------------------------------------------------------

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

    def stop_trial(self, trial_name: str) -> None:
        """The trial stopped unfinished (Ctrl-C): stop sampling; the run stays open."""
        run_id = self.run_ids.get(trial_name)
        if run_id is not None:
            self.stop_system_metrics(run_id)

    def close(self) -> None:
        for run_id in list(self._monitors):
            self.stop_system_metrics(run_id)

    # -- batches ------------------------------------------------------------------------------

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in sorted(params.items())]
        for start in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            self.client.log_batch(run_id, params=items[start : start + 100])

    def _log_metrics(
        self,
        run_id: str,
        metrics: dict[str, Any],
        step: int,
        timestamp_ms: int | None = None,
    ) -> None:
        from mlflow.entities import Metric

        now = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in sorted(metrics.items())
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ]
        if items:
            self.client.log_batch(run_id, metrics=items)

"""MLflow bookkeeping without a running sweep: the tracking queue rides out an outage, and a
trial's record reaches MLflow exactly once however often the recording is repeated (a
real sqlite store)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from cluster.sweep_runner import SweepRecorder
from cluster.tracking import CLOSED_TAG, RECORDED_TAG, SweepTracker
from cluster.tracking_queue import TrackingQueue
from store.outcome import read_outcome
from store.paths import SweepPaths
from store.results_file import load_results, record_result
from training.config import TrialConfig


class FlakyTracker:
    """Stands in for SweepTracker in the queue's own logic: calls fail while `down` is set."""

    uri = "http://127.0.0.1:9"

    def __init__(self) -> None:
        self.down = threading.Event()
        self.applied: list[str] = []

    def close(self) -> None:
        pass


def apply(label: str):
    def call(tracker: FlakyTracker) -> None:
        if tracker.down.is_set():
            raise ConnectionError("refused")
        tracker.applied.append(label)

    return call


def test_calls_wait_out_an_outage_and_are_applied_in_order() -> None:
    tracker = FlakyTracker()
    queue = TrackingQueue(
        tracker, max_backoff_s=0.2, probe=lambda: "down" if tracker.down.is_set() else None
    )
    queue.submit("a", apply("a"))
    tracker.down.set()
    for label in "bcd":
        queue.submit(label, apply(label))  # returns at once although nothing can be applied
    threading.Timer(1.0, tracker.down.clear).start()
    assert queue.drain(grace_s=30) is None
    assert tracker.applied == ["a", "b", "c", "d"]


def test_a_store_that_stays_down_leaves_a_backlog_after_the_grace_period() -> None:
    tracker = FlakyTracker()
    tracker.down.set()
    queue = TrackingQueue(tracker, max_backoff_s=0.2, probe=lambda: "refused")
    for label in "ab":
        queue.submit(label, apply(label))
    backlog = queue.drain(grace_s=1.0)
    assert backlog is not None and backlog.pending == 2 and tracker.applied == []
    assert "unreachable since" in backlog.message(tracker.uri)


def test_a_call_the_healthy_store_refuses_is_dropped_not_wedged() -> None:
    tracker = FlakyTracker()

    def refused(_: FlakyTracker) -> None:
        raise ValueError("INVALID_PARAMETER_VALUE")

    queue = TrackingQueue(tracker, probe=lambda: None)
    queue.submit("bad", refused)
    queue.submit("good", apply("good"))
    assert queue.drain(grace_s=1) is None
    assert tracker.applied == ["good"] and "bad: ValueError" in queue.rejected[0]


# --- the real tracker on a sqlite store --------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path):
    trial = TrialConfig()
    paths = SweepPaths(tmp_path / "runs" / "s")
    paths.trial_dir(trial.name).mkdir(parents=True)
    outcome = {
        "trial": trial.name,
        "status": "done",
        "train": {"val_loss": 0.8, "steps": 20, "params": 1000, "data_utterances": 64},
        "eval": {"sim": 0.5, "wer": 0.2, "sim_ci": [0.4, 0.6], "wer_ci": [0.1, 0.3]},
        "finished_at": 1700000000.0,
    }
    paths.outcome(trial.name).write_text(json.dumps(outcome))
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    return trial, paths, uri


def recorder_for(trial: TrialConfig, paths: SweepPaths, uri: str) -> SweepRecorder:
    queue = TrackingQueue(SweepTracker(uri, "s", paths.root.parent))
    queue.submit("parent", lambda t: t.open_parent({}, {}))
    return SweepRecorder(paths, queue, {trial.name: trial})


def test_a_trial_is_recorded_in_mlflow_once_however_often_it_is_recorded(store) -> None:
    trial, paths, uri = store
    first = recorder_for(trial, paths, uri)
    first.started(trial.name)
    row = first.finished(trial.name)
    assert first.queue.drain(30) is None
    run_id = load_results(paths.results)[trial.name].mlflow_run_id
    assert run_id and row is not None

    # The row is lost (say, torn by a crash) while MLflow holds the complete run: the next
    # driver records the row again and finds the run complete, logging nothing twice.
    paths.results.unlink()
    second = recorder_for(trial, paths, uri)
    second.finished(trial.name)
    second.reconcile()
    assert second.queue.drain(30) is None
    assert load_results(paths.results)[trial.name].mlflow_run_id == run_id

    client = second.queue.tracker.client
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags[RECORDED_TAG] == "done@1700000000.0"
    assert [m.value for m in client.get_metric_history(run_id, "val_loss")] == [0.8]
    children = [
        r
        for r in client.search_runs([run.info.experiment_id])
        if r.info.run_id != run.data.tags["mlflow.parentRunId"]
    ]
    assert len(children) == 1


def test_reconcile_records_rows_mlflow_never_saw(store) -> None:
    """An outage through the end of a sweep: rows exist, MLflow holds nothing of them."""
    trial, paths, uri = store
    offline = recorder_for(trial, paths, uri)
    offline.queue.drain(30)
    outcome = read_outcome(paths.outcome(trial.name))
    record_result(paths.results, outcome.row(trial, sweep_dir=paths.root, mlflow_run_id=None))
    later = recorder_for(trial, paths, uri)
    later.reconcile()
    assert later.queue.drain(30) is None
    row = load_results(paths.results)[trial.name]
    run = later.queue.tracker.client.get_run(row.mlflow_run_id)
    assert run.data.metrics["val_loss"] == 0.8 and run.info.status == "FINISHED"


def test_runs_a_dead_driver_left_running_are_closed_with_the_reason(store) -> None:
    trial, paths, uri = store
    dead = SweepTracker(uri, "s", paths.root.parent)
    dead.driver = "elsewhere:4242"
    dead.open_parent({}, {})
    dead.child_run(trial.name, {"name": trial.name})
    alive = SweepTracker(uri, "s", paths.root.parent)
    assert sorted(alive.close_stale_runs()) == sorted(["s", trial.name])
    for run in alive.client.search_runs([alive.experiment_id]):
        assert run.info.status == "KILLED"
        assert "elsewhere:4242" in run.data.tags[CLOSED_TAG]
    assert alive.close_stale_runs() == []


def test_a_retried_trial_gets_its_new_result_recorded(store) -> None:
    """A failed attempt is recorded; the retry's result is a new record, not a repeat."""
    trial, paths, uri = store
    outcome_path = paths.outcome(trial.name)
    done = json.loads(outcome_path.read_text())
    outcome_path.write_text(json.dumps({"trial": trial.name, "status": "failed", "error": "x"}))
    first = recorder_for(trial, paths, uri)
    first.finished(trial.name, error="worker died")
    assert first.queue.drain(30) is None
    outcome_path.write_text(json.dumps(done))
    retry = recorder_for(trial, paths, uri)
    retry.started(trial.name)
    retry.finished(trial.name)
    assert retry.queue.drain(30) is None
    row = load_results(paths.results)[trial.name]
    run = retry.queue.tracker.client.get_run(row.mlflow_run_id)
    assert row.status == "done" and run.info.status == "FINISHED"
    assert run.data.metrics["val_loss"] == 0.8 and run.data.tags["status"] == "done"

"""Tune's trial events → the sweep's recorder, in local mode and through Ray Client.

Locally, Tune's loop runs in the sweep's process and its callback calls the recorder
directly. Through `ray://`, Ray Tune runs its loop (and so every callback) in an actor on the
head node, while the sweep's process — the plan, results.jsonl, the MLflow runs — stays on the
client. The callback then cannot hold the recorder (a thread, locks, an MLflow client: they
belong to the client's process); it puts each event on a Ray queue instead, and a thread of the
client's process hands them to the recorder in order (`forwarded_events`).
"""

from __future__ import annotations

import queue as stdlib_queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

__all__ = ["TrialEvents", "forwarded_events", "record_trials_callback"]


class TrialEvents(Protocol):
    """What the sweep does when Tune reports on a trial (`cluster.sweep_runner.SweepRecorder`)."""

    def started(self, name: str) -> None: ...

    def progress(self, name: str, metrics: dict[str, Any]) -> None: ...

    def finished(self, name: str, error: str | None = None) -> Any: ...


class _ToQueue:
    """TrialEvents that travel: each event goes onto a `ray.util.queue.Queue`."""

    def __init__(self, events: Any) -> None:
        self.events = events

    def started(self, name: str) -> None:
        self.events.put(("started", name, None))

    def progress(self, name: str, metrics: dict[str, Any]) -> None:
        self.events.put(("progress", name, metrics))

    def finished(self, name: str, error: str | None = None) -> None:
        self.events.put(("finished", name, error))


@contextmanager
def forwarded_events(recorder: TrialEvents) -> Iterator[TrialEvents]:
    """Under Ray Client: a `TrialEvents` for Tune's callback on the head, whose events reach
    `recorder` here; every event sent before the block ends is handled before it returns.
    In local mode: `recorder` itself."""
    import ray

    if not ray.util.client.ray.is_connected():
        yield recorder
        return
    from ray.util.queue import Empty, Queue

    events = Queue(actor_options={"num_cpus": 0})
    done = threading.Event()

    def handle(event: tuple[str, str, Any]) -> None:
        kind, name, payload = event
        if kind == "started":
            recorder.started(name)
        elif kind == "progress":
            recorder.progress(name, payload)
        else:
            recorder.finished(name, error=payload)

    def pump() -> None:
        while not done.is_set():
            try:
                handle(events.get(timeout=0.5))
            except (Empty, stdlib_queue.Empty):
                continue

    thread = threading.Thread(target=pump, name="voicescale-trial-events", daemon=True)
    thread.start()
    try:
        yield _ToQueue(events)
    finally:
        done.set()
        thread.join()
        while not events.empty():  # what arrived after the pump's last look
            handle(events.get_nowait())
        events.shutdown()


def record_trials_callback(events: TrialEvents):
    """A Tune callback that reports every trial's start, results and end to `events`."""
    from ray.tune import Callback

    def _name(tune_trial: Any) -> str:
        return tune_trial.config["trial"]

    class RecordTrials(Callback):
        """Tune hooks → the sweep's trial events."""

        def __init__(self, events: TrialEvents) -> None:
            self.events = events

        def __getstate__(self) -> dict[str, Any]:
            # Tune pickles its run config into the experiment directory, and through Ray
            # Client ships it to the head. The recorder (a thread and its locks) belongs to
            # the sweep's process and is never restored from a pickle; a queue travels.
            return {"events": self.events} if isinstance(self.events, _ToQueue) else {}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.events.started(_name(trial))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.events.progress(_name(trial), result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.events.finished(_name(trial))

        def on_trial_error(self, iteration, trials, trial, **info):
            error = getattr(trial, "error_msg", None) or "the trial raised (see Tune's log)"
            self.events.finished(_name(trial), error=str(error)[-2000:])

    return RecordTrials(events)

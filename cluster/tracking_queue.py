"""MLflow off the training path: one background thread applies the sweep's tracking calls
in order, and rides out a tracking server that goes away.

Tune's callbacks run in the driver's event loop; a blocking MLflow call there (the REST
client retries a refused connection for ~4 minutes by default) stalls every trial. Here
the callbacks only enqueue. The worker applies each call; when one fails and the server is
down, it keeps the call (and everything after it), probes the server with bounded
exponential backoff (1 s doubling to 10 s) until it answers again, then catches up in
order. A call the server *rejects* while healthy is retried twice, then logged and
dropped, so one bad call cannot wedge the queue.

At the end of the sweep `drain(grace_s)` waits for the backlog; what is still unapplied
then is returned, and the sweep exits with its own code. Nothing is lost: results.jsonl is
written before MLflow, and the next run reconciles MLflow with it.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cluster.tracking import SweepTracker, health_problem

__all__ = ["TrackingBacklog", "TrackingQueue", "quick_failing_http"]

Call = Callable[[SweepTracker], Any]


def quick_failing_http() -> None:
    """Make each MLflow HTTP call fail within seconds when the server is gone (its defaults
    retry for ~4 min per call); the queue does the waiting, without blocking anything.
    Users' own settings win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")  # per socket wait, not per upload


@dataclass(frozen=True)
class TrackingBacklog:
    """What `drain` could not apply: the tracking store stayed down."""

    pending: int
    down_since: float
    problem: str

    def message(self, uri: str) -> str:
        since = time.strftime("%H:%M:%S", time.localtime(self.down_since))
        return (
            f"MLflow tracking store {uri} has been unreachable since {since} "
            f"({time.time() - self.down_since:.0f} s; {self.problem}); {self.pending} tracking "
            "call(s) not applied. Every trial is in results.jsonl; run the same command again "
            "once the server is back, and MLflow is brought up to date without retraining"
        )


class TrackingQueue:
    """FIFO of tracking calls applied by one worker thread (see the module docstring)."""

    def __init__(
        self,
        tracker: SweepTracker,
        *,
        max_backoff_s: float = 10.0,
        probe: Callable[[], str | None] | None = None,
    ) -> None:
        self.tracker = tracker
        self._probe = probe or (lambda: health_problem(tracker.uri, timeout_s=5.0))
        self._max_backoff = max_backoff_s
        self._calls: collections.deque[tuple[str, Call]] = collections.deque()
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._down_since: float | None = None
        self._problem = ""
        self.rejected: list[str] = []
        self._thread = threading.Thread(target=self._work, name="mlflow-tracking", daemon=True)
        self._thread.start()

    def submit(self, label: str, call: Call) -> None:
        """Queue `call(tracker)`; returns at once."""
        with self._changed:
            self._calls.append((label, call))
            self._changed.notify_all()

    @property
    def pending(self) -> int:
        with self._changed:
            return len(self._calls)

    def drain(self, grace_s: float) -> TrackingBacklog | None:
        """Wait until every call is applied, for at most `grace_s` seconds while the store is
        down; then stop the worker. None when nothing is left."""
        deadline = time.monotonic() + grace_s
        with self._changed:
            while self._calls and (self._down_since is None or time.monotonic() < deadline):
                self._changed.wait(timeout=1.0)
            left, down_since = len(self._calls), self._down_since
            self._stopping.set()
            self._changed.notify_all()
        self._thread.join(timeout=60)
        if left:
            return TrackingBacklog(left, down_since or time.time(), self._problem)
        return None

    # -- the worker ---------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._calls and not self._stopping.is_set():
                    self._changed.wait()
                if not self._calls:
                    self.tracker.close()
                    return
                label, call = self._calls[0]  # left in place until it is applied
            if not self._apply(label, call):
                return  # stopping while the store is down: the rest stays unapplied
            with self._changed:
                self._calls.popleft()
                self._changed.notify_all()

    def _apply(self, label: str, call: Call) -> bool:
        """Apply one call, waiting out an outage; False if asked to stop meanwhile."""
        refusals = 0
        while True:
            try:
                call(self.tracker)
            except Exception as err:
                problem = self._probe()
                if problem is not None:
                    self._went_down(problem)
                    if not self._wait_until_up():
                        return False
                    continue
                refusals += 1
                if refusals >= 3:  # the store is up and keeps refusing this call
                    self._reject(label, err)
                    return True
                if self._stopping.wait(timeout=refusals):
                    return False
                continue
            self._came_back()
            return True

    def _wait_until_up(self) -> bool:
        """Probe the store with bounded exponential backoff until it answers; False when
        asked to stop first."""
        delay = 1.0
        while not self._stopping.wait(timeout=delay):
            problem = self._probe()
            if problem is None:
                return True
            self._problem = problem
            delay = min(2 * delay, self._max_backoff)
        return False

    def _reject(self, label: str, err: Exception) -> None:
        self.rejected.append(f"{label}: {type(err).__name__}: {err}")
        _warn(f"MLflow refused {label} ({type(err).__name__}: {str(err)[:300]}); skipped")

    def _went_down(self, problem: str) -> None:
        with self._changed:
            first = self._down_since is None
            if first:
                self._down_since = time.time()
            self._problem = problem
            pending = len(self._calls)
        if first:
            _warn(
                f"{problem}; training goes on, {pending} tracking call(s) wait and are retried "
                "until it is back"
            )

    def _came_back(self) -> None:
        with self._changed:
            down_since, self._down_since = self._down_since, None
            pending = len(self._calls)
        if down_since is not None:
            _warn(
                f"MLflow tracking store reachable again after {time.time() - down_since:.0f} s;"
                f" catching up on {pending} call(s)"
            )


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)

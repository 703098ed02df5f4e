"""What `voicescale status` reads besides results.jsonl: the driver's `sweep.json` (the plan),
each trial's `progress.json` and `outcome.json`, and the runs directory's lock. Every reader
is lenient: a file being rewritten or from another version costs a note, never the status."""

from __future__ import annotations

import json
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from store.outcome import OutcomeError, read_outcome
from store.paths import SweepPaths
from store.progress import read_progress
from store.records import FINAL_STATUSES, ResultRow
from store.results_file import ResultsError, load_results
from store.runs_lock import lock_holder
from training.config import ConfigError, SweepConfig, TrialConfig, from_dict

__all__ = [
    "LockState",
    "Plan",
    "Progress",
    "TrialFiles",
    "read_lock",
    "read_plan",
    "read_rows",
    "read_trials",
]


@dataclass(frozen=True)
class Plan:
    """The sweep's config and grid from sweep.json; `trials` None when unknown (`unknown_why`)."""

    config: SweepConfig | None = None
    trials: list[TrialConfig] | None = None
    started_at: float | None = None
    """When the last run of the sweep started."""
    notes: list[str] = field(default_factory=list)
    unknown_why: str | None = None


@dataclass(frozen=True)
class Progress:
    """A trial's progress.json: written by the driver when it starts and at each report."""

    started_at: float | None = None
    updated_at: float | None = None
    step: int | None = None
    steps: int | None = None

    def since(self, run_started: float | None, row: ResultRow | None) -> bool:
        """Written by the run that started at `run_started` (None: unknown, assume so), and
        after the trial's `row`, if any, was recorded (a retry of a failed trial)."""
        started = self.started_at if self.started_at is not None else self.updated_at
        if started is None:
            return run_started is None and row is None
        if run_started is not None and started < run_started:
            return False
        return row is None or row.finished_at is None or started > row.finished_at


@dataclass(frozen=True)
class TrialFiles:
    """What a trial's directory says about it."""

    started: bool = False
    """Its directory exists."""
    progress: Progress | None = None
    error: str | None = None
    """outcome.json's error."""
    finished: bool = False
    """outcome.json is final (done or diverged)."""

    def elapsed(self, now: float) -> float:
        """Seconds since it started (0 when unknown)."""
        started = self.progress.started_at if self.progress else None
        return max(0.0, now - started) if started is not None else 0.0


@dataclass(frozen=True)
class LockState:
    """The runs directory's lock: `held` by a live process, the `holder` its file names,
    `running` when the holder is this sweep."""

    held: bool
    holder: dict[str, Any] | None
    running: bool
    stale: bool
    """Not held, yet a holder is named: it died holding it (or runs on another host)."""
    notes: list[str] = field(default_factory=list)


def read_rows(path: Path) -> tuple[dict[str, ResultRow], list[str]]:
    """results.jsonl's rows by trial, as `load_results` reads them, but a torn last line (a
    write under way, or a crash's, which the next sweep run sets aside) is left out with a
    note rather than an error."""
    try:
        return load_results(path), []
    except ResultsError as err:
        text = path.read_text(encoding="utf-8", errors="replace")
        if text.endswith("\n") or "torn last line" not in str(err):
            raise
    with tempfile.TemporaryDirectory() as scratch:  # the sweep directory is left untouched
        whole = Path(scratch) / path.name
        whole.write_text(text[: text.rfind("\n") + 1], encoding="utf-8")
        rows = load_results(whole)  # every line before the torn one parsed already
    return rows, [f"{path}: its last line is torn (being written, or cut off); left out"]


def read_plan(sweep_dir: Path) -> Plan:
    """sweep.json's config and its grid, or why they are unknown."""
    path = SweepPaths(sweep_dir).sweep_record
    if not path.is_file():
        why = f"the plan is unknown (no {path.name}: a sweep directory from an older version)"
        return Plan(notes=[f"{why}; only trials recorded or started are counted"], unknown_why=why)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        config = from_dict(SweepConfig, data["config"], source=str(path))
        started = data.get("started_at")
    except (OSError, ValueError, KeyError, TypeError, ConfigError) as err:
        why = f"the plan is unknown ({path} is unreadable: {err})"
        return Plan(notes=[why], unknown_why=why)
    trials, notes = _grid(config, sweep_dir)
    return Plan(config, trials, float(started) if _number(started) else None, notes)


def _grid(config: SweepConfig, sweep_dir: Path) -> tuple[list[TrialConfig], list[str]]:
    """`plan_sweep`'s trials (which also checks the rows' configurations); the bare grid, with
    a note, when the plan cannot be made here."""
    from scaling.sweep_plan import plan_sweep

    if config.name != sweep_dir.name:
        note = f"sweep.json names sweep {config.name!r}, the directory is {sweep_dir.name!r}"
        return config.trials(), [note]
    try:
        return plan_sweep(config, sweep_dir.parent).trials, []
    except (ResultsError, OutcomeError) as err:
        torn = "torn last line" in str(err)  # `read_rows` says so already
        return config.trials(), [] if torn else [f"the plan does not match the files: {err}"]


def read_trials(paths: SweepPaths, names: list[str]) -> dict[str, TrialFiles]:
    """Each named trial's directory: whether it exists, its progress and its outcome."""
    return {name: _trial_files(paths, name) for name in names}


def _trial_files(paths: SweepPaths, name: str) -> TrialFiles:
    directory = paths.trial_dir(name)
    if not directory.is_dir():
        return TrialFiles()
    try:
        outcome = read_outcome(paths.outcome(name))
    except OutcomeError:
        outcome = None
    return TrialFiles(
        started=True,
        progress=_progress(read_progress(directory)),
        error=outcome.error if outcome else None,
        finished=outcome is not None and outcome.status in FINAL_STATUSES,
    )


def _progress(data: dict[str, Any] | None) -> Progress | None:
    """progress.json typed; a value of the wrong type is taken as not known."""
    if data is None:
        return None

    def number(key: str) -> Any:
        value = data.get(key)
        return value if _number(value) else None

    step, steps = number("step"), number("steps")
    return Progress(
        number("started_at"),
        number("updated_at"),
        int(step) if step is not None else None,
        int(steps) if steps is not None else None,
    )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_lock(runs_dir: Path, sweep: str) -> LockState:
    """Whether `sweep` is running now, by the runs directory's lock, with a note when the lock
    is another sweep's or a dead holder's."""
    held, holder = lock_holder(runs_dir)
    named = holder.get("sweep") if holder else None
    who = _holder_text(holder)
    if held:
        ours = named in (None, "?", sweep)
        notes = [] if ours else [f"the runs directory is in use by {who}, not by this sweep"]
        return LockState(True, holder, ours, False, notes)
    if holder is None:
        return LockState(False, None, False, False)
    if holder.get("host") in (None, "?", socket.gethostname()):
        note = f"the last run ({who}) died holding the lock: it was killed or crashed"
    else:
        note = f"the lock names {who}: it may still run there (flock does not reach across hosts)"
    return LockState(False, holder, False, True, [note])


def _holder_text(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "an unnamed process"
    return (
        f"sweep {holder.get('sweep')!r}, pid {holder.get('pid')} on host {holder.get('host')}, "
        f"since {holder.get('started')}"
    )

"""`voicescale status RUNS/SWEEP`: where a sweep stands, without reading results.jsonl by hand.

    state     running (the runs directory's lock is held for this sweep), interrupted (not
              running, and a planned trial has no row), finished (every planned trial has a
              final row), or finished with failures (every planned trial has a row, some
              `failed`: the next run retries them)
    trials    done, diverged, failed, running, unfinished (started, not recorded: the run
              stopped under it), pending (not started)
    spent     the rows' wall seconds plus the running trials' elapsed time; the rows' FLOPs
    left      the forecast's cost estimator (`scaling.forecast`: each family's measured time
              as a power of the budget) over the trials not finished, a running trial less
              its elapsed time; wall time: that sum over the concurrency, at least the longest
    champion  the best row `voicescale promote` may pick (`scaling.promote.eligible_rows`)

The plan is the grid of `sweep.json` (the config the driver wrote when it started); a sweep
directory without one (an older version) is described from results.jsonl and its trial
directories alone, and says the plan is unknown.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scaling.formatting import fmt_with_interval
from scaling.status_files import (
    LockState,
    Plan,
    TrialFiles,
    read_lock,
    read_plan,
    read_rows,
    read_trials,
)
from scaling.status_left import Champion, Estimate, best_row, concurrency, estimate, some
from store.paths import SweepPaths
from store.records import ResultRow, json_safe
from training.config import TrialConfig

__all__ = [
    "Champion",
    "Estimate",
    "StatusError",
    "SweepStatus",
    "TrialStatus",
    "add_status_parser",
    "sweep_status",
]

OPEN = ("running", "unfinished", "failed", "pending")


class StatusError(ValueError):
    """The path is not a sweep directory."""


@dataclass(frozen=True)
class TrialStatus:
    """One trial not finished: running, unfinished, failed or pending."""

    trial: str
    status: str
    step: int | None = None
    steps: int | None = None
    updated_at: float | None = None
    age_seconds: float | None = None
    """Since its progress.json was last written."""
    error: str | None = None
    """The last line of its error (its row's, else its outcome.json's)."""
    note: str | None = None


@dataclass(frozen=True)
class SweepStatus:
    """Everything `voicescale status` says: `text()` for people, `to_json()` for scripts."""

    sweep: str
    path: str
    state: str
    plan_known: bool
    counts: dict[str, int]
    trials: list[TrialStatus]
    """The open trials but the pending ones, in plan order."""
    pending: list[str]
    spent_seconds: float
    spent_flops: float
    left: Estimate
    champion: Champion
    lock: LockState
    notes: list[str]
    checked_at: float

    def to_json(self) -> dict[str, Any]:
        """Strict JSON with stable keys (None for what is not known)."""
        return json_safe(asdict(self))

    def text(self) -> str:
        """The compact human block."""
        return status_text(self)


def sweep_status(sweep_dir: Path, *, metric: str = "sim", now: float | None = None) -> SweepStatus:
    """The status of the sweep in `sweep_dir` (`runs/<sweep>`); `StatusError` when it holds
    neither results.jsonl nor sweep.json."""
    sweep_dir = Path(sweep_dir)
    paths = SweepPaths(sweep_dir)
    if not paths.results.is_file() and not paths.sweep_record.is_file():
        raise StatusError(
            f"{sweep_dir}: not a sweep directory (no {paths.results.name} and no "
            f"{paths.sweep_record.name})"
        )
    now = time.time() if now is None else now
    rows, row_notes = read_rows(paths.results)
    plan = read_plan(sweep_dir)
    name = plan.config.name if plan.config else sweep_dir.name
    lock = read_lock(sweep_dir.parent, name)
    names = [t.name for t in plan.trials] if plan.trials is not None else _known(paths, rows)
    files = read_trials(paths, names)
    started = plan.started_at if lock.running else None
    statuses = {
        n: _trial_status(n, rows.get(n), files[n], lock.running, started, now) for n in names
    }
    counts = {s: 0 for s in ("done", "diverged", *OPEN)}
    for s in statuses.values():
        counts[s.status] += 1
    open_configs = [t for t in plan.trials or [] if statuses[t.name].status in OPEN]
    extra = sorted(set(rows) - set(names))
    return SweepStatus(
        sweep=name,
        path=str(sweep_dir),
        state=_state(lock.running, counts),
        plan_known=plan.trials is not None,
        counts={**counts, "planned": len(names)},
        trials=[s for s in statuses.values() if s.status in ("running", "unfinished", "failed")],
        pending=[n for n, s in statuses.items() if s.status == "pending"],
        spent_seconds=_spent_seconds(rows.values(), statuses.values(), files, now),
        spent_flops=sum(r.train_flops or 0.0 for r in rows.values()),
        left=_left(plan, list(rows.values()), open_configs, statuses, files, now),
        champion=best_row(list(rows.values()), sweep_dir, metric),
        lock=lock,
        notes=[*row_notes, *plan.notes, *lock.notes, *_extra_note(extra, plan.trials is not None)],
        checked_at=now,
    )


def _known(paths: SweepPaths, rows: dict[str, ResultRow]) -> list[str]:
    """Without a plan: the recorded trials, then the ones with a directory but no row."""
    if not paths.trials.is_dir():
        return list(rows)
    dirs = sorted(p.name for p in paths.trials.iterdir() if p.is_dir())
    return [*rows, *(d for d in dirs if d not in rows)]


def _trial_status(
    name: str,
    row: ResultRow | None,
    files: TrialFiles,
    running: bool,
    run_started: float | None,
    now: float,
) -> TrialStatus:
    """Final rows are their status; a trial this run has started is running; else a failed
    row is failed, a trial started by an earlier run unfinished, the rest pending."""
    if row is not None and row.final:
        return TrialStatus(name, row.status)
    progress = files.progress
    error = _last_line(row.error if row is not None and row.error else files.error)
    step = dict(
        step=progress.step if progress else None,
        steps=progress.steps if progress else None,
        updated_at=progress.updated_at if progress else None,
        age_seconds=now - progress.updated_at if progress and progress.updated_at else None,
    )
    if running and progress is not None and progress.since(run_started, row):
        return TrialStatus(name, "running", **step)
    if row is not None:
        return TrialStatus(name, "failed", **step, error=error)
    if running:
        return TrialStatus(name, "pending")
    if files.finished:
        note = "finished (outcome.json) but not recorded: the next run records it"
        return TrialStatus(name, "unfinished", **step, note=note)
    if progress is not None or files.started:
        return TrialStatus(name, "unfinished", **step, error=error)
    return TrialStatus(name, "pending")


def _last_line(text: str | None) -> str | None:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else None


def _state(running: bool, counts: dict[str, int]) -> str:
    if running:
        return "running"
    if counts["pending"] or counts["unfinished"]:
        return "interrupted"
    return "finished with failures" if counts["failed"] else "finished"


def _spent_seconds(rows: Any, statuses: Any, files: dict[str, TrialFiles], now: float) -> float:
    recorded = sum(r.wall_seconds or 0.0 for r in rows)
    running = sum(files[s.trial].elapsed(now) for s in statuses if s.status == "running")
    return recorded + running


def _extra_note(extra: list[str], plan_known: bool) -> list[str]:
    if not extra or not plan_known:
        return []
    return [f"results.jsonl has rows of trials outside the plan: {some(extra, ', ')}"]


def _left(
    plan: Plan,
    rows: list[ResultRow],
    open_trials: list[TrialConfig],
    statuses: dict[str, TrialStatus],
    files: dict[str, TrialFiles],
    now: float,
) -> Estimate:
    """The cost of the open trials, the running ones less what they did; none without a plan."""
    cap = plan.config.max_concurrent_trials if plan.config else None
    if plan.trials is None:
        at_once, source = concurrency(cap, rows)
        return Estimate(concurrency=at_once, concurrency_from=source, why=plan.unknown_why)
    running = {
        name: (files[name].elapsed(now), _fraction_done(s))
        for name, s in statuses.items()
        if s.status == "running"
    }
    return estimate(rows, open_trials, running, cap, now)


def _fraction_done(state: TrialStatus) -> float:
    if state.step is None or not state.steps:
        return 0.0
    return min(1.0, max(0.0, state.step / state.steps))


# ---------------------------------------------------------------------------------------------
# Command line


# The human block of `voicescale status`

COUNTED = ("done", "diverged", "failed", "running", "unfinished", "pending")


def status_text(status: SweepStatus) -> str:
    """Sweep and state, counts, the open trials, spent, left, champion; then the notes."""
    counts = status.counts
    of = f"of {counts['planned']} planned" if status.plan_known else "plan unknown"
    lines = [
        f"sweep {status.sweep} ({status.path}): {status.state}{_holder(status)}",
        "  trials: " + ", ".join(f"{counts[k]} {k}" for k in COUNTED) + f" ({of})",
        *(_trial_line(t) for t in status.trials),
        f"  spent: {_time_and_flops(status.spent_seconds, status.spent_flops)} "
        "(trial time, summed over trials)",
        f"  left:  {_left_text(status.left)}",
        f"  champion: {_champion(status.champion)}",
        *(f"  note: {note}" for note in status.notes),
    ]
    return "\n".join(lines)


def _holder(status: SweepStatus) -> str:
    holder = status.lock.holder
    if status.state != "running" or not holder:
        return ""
    return f" (pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')})"


def _trial_line(trial: TrialStatus) -> str:
    parts = []
    if trial.step is not None:
        parts.append(f"step {trial.step}/{trial.steps if trial.steps is not None else '?'}")
    if trial.age_seconds is not None:
        parts.append(f"updated {duration(trial.age_seconds)} ago")
    if trial.error:
        parts.append(f"error: {trial.error}")
    if trial.note:
        parts.append(trial.note)
    return f"    {trial.status:<10} {trial.trial:<24} {'; '.join(parts) or 'no progress recorded'}"


def _time_and_flops(seconds: float | None, flops: float | None) -> str:
    text = duration(seconds) if seconds is not None else "?"
    return text + (f", {flops:.3g} training FLOPs" if flops else "")


def _left_text(left: Estimate) -> str:
    if left.why is not None:
        return f"no estimate: {left.why}"
    if left.trials == 0:
        return "nothing"
    counted = left.trials - len(left.without_estimate)
    of = f"{counted} of {left.trials}" if left.without_estimate else str(left.trials)
    text = (
        f"≈ {_time_and_flops(left.seconds, left.flops)} for {of} trial(s); "
        f"≈ {duration(left.wall_seconds)} wall at {left.concurrency} at once "
        f"({left.concurrency_from})"
    )
    if left.without_estimate:
        missing = [f"{name} ({why})" for name, why in left.without_estimate.items()]
        text += f"; no estimate for {', '.join(missing)}"
    return text


def _champion(champion: Champion) -> str:
    if champion.trial is None:
        return f"none by {champion.metric}: {champion.why}"
    value = fmt_with_interval(champion.value, champion.interval)
    return f"{champion.trial}, {champion.metric} {value}"


def duration(seconds: float | None) -> str:
    """45 s, 12 min, 3.4 h, 2.1 d."""
    if seconds is None:
        return "?"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}" if unit != "min" else f"{seconds / size:.0f} min"
    return f"{seconds:.0f} s"


def add_status_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `voicescale status RUNS/SWEEP [--json] [--metric M]` on a subparsers object;
    the parsed namespace's `handler` prints the status and returns the exit code."""
    parser = commands.add_parser(
        "status", help="where a sweep stands: trials by status, time and FLOPs, the champion"
    )
    parser.add_argument("sweep_dir", type=Path, metavar="RUNS/SWEEP", help="a sweep directory")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument(
        "--metric",
        default="sim",
        choices=["sim", "wer", "val_loss"],
        help="the champion's metric, as `voicescale promote` (default: %(default)s)",
    )
    parser.set_defaults(handler=_status_command)
    return parser


def _status_command(args: argparse.Namespace) -> int:
    """0 whatever the sweep's state; 2 when the path is not a readable sweep directory."""
    from store.results_file import ResultsError

    try:
        status = sweep_status(args.sweep_dir, metric=args.metric)
    except (StatusError, ResultsError) as err:
        print(f"voicescale: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(status.to_json(), indent=2, allow_nan=False) if args.json else status.text())
    return 0

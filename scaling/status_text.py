"""The human block of `voicescale status` (`SweepStatus.text()`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scaling.formatting import fmt_with_interval

if TYPE_CHECKING:
    from scaling.status import Champion, Estimate, SweepStatus, TrialStatus

__all__ = ["duration", "status_text"]

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
        f"  left:  {_left(status.left)}",
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


def _left(left: Estimate) -> str:
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

"""What a sweep has left and what it has won, for `voicescale status`: the cost of its open
trials by the forecast's estimator (`scaling.forecast`, cost only: no metric is forecast),
and the champion as `voicescale promote` would pick it (`scaling.promote.eligible_rows`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from store.records import ResultRow
from training.config import TrialConfig

__all__ = ["DEFAULT_CONCURRENCY", "Champion", "Estimate", "best_row", "concurrency", "estimate"]

DEFAULT_CONCURRENCY = 2
"""Trials at once when neither the config nor the rows say (the cluster decides at run time)."""


@dataclass(frozen=True)
class Estimate:
    """What the open trials should still cost; `why` says when there is no estimate."""

    trials: int = 0
    seconds: float | None = None
    """Trial-seconds, summed over trials."""
    wall_seconds: float | None = None
    """`seconds` over `concurrency`, at least the longest trial's."""
    flops: float | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    concurrency_from: str = "assumed"
    without_estimate: dict[str, str] = field(default_factory=dict)
    """Open trials left out of `seconds`, each with why (its family has too few timed
    budgets)."""
    why: str | None = None


@dataclass(frozen=True)
class Champion:
    """The best eligible done row by `metric`, or why there is none."""

    metric: str
    trial: str | None = None
    value: float | None = None
    interval: tuple[float, float] | None = None
    why: str | None = None


def concurrency(cap: int | None, rows: Sequence[ResultRow]) -> tuple[int, str]:
    """Trials at once, and where the number comes from: the config's cap
    (`max_concurrent_trials`), else the most trials the rows show running at once (when
    that is at least 2), else 2."""
    from scaling.timing import sweep_timing

    if cap:
        return cap, "max_concurrent_trials"
    slots = sweep_timing(rows).slots
    if slots >= 2:
        return slots, "the most trials run at once so far"
    return DEFAULT_CONCURRENCY, "assumed: max_concurrent_trials unset, the cluster decides"


def estimate(
    rows: Sequence[ResultRow],
    open_trials: Sequence[TrialConfig],
    running: Mapping[str, tuple[float, float]],
    cap: int | None,
    now: float,
) -> Estimate:
    """The cost of `open_trials` (not finished: running, unfinished, failed, pending) from the
    measured `rows`. `running` maps a running trial to (seconds elapsed, fraction of its
    steps done): its estimate is less the elapsed time, its FLOPs less the fraction."""
    from scaling.forecast import forecast_remaining

    at_once, source = concurrency(cap, rows)
    if not open_trials:
        return Estimate(0, 0.0, 0.0, 0.0, at_once, source)
    forecast = forecast_remaining(rows, open_trials, metrics=[], now=now)
    seconds, flops, missing = [], 0.0, {}
    for trial in open_trials:
        cost = forecast.trials[trial.name]
        if cost.seconds is None:
            missing[trial.name] = str(cost.cost_why)
            continue
        elapsed, fraction = running.get(trial.name, (0.0, 0.0))
        seconds.append(max(0.0, cost.seconds - elapsed))
        flops += (cost.flops or 0.0) * (1.0 - fraction)
    if not seconds:
        timed = any(r.status == "done" and r.train_seconds for r in rows)
        why = next(iter(missing.values())) if timed else "no trial measured yet"
        return Estimate(len(open_trials), None, None, None, at_once, source, missing, why)
    total = sum(seconds)
    wall = max(total / at_once, max(seconds))
    return Estimate(len(open_trials), total, wall, flops or None, at_once, source, missing)


def best_row(rows: list[ResultRow], sweep_dir: Path, metric: str) -> Champion:
    """The eligible row `voicescale promote --metric metric` would pick, with its interval."""
    from scaling.promote import HIGHER_IS_BETTER, eligible_rows

    if not rows:
        return Champion(metric, why="no trial recorded yet")
    eligible, excluded = eligible_rows(rows, sweep_dir, metric, None)
    if not eligible:
        return Champion(metric, why=f"no eligible trial ({some(excluded, '; ')})")
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    best = max(eligible, key=lambda r: sign * float(r.metric(metric)))
    return Champion(metric, best.trial, best.metric(metric), getattr(best, f"{metric}_ci"))


def some(items: Sequence[str], sep: str, shown: int = 3) -> str:
    """The first `shown` items, and how many there are when that is not all."""
    more = f"{sep}… ({len(items)} in all)" if len(items) > shown else ""
    return sep.join(items[:shown]) + more

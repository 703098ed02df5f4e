"""Where a sweep's time went, from its rows alone: per trial, training / evaluation / the rest;
for the sweep, how busy the machine was with training.

    train    the optimiser steps (`train_seconds`; the baseline's fit)
    eval     waiting for the judges' verdict (`eval_seconds`)
    other    the rest of the trial's wall time: starting Ray Train's controller and workers,
             imports, data loading, DeepSpeed's set-up, validation passes, checkpoints, export

    makespan       time during which at least one trial ran (gaps between runs of a resumed
                   sweep are not counted)
    slots          the most trials that ran at once
    busy fraction  Σ train / (makespan × slots): the share of the sweep's slot-time spent
                   training
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from store.records import ResultRow

__all__ = ["SweepTiming", "TrialTime", "sweep_timing"]


@dataclass(frozen=True)
class TrialTime:
    """One trial's wall time, split."""

    trial: str
    started_at: float
    finished_at: float
    train: float
    eval: float

    @property
    def wall(self) -> float:
        return self.finished_at - self.started_at

    @property
    def other(self) -> float:
        return max(0.0, self.wall - self.train - self.eval)


@dataclass(frozen=True)
class SweepTiming:
    trials: tuple[TrialTime, ...]
    makespan: float
    slots: int

    @property
    def train(self) -> float:
        return sum(t.train for t in self.trials)

    @property
    def eval(self) -> float:
        return sum(t.eval for t in self.trials)

    @property
    def busy_fraction(self) -> float:
        return self.train / (self.makespan * self.slots) if self.makespan > 0 else float("nan")

    @property
    def eval_over_train(self) -> float:
        return self.eval / self.train if self.train > 0 else float("nan")

    @property
    def median_other(self) -> float:
        return statistics.median(t.other for t in self.trials) if self.trials else float("nan")

    def summary(self) -> str:
        """One line: the figures a user checks to see whether the machine trained or waited."""
        if not self.trials:
            return "time: no timed trial"
        return (
            f"time: {len(self.trials)} trials in {self.makespan:.0f} s on {self.slots} slot(s); "
            f"training busy fraction {self.busy_fraction:.2f}; eval/train "
            f"{self.eval_over_train:.2f}; other per trial (wall − train − eval) median "
            f"{self.median_other:.1f} s"
        )


def sweep_timing(rows: Sequence[ResultRow]) -> SweepTiming:
    """The breakdown of every row that carries its wall time and finish time."""
    trials = tuple(
        TrialTime(
            r.trial,
            r.finished_at - r.wall_seconds,
            r.finished_at,
            r.train_seconds or 0.0,
            r.eval_seconds or 0.0,
        )
        for r in rows
        if r.wall_seconds is not None and r.finished_at is not None
    )
    return SweepTiming(trials, _union_length(trials), _most_at_once(trials))


def _union_length(trials: Sequence[TrialTime]) -> float:
    total, end = 0.0, float("-inf")
    for t in sorted(trials, key=lambda t: t.started_at):
        if t.finished_at <= end:
            continue
        total += t.finished_at - max(t.started_at, end)
        end = t.finished_at
    return total


def _most_at_once(trials: Sequence[TrialTime]) -> int:
    # Ends sort before starts at the same instant: back-to-back trials do not overlap.
    events = sorted([(t.started_at, 1) for t in trials] + [(t.finished_at, -1) for t in trials])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most

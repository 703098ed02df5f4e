"""Where a sweep's time went, from rows: per-trial split, makespan, slots, busy fraction."""

from __future__ import annotations

import pytest

from scaling.timing import sweep_timing
from store.records import ResultRow


def row(name: str, start: float, end: float, train: float, evaluation: float) -> ResultRow:
    return ResultRow(
        trial=name,
        status="done",
        wall_seconds=end - start,
        finished_at=end,
        train_seconds=train,
        eval_seconds=evaluation,
    )


def test_two_slots_busy_and_idle_time():
    rows = [
        row("a", 0, 100, 80, 10),  # slot 1: other 10
        row("b", 0, 50, 30, 5),  # slot 2: other 15
        row("c", 50, 100, 40, 5),  # slot 2 again, back to back with b: other 5
    ]
    timing = sweep_timing(rows)
    assert timing.makespan == 100 and timing.slots == 2
    assert timing.busy_fraction == pytest.approx(150 / 200)
    assert timing.eval_over_train == pytest.approx(20 / 150)
    assert [t.other for t in timing.trials] == [10, 15, 5]
    assert timing.median_other == 10
    assert "on 2 slot(s); training busy fraction 0.75; eval/train 0.13" in timing.summary()


def test_a_resumed_sweep_does_not_count_the_time_between_its_runs():
    rows = [row("a", 0, 100, 90, 5), row("b", 1000, 1100, 90, 5)]  # a day-long pause between
    timing = sweep_timing(rows)
    assert timing.makespan == 200 and timing.slots == 1
    assert timing.busy_fraction == pytest.approx(0.9)


def test_rows_without_times_are_left_out():
    timing = sweep_timing([ResultRow(trial="x", status="failed")])
    assert timing.trials == () and timing.summary() == "time: no timed trial"

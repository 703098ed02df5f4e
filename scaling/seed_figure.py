"""The sweep's headline claim ("seed's figure") checked on measured points, with its numbers.

Import it from `scaling.analysis`; it lives apart so the report can use it without loading
the fitting code (numpy, scipy).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from scaling.formatting import percent
from scaling.points import measured_rows
from store.records import ResultRow

__all__ = ["describe_seed_figure", "seed_figure"]


Interval = tuple[float, float]


def seed_figure(rows: Sequence[ResultRow], metric: str = "val_loss") -> dict[str, Any] | None:
    """The headline claim checked on measured points (seed-averaged, lower is better): at the
    largest budget largest model < middle < smallest < best traditional baseline; that
    baseline's relative gain between the two largest budgets < 2 %; the largest model's ≥ 5 %.
    None when the rows have fewer than 3 neural sizes, no baseline or fewer than 2 budgets.

    Each family's value at a budget comes with an interval: the rows' own evaluation
    intervals (`<metric>_ci`, speaker-clustered) averaged over seeds and widened to cover every
    seed's value (the seed spread), or the seed spread alone without them. A gain's interval
    is the conservative one its two values' intervals allow. The checks are decided on the
    values; `order_separated` and the gains' intervals say whether the intervals decide too."""
    done = measured_rows(rows, metric)
    budgets = sorted({r.data_utterances for r in done})
    neural = sorted({(r.params, r.model_size) for r in done if r.kind == "neural"})
    baselines = sorted({r.model_size for r in done if r.kind == "baseline"})
    if len(budgets) < 2 or len(neural) < 3 or not baselines:
        return None
    top, previous = budgets[-1], budgets[-2]

    def at(family: str, budget: int) -> list[ResultRow]:
        return [r for r in done if r.model_size == family and r.data_utterances == budget]

    def mean(family: str, budget: int) -> float | None:
        values = [r.metric(metric) for r in at(family, budget)]
        return sum(values) / len(values) if values else None

    measured = [(mean(b, top), b) for b in baselines if mean(b, top) is not None]
    best_baseline = min(measured)[1] if measured else baselines[0]
    smallest, middle, largest = neural[0][1], neural[len(neural) // 2][1], neural[-1][1]
    order = [largest, middle, smallest, best_baseline]
    at_top = {f: mean(f, top) for f in order}
    intervals = {f: _interval(at(f, top), metric) for f in order}

    def gain(family: str) -> tuple[float | None, Interval | None]:
        before, after = mean(family, previous), mean(family, top)
        if before is None or after is None:
            return None, None
        return (before - after) / before, _gain_interval(
            _interval(at(family, previous), metric), intervals[family]
        )

    order_ok = None not in at_top.values() and all(
        at_top[a] < at_top[b] for a, b in itertools.pairwise(order)
    )
    baseline_gain, baseline_ci = gain(best_baseline)
    largest_gain, largest_ci = gain(largest)
    return {
        "metric": metric,
        "budgets": [previous, top],
        "at_largest_budget": at_top,
        "intervals_at_largest_budget": intervals,
        "order": order,
        "order_holds": order_ok,
        "order_separated": _separated(order, intervals) if order_ok else None,
        "baseline": best_baseline,
        "baselines": baselines,
        "baseline_gain": baseline_gain,
        "baseline_gain_ci": baseline_ci,
        "baseline_plateaus": baseline_gain is not None and baseline_gain < 0.02,
        "largest_gain": largest_gain,
        "largest_gain_ci": largest_ci,
        "largest_keeps_improving": largest_gain is not None and largest_gain >= 0.05,
    }


def _interval(rows: Sequence[ResultRow], metric: str) -> Interval | None:
    """The family's value at one budget: mean evaluation interval, widened to every seed."""
    values = [float(r.metric(metric)) for r in rows]
    cis = [getattr(r, f"{metric}_ci", None) for r in rows]
    cis = [ci for ci in cis if ci is not None and None not in ci]
    if not values or (not cis and len(values) < 2):
        return None
    lo, hi = min(values), max(values)
    if cis:
        lo = min(lo, sum(ci[0] for ci in cis) / len(cis))
        hi = max(hi, sum(ci[1] for ci in cis) / len(cis))
    return lo, hi


def _gain_interval(before: Interval | None, after: Interval | None) -> Interval | None:
    """(before − after) / before over the two intervals' ends: the widest the gain can be."""
    if before is None or after is None or before[0] <= 0:
        return None
    return (before[0] - after[1]) / before[0], (before[1] - after[0]) / before[1]


def _separated(order: list[str], intervals: dict[str, Interval | None]) -> bool | None:
    """Do adjacent families' intervals not overlap (None: some family has no interval)?"""
    spans = [intervals[f] for f in order]
    if any(span is None for span in spans):
        return None
    return all(a[1] < b[0] for a, b in itertools.pairwise(spans))


def _span(interval: Interval | None, fmt: Any) -> str:
    return "" if interval is None else f" [{fmt(interval[0])}, {fmt(interval[1])}]"


def describe_seed_figure(rows: Sequence[ResultRow]) -> list[str]:
    """`seed_figure` as short lines, each check marked ✓ or ✗ with its measured numbers and
    intervals."""
    check = seed_figure(rows)
    if check is None:
        return ["seed's figure: needs ≥ 3 model sizes, a baseline and ≥ 2 budgets"]
    previous, top = check["budgets"]
    intervals = check["intervals_at_largest_budget"]
    values = ", ".join(
        f"{family} {value:.4f}{_span(intervals[family], lambda v: f'{v:.4f}')}"
        if value is not None
        else f"{family} –"
        for family, value in check["at_largest_budget"].items()
    )
    separated = {True: "; intervals separate", False: "; intervals overlap", None: ""}[
        check["order_separated"]
    ]

    def mark(ok: bool) -> str:
        return "✓" if ok else "✗"

    def pct(value: float | None) -> str:
        return percent(value, missing="–")

    baseline, largest = check["baseline"], check["order"][0]
    return [
        f"seed's figure ({check['metric']}, lower is better; best of "
        f"{len(check['baselines'])} baseline(s)):",
        f"  {mark(check['order_holds'])} at {top} utterances "
        f"{' < '.join(check['order'])}: {values}{separated}",
        f"  {mark(check['baseline_plateaus'])} {baseline} gain {previous}→{top}: "
        f"{pct(check['baseline_gain'])}{_span(check['baseline_gain_ci'], pct)} (wanted < 2 %)",
        f"  {mark(check['largest_keeps_improving'])} {largest} gain {previous}→{top}: "
        f"{pct(check['largest_gain'])}{_span(check['largest_gain_ci'], pct)} (wanted ≥ 5 %)",
    ]

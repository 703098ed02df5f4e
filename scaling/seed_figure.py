"""The sweep's headline claim ("seed's figure") checked on measured points, with its numbers.

Import it from `scaling.analysis`; it lives apart so the report can use it without loading
the fitting code (numpy, scipy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scaling.formatting import percent
from scaling.points import measured_rows
from store.records import ResultRow

__all__ = ["describe_seed_figure", "seed_figure"]


def seed_figure(rows: Sequence[ResultRow], metric: str = "val_loss") -> dict[str, Any] | None:
    """The headline claim checked on measured points (seed-averaged, lower is better): at the
    largest budget largest model < middle < smallest < baseline; the baseline's relative gain
    between the two largest budgets < 2 %; the largest model's ≥ 5 %. None when the rows have
    fewer than 3 neural sizes, no baseline or fewer than 2 budgets."""
    done = measured_rows(rows, metric)
    budgets = sorted({r.data_utterances for r in done})
    neural = sorted({(r.params, r.model_size) for r in done if r.kind == "neural"})
    if len(budgets) < 2 or len(neural) < 3 or not any(r.kind == "baseline" for r in done):
        return None

    def mean(family: str, budget: int) -> float | None:
        values = [
            r.metric(metric) for r in done if r.model_size == family and r.data_utterances == budget
        ]
        return sum(values) / len(values) if values else None

    top, previous = budgets[-1], budgets[-2]
    smallest, middle, largest = neural[0][1], neural[len(neural) // 2][1], neural[-1][1]
    at_top = {f: mean(f, top) for f in (largest, middle, smallest, "baseline")}

    def gain(family: str) -> float | None:
        before, after = mean(family, previous), mean(family, top)
        return None if before is None or after is None else (before - after) / before

    order_ok = None not in at_top.values() and (
        at_top[largest] < at_top[middle] < at_top[smallest] < at_top["baseline"]
    )
    baseline_gain, largest_gain = gain("baseline"), gain(largest)
    return {
        "metric": metric,
        "budgets": [previous, top],
        "at_largest_budget": at_top,
        "order": [largest, middle, smallest, "baseline"],
        "order_holds": order_ok,
        "baseline_gain": baseline_gain,
        "baseline_plateaus": baseline_gain is not None and baseline_gain < 0.02,
        "largest_gain": largest_gain,
        "largest_keeps_improving": largest_gain is not None and largest_gain >= 0.05,
    }


def describe_seed_figure(rows: Sequence[ResultRow]) -> list[str]:
    """`seed_figure` as short lines, each check marked ✓ or ✗ with its measured numbers."""
    check = seed_figure(rows)
    if check is None:
        return ["seed's figure: needs ≥ 3 model sizes, the baseline and ≥ 2 budgets"]
    previous, top = check["budgets"]
    values = ", ".join(
        f"{family} {value:.4f}" if value is not None else f"{family} –"
        for family, value in check["at_largest_budget"].items()
    )

    def mark(ok: bool) -> str:
        return "✓" if ok else "✗"

    return [
        f"seed's figure ({check['metric']}, lower is better):",
        f"  {mark(check['order_holds'])} at {top} utterances "
        f"{' < '.join(check['order'])}: {values}",
        f"  {mark(check['baseline_plateaus'])} baseline gain {previous}→{top}: "
        f"{percent(check['baseline_gain'], missing='–')} (wanted < 2 %)",
        f"  {mark(check['largest_keeps_improving'])} {check['order'][0]} gain "
        f"{previous}→{top}: {percent(check['largest_gain'], missing='–')} (wanted ≥ 5 %)",
    ]

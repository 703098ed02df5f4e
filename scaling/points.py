"""Results rows → measured points: which rows count, the fitted quantity, family order.

Shared by the fits (`scaling.analysis`) and the report, so both count the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from scaling.formatting import finite
from store.records import ResultRow

__all__ = ["METRIC_TRANSFORMS", "Point", "family_sort_key", "fit_points", "measured_rows"]

METRIC_TRANSFORMS: dict[str, str | None] = {"val_loss": None, "wer": None, "sim": "1 - sim"}
"""Metric → transform applied before fitting (the fit needs lower-is-better, → 0 is best).
Metrics where higher is better (SIM) are fitted as 1 − SIM, so "loss" in a fit always means
the fitted, lower-is-better quantity."""


@dataclass(frozen=True)
class Point:
    """One measured row as a fit sees it: the row and its fitted quantity (`METRIC_TRANSFORMS`)."""

    row: ResultRow
    loss: float


def measured_rows(rows: Iterable[ResultRow], metric: str) -> list[ResultRow]:
    """The rows that measured `metric`: done, with a finite value (diverged and failed rows,
    and done rows never evaluated, are not measurements)."""
    return [r for r in rows if r.status == "done" and finite(r.metric(metric))]


def fit_points(rows: Iterable[ResultRow], metric: str) -> list[Point]:
    """`measured_rows` that also have a positive data budget, with the fitted quantity, in a
    canonical order (baseline last; by parameters, budget, seed, name): fits, bootstrap
    draws and fits.json do not depend on the order in which trials happened to finish."""
    one_minus = METRIC_TRANSFORMS[metric] == "1 - sim"
    points = []
    for row in measured_rows(rows, metric):
        if not (row.data_utterances or 0) > 0:
            continue
        value = row.metric(metric)
        points.append(Point(row, 1.0 - value if one_minus else float(value)))
    return sorted(points, key=_canonical)


def _canonical(point: Point) -> tuple[bool, float, float, int, str]:
    r = point.row
    return (
        r.kind == "baseline",
        float(r.params or 0),
        float(r.data_utterances or 0),
        r.seed or 0,
        r.trial,
    )


def family_sort_key(
    kind: str | None, params: float | None, name: str = "", *, unknown_last: bool = False
) -> tuple[bool, bool, float, str]:
    """Families in reading order: neural sizes by parameter count, then the baseline; equal
    counts by `name` (pass "" to keep the order they came in). An unknown count (None) sorts
    as 0, or after every known one with `unknown_last` (the figures' legend order)."""
    return (kind == "baseline", unknown_last and params is None, float(params or 0), name)

"""What the report reads off the rows directly: families, metric points, budgets, ceilings.

The fitted metrics (`METRICS`) and the perceptual quality scores (`QUALITY`: plotted against
data with their ceilings, not fitted) are read the same way.

Also the hours-per-utterance ratio behind the figures' secondary axis.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scaling.formatting import as_float, finite, human_count
from scaling.points import family_sort_key, measured_rows
from store.records import QUALITY_FIELDS, ResultRow

__all__ = [
    "METRICS",
    "PRIMARY",
    "QUALITY",
    "Analysis",
    "Family",
    "MetricPoint",
    "budgets",
    "ceilings",
    "families",
    "hours_per_utterance",
    "metric_points",
]

METRICS = ("val_loss", "sim", "wer")
"""The metrics the report fits."""
QUALITY = QUALITY_FIELDS
"""The perceptual quality scores the report plots (dnsmos, utmos), unfitted."""
CEILING_METRICS = ("sim", "wer", *QUALITY)
"""What the ceilings (ground truth, vocoded ground truth) are measured in."""
PRIMARY = "val_loss"
Analysis = dict[str, Any]
"""One metric's `scaling.analysis.analyse_results` result, or a part of it (plain JSON)."""


@dataclass(frozen=True)
class Family:
    """One curve of the figures: a model size, or the traditional baseline."""

    name: str
    kind: str
    params: float | None

    @property
    def label(self) -> str:
        """The legend entry: name and parameter count."""
        return f"{self.name} · {human_count(self.params)} params" if self.params else self.name


def families(rows: Sequence[ResultRow]) -> list[Family]:
    """Families in plotting order: neural sizes by parameter count (the median over their
    rows; unknown counts last), then the baseline."""
    params: dict[str, list[float]] = defaultdict(list)
    kinds: dict[str, str] = {}
    for row in rows:
        kinds[row.family] = "baseline" if row.kind == "baseline" else "neural"
        if finite(row.params):
            params[row.family].append(float(row.params))
    found = [
        Family(n, kinds[n], statistics.median(params[n]) if params[n] else None) for n in kinds
    ]
    return sorted(found, key=lambda f: family_sort_key(f.kind, f.params, f.name, unknown_last=True))


def hours_per_utterance(rows: Iterable[ResultRow]) -> float | None:
    """For the secondary hours axis; the median ratio, robust to one odd row."""
    ratios = [
        float(r.data_hours) / as_float(r.data_utterances)
        for r in rows
        if finite(r.data_hours) and as_float(r.data_utterances) > 0
    ]
    return statistics.median(ratios) if ratios else None


def budgets(rows: Iterable[ResultRow]) -> list[float]:
    """The data budget of every done row (NaN where missing)."""
    return [as_float(r.data_utterances) for r in rows if r.status == "done"]


def ceilings(rows: Iterable[ResultRow]) -> dict[str, dict[str, float]]:
    """Ground-truth and vocoder ceilings, per metric, averaged over the rows that carry them."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        if row.ceilings is None:
            continue
        for source, ceiling in (
            ("ground_truth", row.ceilings.ground_truth),
            ("vocoder", row.ceilings.vocoder),
        ):
            for metric in CEILING_METRICS:
                value = getattr(ceiling, metric)
                if finite(value):
                    values[(source, metric)].append(float(value))
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (source, metric), vals in values.items():
        out[source][metric] = statistics.fmean(vals)
    return dict(out)


@dataclass(frozen=True)
class MetricPoint:
    """One family at one budget: the seed-mean of a metric and of its per-row CI."""

    d: float
    mean: float
    lo: float
    hi: float
    seeds: int


def metric_points(rows: Iterable[ResultRow], metric: str) -> dict[str, list[MetricPoint]]:
    """Per family, sorted by budget: seed-mean of `metric` and of its CI (`val_loss_ci`, `sim_ci`,
    `wer_ci`, `dnsmos_ci`, `utmos_ci`)."""
    groups: dict[tuple[str, float], list[ResultRow]] = defaultdict(list)
    for row in measured_rows(rows, metric):
        if finite(row.data_utterances):
            groups[(row.family, float(row.data_utterances))].append(row)
    out: dict[str, list[MetricPoint]] = defaultdict(list)
    for (family, d), group in sorted(groups.items()):
        cis = [_ci(r, metric) or (None, None) for r in group]
        out[family].append(
            MetricPoint(
                d=d,
                mean=statistics.fmean(float(r.metric(metric)) for r in group),
                lo=_nanmean(ci[0] for ci in cis),
                hi=_nanmean(ci[1] for ci in cis),
                seeds=len(group),
            )
        )
    return dict(out)


def _ci(row: ResultRow, metric: str) -> tuple[float, float] | None:
    """The confidence interval of `metric` the row carries (val_loss: from training)."""
    if metric == "val_loss":
        return row.val_loss_ci
    return getattr(row, f"{metric}_ci", None)


def _nanmean(values: Iterable[Any]) -> float:
    kept = [float(v) for v in values if finite(v)]
    return statistics.fmean(kept) if kept else math.nan

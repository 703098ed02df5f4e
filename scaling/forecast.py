"""Forecast the trials a sweep has not run yet from the ones it has, and score the forecast once
they ran: `forecast_remaining` → `Forecast` (→ forecast.json), `score_forecast` → hit rates.

Which law predicts a pending trial, per metric (val_loss, sim, wer; SIM is fitted as 1 − SIM,
`scaling.points.METRIC_TRANSFORMS`, and turned back here):

1. its own family's L(D) — E + B/D^β or B/D^β, whichever AICc supports, exactly as the
   report's fits choose (`scaling.identify.choose_form`) — when the family has ≥ 3 distinct
   measured budgets and more points than B/D^β's 2 parameters (a residual degree of freedom
   to size an interval);
2. else, for a neural trial, the joint L(N, D) = E + A/N^α + B/D^β over every measured neural
   row, when those span ≥ 2 sizes and ≥ 3 budgets and have more points than its 5 parameters
   (N: the parameter count a measured row of the trial's family reports);
3. else "not forecastable", with the reason. A number is never made up.

Every forecast is the fit's value with its 95 % prediction interval (`PowerLawFit.band`: where
one new measurement should fall, bootstrap replicate + resampled residual).

Cost of a pending trial, from the done rows of its own family: its train seconds (and training
FLOPs) as a power of the budget, D^k, by least squares on log–log over those rows (≥ 2 distinct
budgets) — whatever the step protocol, fixed steps (√D), to convergence or fixed compute —
plus the family's median evaluation seconds and median remaining overhead (wall − train −
eval). A family with fewer timed budgets: no estimate, named. Seconds are trial-seconds (summed
over trials), not the sweep's makespan.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scaling.formatting import finite
from scaling.law_names import LAW_TEXT
from scaling.points import METRIC_TRANSFORMS, Point, fit_points
from store.records import METRIC_FIELDS, ResultRow, json_safe
from training.config import TrialConfig, config_hash

__all__ = [
    "LEVEL",
    "Forecast",
    "ForecastScore",
    "HitRate",
    "MetricForecast",
    "ScoredForecast",
    "TrialForecast",
    "forecast_remaining",
    "score_forecast",
]

LEVEL = 0.95  # the prediction intervals' coverage (scaling.power_law.LEVEL)
MIN_BUDGETS = 3
FAMILY_PARAMS, JOINT_PARAMS = 2, 5  # B/D^β; E + A/N^α + B/D^β


@dataclass(frozen=True)
class MetricForecast:
    """One metric of one pending trial: value and 95 % prediction interval, from `law`; or
    value None and `why` not."""

    value: float | None = None
    lo: float | None = None
    hi: float | None = None
    law: str | None = None
    why: str | None = None


@dataclass(frozen=True)
class TrialForecast:
    """What was predicted for one trial before it ran, and what it was expected to cost."""

    trial: str
    config_hash: str
    kind: str
    family: str
    d: float | None
    """The budget in utterances (estimated for an hours budget)."""
    params: float | None
    made_at: float
    metrics: dict[str, MetricForecast]
    seconds: float | None = None
    flops: float | None = None
    cost_why: str | None = None

    def to_json(self) -> dict[str, Any]:
        return json_safe(asdict(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrialForecast:
        metrics = {m: MetricForecast(**v) for m, v in data["metrics"].items()}
        return cls(**{**data, "metrics": metrics})


@dataclass(frozen=True)
class Forecast:
    """Forecasts by trial name (forecast.json)."""

    trials: dict[str, TrialForecast] = field(default_factory=dict)
    level: float = LEVEL

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (NaN → null), trials in the order they were forecast."""
        return {"level": self.level, "trials": [t.to_json() for t in self.trials.values()]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Forecast:
        """Raises KeyError or TypeError on a file this version did not write."""
        trials = [TrialForecast.from_json(t) for t in data["trials"]]
        return cls({t.trial: t for t in trials}, float(data.get("level", LEVEL)))

    @classmethod
    def read(cls, path: Path) -> Forecast | None:
        """forecast.json at `path`; None when there is none. ValueError names the file when
        it is not one this version wrote."""
        if not path.is_file():
            return None
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a forecast this version wrote ({err!r})") from None

    def cost(self, names: Iterable[str]) -> tuple[float, float, list[str]]:
        """Summed estimated seconds and FLOPs of trials `names`, and the ones without an
        estimate of their seconds."""
        chosen = [self.trials[n] for n in names if n in self.trials]
        seconds = sum(t.seconds for t in chosen if t.seconds is not None)
        flops = sum(t.flops for t in chosen if t.flops is not None)
        return seconds, flops, [t.trial for t in chosen if t.seconds is None]


# ---------------------------------------------------------------------------------------------
# Forecasting


def forecast_remaining(
    rows: Sequence[ResultRow],
    pending: Sequence[TrialConfig],
    metrics: Sequence[str] | None = None,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    now: float | None = None,
) -> Forecast:
    """A forecast for every trial in `pending` and each metric (default: val_loss, and sim
    and wer when a done row measured them) from the measured `rows`: see the module's rules."""
    if metrics is None:
        metrics = [m for m in METRIC_FIELDS if fit_points(rows, m)] or ["val_loss"]
    made_at = time.time() if now is None else now
    laws = _Laws(rows, bootstrap, seed)
    out = {}
    for trial in pending:
        d, params = _budget_utterances(trial, rows), _family_params(trial, rows)
        predictions = {m: laws.predict(trial, m, d, params) for m in metrics}
        identity = (trial.name, config_hash(trial), trial.kind, trial.family, d, params)
        out[trial.name] = TrialForecast(*identity, made_at, predictions, *_cost(trial, rows, d))
    return Forecast(out)


class _Laws:
    """Fits made on demand, once per (family or joint, metric)."""

    def __init__(self, rows: Sequence[ResultRow], bootstrap: int, seed: int) -> None:
        self.rows, self.bootstrap, self.seed = rows, bootstrap, seed
        self._fits: dict[tuple[str, str, str], Any] = {}

    def predict(
        self, trial: TrialConfig, metric: str, d: float | None, params: float | None
    ) -> MetricForecast:
        if d is None:
            return MetricForecast(
                why="its budget in utterances is unknown (an hours budget no measured row converts)"
            )
        points = fit_points(self.rows, metric)
        own = [p for p in points if p.row.family == trial.family]
        problem = _too_few(own, FAMILY_PARAMS, sizes=1)
        if problem is None:
            return self._band(("family", trial.family), metric, own, d, None)
        why = f"family {trial.family}: {problem}"
        if trial.kind != "neural":
            return MetricForecast(why=f"{why}; the joint law covers neural sizes only")
        neural = [p for p in points if p.row.kind == "neural" and (p.row.params or 0) > 0]
        joint_problem = _too_few(neural, JOINT_PARAMS, sizes=2)
        if joint_problem is None and params is None:
            joint_problem = f"no measured {trial.family} trial gives its parameter count"
        if joint_problem is not None:
            return MetricForecast(why=f"{why}; joint L(N, D) on neural rows: {joint_problem}")
        return self._band(("joint", "neural"), metric, neural, d, params)

    def _band(
        self, key: tuple[str, str], metric: str, points: list[Point], d: float, n: float | None
    ) -> MetricForecast:
        fit = self._fit(key, metric, points)
        if not fit.ok:
            return MetricForecast(why=f"the {key[0]} fit failed: {fit.message}")
        mid, lo, hi = (float(v[0]) for v in fit.band([d], None if n is None else [n]))
        if METRIC_TRANSFORMS[metric] == "1 - sim":  # fitted as 1 − sim: back, bounds swapped
            mid, lo, hi = 1.0 - mid, 1.0 - hi, 1.0 - lo
        budgets = sorted({int(p.row.data_utterances) for p in points})
        law = (
            f"L(D) of {key[1]} ({LAW_TEXT[fit.form]})"
            if key[0] == "family"
            else "joint L(N, D) of the neural sizes"
        ) + f", {len(points)} rows, budgets {', '.join(map(str, budgets))}"
        return MetricForecast(_number(mid), _number(lo), _number(hi), law)

    def _fit(self, key: tuple[str, str], metric: str, points: list[Point]) -> Any:
        import numpy as np

        from scaling.identify import choose_form
        from scaling.power_law import fit_or_reason

        if (*key, metric) not in self._fits:
            d = [float(p.row.data_utterances) for p in points]
            loss = [p.loss for p in points]
            stream = np.random.SeedSequence([self.seed, zlib.crc32(f"{metric}/{key}".encode())])
            fit_kw: dict[str, Any] = {"bootstrap": self.bootstrap, "seed": stream}
            if key[0] == "joint":
                n = [float(p.row.params) for p in points]
                fit = fit_or_reason(d, loss, n, **fit_kw)
            else:
                fit = choose_form(
                    fit_or_reason(d, loss, **fit_kw), fit_or_reason(d, loss, floor=False, **fit_kw)
                ).chosen
            self._fits[(*key, metric)] = fit
        return self._fits[(*key, metric)]


def _too_few(points: list[Point], n_params: int, *, sizes: int) -> str | None:
    """Why `points` cannot give a law with a prediction interval, or None when they can."""
    budgets = {float(p.row.data_utterances) for p in points}
    n_sizes = {p.row.params for p in points}
    if len(budgets) >= MIN_BUDGETS and len(n_sizes) >= sizes and len(points) > n_params:
        return None
    needs = f"needs ≥ {MIN_BUDGETS} budgets" + (f", ≥ {sizes} sizes" if sizes > 1 else "")
    have = f"{len(budgets)} measured budget(s)" + (f", {len(n_sizes)} size(s)" if sizes > 1 else "")
    return f"{have}, {len(points)} point(s); {needs} and > {n_params} points (to size an interval)"


def _budget_utterances(trial: TrialConfig, rows: Sequence[ResultRow]) -> float | None:
    """D of a pending trial: its utterances; for an hours budget, what a measured row of the
    same budget reports, else hours × the median utterances per hour of the measured rows."""
    budget = trial.data.budget
    if budget.utterances is not None:
        return float(budget.utterances)
    same = [r.data_utterances for r in rows if r.budget == budget.label and r.data_utterances]
    if same:
        return float(same[0])
    ratios = [r.data_utterances / r.data_hours for r in rows if r.data_utterances and r.data_hours]
    return float(budget.hours * statistics.median(ratios)) if ratios else None


def _family_params(trial: TrialConfig, rows: Sequence[ResultRow]) -> float | None:
    counts = [r.params for r in rows if r.family == trial.family and r.params]
    return float(counts[0]) if counts else None


# ---------------------------------------------------------------------------------------------
# Cost


def _cost(
    trial: TrialConfig, rows: Sequence[ResultRow], d: float | None
) -> tuple[float | None, float | None, str | None]:
    """(seconds, FLOPs, why no seconds) of one pending trial: see the module's cost rule."""
    timed = [
        r
        for r in rows
        if r.family == trial.family
        and r.status == "done"
        and finite(r.wall_seconds)
        and finite(r.train_seconds)
        and (r.data_utterances or 0) > 0
    ]
    if d is None:
        return None, None, "its budget in utterances is unknown"
    train = _power_of_budget([(r.data_utterances, r.train_seconds) for r in timed], d)
    if train is None:
        return None, None, f"fewer than 2 budgets of family {trial.family} timed"
    evaluation = statistics.median(r.eval_seconds or 0.0 for r in timed)
    other = statistics.median(
        max(0.0, r.wall_seconds - r.train_seconds - (r.eval_seconds or 0.0)) for r in timed
    )
    flops = _power_of_budget([(r.data_utterances, r.train_flops) for r in timed], d)
    return train + evaluation + other, flops, None


def _power_of_budget(points: list[tuple[Any, Any]], d: float) -> float | None:
    """The least-squares line through (log budget, log value), at `d`; None with fewer than
    2 distinct budgets among the positive values."""
    logs = [(math.log(u), math.log(v)) for u, v in points if finite(v) and v > 0]
    if len({x for x, _ in logs}) < 2:
        return None
    x, y = zip(*logs, strict=True)
    slope, intercept = statistics.linear_regression(x, y)
    return math.exp(intercept + slope * math.log(d))


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------
# Scoring


@dataclass(frozen=True)
class ScoredForecast:
    """One forecast next to what the trial measured (None until it did)."""

    trial: str
    metric: str
    forecast: MetricForecast
    measured: float | None
    covered: bool | None
    relative_error: float | None


@dataclass(frozen=True)
class HitRate:
    """Of the `scored` forecasts of one metric (a value, an interval and a measurement),
    how many intervals held the measurement."""

    metric: str
    scored: int
    covered: int

    @property
    def rate(self) -> float | None:
        return self.covered / self.scored if self.scored else None


@dataclass(frozen=True)
class ForecastScore:
    entries: list[ScoredForecast]
    hit_rates: dict[str, HitRate]


def score_forecast(forecast: Forecast, rows: Sequence[ResultRow]) -> ForecastScore:
    """Each forecast against the done row of its trial (same configuration): covered when
    lo ≤ measured ≤ hi; relative error (forecast − measured) / |measured|; the hit rate per
    metric over the forecasts that have an interval and a measurement."""
    by_name = {r.trial: r for r in rows}
    entries = []
    for t in forecast.trials.values():
        row = by_name.get(t.trial)
        same = row is not None and row.status == "done" and row.config_hash == t.config_hash
        for metric, f in t.metrics.items():
            value = row.metric(metric) if same and row is not None else None
            measured = float(value) if finite(value) else None
            entries.append(_score(t.trial, metric, f, measured))
    rates = {}
    for metric in dict.fromkeys(e.metric for e in entries):
        scored = [e for e in entries if e.metric == metric and e.covered is not None]
        rates[metric] = HitRate(metric, len(scored), sum(bool(e.covered) for e in scored))
    return ForecastScore(entries, rates)


def _score(trial: str, metric: str, f: MetricForecast, measured: float | None) -> ScoredForecast:
    if measured is None or f.value is None:
        return ScoredForecast(trial, metric, f, measured, None, None)
    error = (f.value - measured) / abs(measured) if measured else None
    covered = None if f.lo is None or f.hi is None else f.lo <= measured <= f.hi
    return ScoredForecast(trial, metric, f, measured, covered, error)

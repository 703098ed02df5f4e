"""The sweep's forecast point: which trials are cheap, when the forecast is made and kept, and
how it is printed, written (forecast.json) and sent to MLflow. The fits are `scaling.forecast`.

Phase rule. Of a grid's k data budgets, the smallest c = max(3, ⌈k/2⌉) are cheap (4 → 3,
6 → 3, 8 → 4), so every family gets 3 budgets to fit before anything larger runs; every
trial at a cheap budget runs first, then the sweep forecasts the rest, then launches them.
A grid of ≤ 3 budgets cannot leave 3 to fit and 1 to forecast: it runs in one phase, as
before, and writes no forecast. Budgets sort by their value when they share a unit (all
utterances, or all hours), else in the grid's order.

Resume rule. A trial's forecast is made once, before it runs, and never rewritten: a re-run
keeps every entry of forecast.json, and forecasts (with every row measured by then) only the
pending trials it has no entry for: a new grid point, or a trial whose configuration changed
(another config_hash). An entry that said "not forecastable" stays as said, too.

MLflow. forecast.json goes onto the sweep's parent run as an artifact, and each forecast and
its interval as metrics `forecast.<trial>.<metric>` (`.lo`, `.hi`), stamped with the time the
forecast was made, so logging it again changes nothing. The calls go through the tracking
queue: an MLflow outage delays them, it never stops the sweep.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from scaling.forecast import Forecast, forecast_remaining
from store.records import ResultRow
from store.results_file import load_results, load_rows
from training.config import DataBudget, SweepConfig, TrialConfig, config_hash

if TYPE_CHECKING:
    from cluster.tracking_queue import TrackingQueue
    from scaling.sweep_plan import SweepPlan

__all__ = [
    "FORECAST_FILE",
    "ForecastNotReady",
    "cheap_budgets",
    "forecast_before_launch",
    "forecast_only",
    "phase_note",
    "split_phases",
]

FORECAST_FILE = "forecast.json"
FIT_BUDGETS = 3


class ForecastNotReady(ValueError):
    """`--forecast-only` on a sweep that cannot forecast yet (names what is missing)."""


def cheap_budgets(budgets: Sequence[DataBudget]) -> list[DataBudget]:
    """The budgets of the cheap phase (see the phase rule); empty when the grid has ≤ 3."""
    k = len(budgets)
    if k <= FIT_BUDGETS:
        return []
    units = {b.utterances is None for b in budgets}
    ordered = sorted(budgets, key=lambda b: b.utterances or b.hours) if len(units) == 1 else budgets
    return list(ordered[: max(FIT_BUDGETS, math.ceil(k / 2))])


def split_phases(
    sweep: SweepConfig, trials: Sequence[TrialConfig]
) -> tuple[list[TrialConfig], list[TrialConfig]]:
    """(cheap, forecast) trials of `trials`, each in the order given; with no phase split,
    every trial is cheap."""
    cheap = cheap_budgets(sweep.grid.data_budgets)
    if not cheap:
        return list(trials), []
    first = [t for t in trials if t.data.budget in cheap]
    return first, [t for t in trials if t.data.budget not in cheap]


def phase_note(sweep: SweepConfig) -> str:
    """One line for the plan: what runs first, what is forecast."""
    budgets = sweep.grid.data_budgets
    cheap = cheap_budgets(budgets)
    if not cheap:
        return (
            f"phases: one — the grid has {len(budgets)} budget(s); a forecast needs ≥ "
            f"{FIT_BUDGETS + 1} ({FIT_BUDGETS} cheap ones to fit, a larger one to forecast)"
        )
    later = [b.label for b in budgets if b not in cheap]
    return (
        f"phases: budgets {', '.join(b.label for b in cheap)} first; then a forecast of "
        f"{', '.join(later)} ({FORECAST_FILE}); then those"
    )


# ---------------------------------------------------------------------------------------------
# The forecast point of a sweep


def forecast_before_launch(
    plan: SweepPlan, later: Sequence[TrialConfig], queue: TrackingQueue, *, table: bool = True
) -> Forecast:
    """Between the phases: forecast `later` (kept entries stay, see the resume rule), write
    forecast.json when it changed, send it to MLflow, print it (every trial and metric with
    `table`, else a summary of a few lines)."""
    path = plan.paths.root / FORECAST_FILE
    rows = load_rows(plan.paths.results)
    forecast, fresh = _merged(_kept(path), rows, later)
    if _changed(path, forecast):
        _write(path, forecast)
    payload = forecast.to_json()
    queue.submit("the forecast", lambda t: t.log_forecast(payload, mlflow_metrics(forecast)))
    text = format_forecast(forecast, later, fresh, rows)
    if not table:
        text = summarise_forecast(text, forecast, later, plan.paths.root / FORECAST_FILE)
    print(text, flush=True)
    return forecast


def forecast_only(sweep: SweepConfig, plan: SweepPlan) -> int:
    """`voicescale sweep --forecast-only`: the forecast (kept entries and new ones, written
    nowhere) and the estimated cost of every trial not run yet (`plan`: the sweep's
    `scaling.sweep.plan_sweep`); trains nothing. Raises `ForecastNotReady` when the grid has
    no phase split or a cheap trial is not finished."""
    cheap, later = split_phases(sweep, plan.trials)
    if not later:
        raise ForecastNotReady(f"sweep {sweep.name}: {phase_note(sweep).removeprefix('phases: ')}")
    rows = load_results(plan.paths.results)
    missing = [t.name for t in cheap if t.name not in rows or not rows[t.name].final]
    if missing:
        raise ForecastNotReady(
            f"sweep {sweep.name}: the forecast needs every cheap trial finished; "
            f"{len(missing)} of {len(cheap)} are not: {', '.join(_with_status(missing, rows))} "
            "(run `voicescale sweep` to run them)"
        )
    pending = [t for t in later if t.name in {p.name for p in plan.pending}]
    if not pending:
        print(f"sweep {sweep.name}: every trial is recorded; nothing left to forecast")
        return 0
    try:
        kept = Forecast.read(plan.paths.root / FORECAST_FILE)
    except ValueError as err:  # the sweep moves such a file aside; here nothing is changed
        raise ForecastNotReady(str(err)) from None
    forecast, fresh = _merged(kept, list(rows.values()), pending)
    print(format_forecast(forecast, pending, fresh, list(rows.values())), flush=True)
    return 0


def _with_status(names: list[str], rows: dict[str, ResultRow]) -> list[str]:
    return [f"{n} ({rows[n].status})" if n in rows else n for n in names]


def _merged(
    kept: Forecast | None, rows: Sequence[ResultRow], later: Sequence[TrialConfig]
) -> tuple[Forecast, set[str]]:
    """`kept` plus new forecasts of the trials of `later` it has no entry for (of the same
    configuration); and the names forecast now."""
    kept = kept or Forecast()
    redo = [t for t in later if not _keeps(kept, t)]
    fresh = forecast_remaining(rows, redo) if redo else Forecast()
    return Forecast({**kept.trials, **fresh.trials}, kept.level), set(fresh.trials)


def _keeps(kept: Forecast, trial: TrialConfig) -> bool:
    entry = kept.trials.get(trial.name)
    return entry is not None and entry.config_hash == config_hash(trial)


def _kept(path: Path) -> Forecast | None:
    """forecast.json, or None; an unreadable one is moved aside (never silently replaced)."""
    try:
        return Forecast.read(path)
    except ValueError as err:
        aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        path.replace(aside)
        print(f"warning: {err}; moved it to {aside}", file=sys.stderr, flush=True)
        return None


def _changed(path: Path, forecast: Forecast) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")) != forecast.to_json()
    except (OSError, ValueError):
        return True


def _write(path: Path, forecast: Forecast) -> None:
    """Whole or not at all: a crash mid-write leaves the previous file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(forecast.to_json(), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def mlflow_metrics(forecast: Forecast) -> dict[float, dict[str, float]]:
    """Metrics for the parent run, grouped by the time each forecast was made (seconds)."""
    out: dict[float, dict[str, float]] = {}
    for t in forecast.trials.values():
        group = out.setdefault(t.made_at, {})
        for metric, f in t.metrics.items():
            for suffix, value in (("", f.value), (".lo", f.lo), (".hi", f.hi)):
                if value is not None:
                    group[f"forecast.{t.trial}.{metric}{suffix}"] = value
        if t.seconds is not None:
            group[f"forecast.{t.trial}.seconds"] = t.seconds
    return out


# ---------------------------------------------------------------------------------------------
# Printing


def format_forecast(
    forecast: Forecast, trials: Sequence[TrialConfig], fresh: set[str], rows: Sequence[ResultRow]
) -> str:
    """The table printed before the forecast trials launch, and the cost of running them."""
    done = sum(1 for r in rows if r.status == "done")
    new = sum(1 for t in trials if t.name in fresh)
    lines = [
        f"forecast of {len(trials)} trial(s), {forecast.level:.0%} prediction intervals: "
        f"{new} made now from {done} done row(s), {len(trials) - new} kept as first made "
        f"({FORECAST_FILE})",
        f"  {'trial':<26} {'metric':<8} {'forecast':>9}  {'interval':<19} law",
    ]
    for trial in trials:
        entry = forecast.trials[trial.name]
        when = (
            "now"
            if trial.name in fresh
            else time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.made_at))
        )
        for metric, f in entry.metrics.items():
            if f.value is None:
                lines.append(f"  {trial.name:<26} {metric:<8} not forecastable: {f.why}")
                continue
            interval = f"[{_fmt(f.lo)}, {_fmt(f.hi)}]"
            lines.append(
                f"  {trial.name:<26} {metric:<8} {_fmt(f.value):>9}  {interval:<19} "
                f"{f.law} (made {when})"
            )
    lines.append(_cost_line(forecast, [t.name for t in trials]))
    return "\n".join(lines)


def summarise_forecast(
    table: str, forecast: Forecast, trials: Sequence[TrialConfig], path: Path
) -> str:
    """The forecast's first line, how many values have an interval, and its cost line."""
    values = [f for t in trials for f in forecast.trials[t.name].metrics.values()]
    made = sum(f.value is not None for f in values)
    lines = table.splitlines()
    return "\n".join(
        [
            lines[0],
            f"  {made} of {len(values)} trial × metric values forecast, the rest say why not; "
            f"every one in {path} (`voicescale sweep --forecast-only` prints them)",
            lines[-1],
        ]
    )


def _cost_line(forecast: Forecast, names: list[str]) -> str:
    seconds, flops, unknown = forecast.cost(names)
    text = f"cost of the {len(names)} remaining trial(s): ≈ {seconds:.0f} s of trial time"
    text += f" ({seconds / 3600:.2f} h, summed over trials, not wall time)"
    if flops:
        text += f", ≈ {flops:.3g} training FLOPs"
    if unknown:
        text += f"; no estimate for {', '.join(unknown)} ({forecast.trials[unknown[0]].cost_why})"
    return text


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"

"""The report's "Forecast vs measured" section: what the sweep predicted for its expensive trials
before running them (forecast.json, `scaling.sweep_forecast`), next to what they measured, and
how often the 95 % prediction intervals held the measurement."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from scaling.forecast import Forecast, ForecastScore, ScoredForecast, score_forecast
from scaling.formatting import fmt_number, signed_percent
from scaling.report_html import esc, note, table
from store.records import ResultRow

__all__ = ["NO_FORECAST", "forecast_section", "read_forecast"]

NO_FORECAST = (
    "No forecast.json in this sweep's directory: the sweep made no forecast (a grid of fewer "
    "than 4 data budgets runs in one phase, with nothing left to forecast), or it ran before "
    "forecasting existed."
)


def read_forecast(sweep_dir: Path) -> tuple[Forecast | None, str]:
    """(the sweep's forecast, "") or (None, why there is none to show)."""
    try:
        forecast = Forecast.read(Path(sweep_dir) / "forecast.json")
    except ValueError as err:
        return None, f"forecast.json could not be read: {err}"
    return (forecast, "") if forecast is not None else (None, NO_FORECAST)


def forecast_section(
    forecast: Forecast | None, rows: Sequence[ResultRow], why: str = NO_FORECAST
) -> str:
    """The section: hit rate per metric, then every forecast with its measurement; one line
    saying `why` when there is no forecast."""
    head = '<section id="forecast"><h2>Forecast vs measured</h2>'
    if forecast is None or not forecast.trials:
        return f"{head}{note(why or NO_FORECAST, 'meta')}</section>"
    score = score_forecast(forecast, rows)
    made = sorted({t.made_at for t in forecast.trials.values()})
    when = ", ".join(time.strftime("%Y-%m-%d %H:%M", time.localtime(m)) for m in made)
    intro = (
        f"<p>Before launching its expensive trials the sweep fitted the cheap ones and forecast "
        f"each remaining trial with a {forecast.level:.0%} prediction interval (made {esc(when)}; "
        "kept, never rewritten, once made). A trial is scored once it is done; an interval that "
        f"holds the measurement is a hit, and about {forecast.level:.0%} of them should be.</p>"
    )
    return f"{head}{intro}{_hit_rate_table(score)}{_entries_table(score)}</section>"


def _hit_rate_table(score: ForecastScore) -> str:
    body = []
    for metric, rate in score.hit_rates.items():
        entries = [e for e in score.entries if e.metric == metric]
        waiting = sum(1 for e in entries if e.forecast.value is not None and e.measured is None)
        unforecast = sum(1 for e in entries if e.forecast.value is None)
        body.append(
            [
                metric,
                str(rate.scored),
                str(rate.covered),
                f"{rate.rate:.0%}" if rate.rate is not None else "— (none scored)",
                str(waiting),
                str(unforecast),
            ]
        )
    headers = ["metric", "scored", "covered", "hit rate", "not measured yet", "not forecastable"]
    return table(headers, body)


def _entries_table(score: ForecastScore) -> str:
    body, classes = [], []
    for e in score.entries:
        body.append([e.trial, e.metric, *_cells(e)])
        classes.append("failed" if e.covered is False else "")
    headers = [
        "trial",
        "metric",
        "forecast [lo, hi]",
        "measured",
        "covered",
        "error",
        "law, or why not",
    ]
    return table(headers, body, row_classes=classes, text_columns=2)


def _cells(e: ScoredForecast) -> list[str | tuple[str, str]]:
    f = e.forecast
    if f.value is None:
        return ["not forecastable", fmt_number(e.measured), "—", "—", (str(f.why), "text")]
    predicted = f"{fmt_number(f.value)} [{fmt_number(f.lo)}, {fmt_number(f.hi)}]"
    covered: str | tuple[str, str] = "—"
    if e.covered is not None:
        covered = ("yes", "ok") if e.covered else ("no", "bad")
    error = signed_percent(e.relative_error) if e.relative_error is not None else "—"
    return [predicted, fmt_number(e.measured), covered, error, (str(f.law), "text")]

"""`voicescale report`: results.jsonl → fits.json, figures/*.png and a self-contained report.html.

All three are written into the sweep's directory, `runs/<sweep>/`.

The report reads results.jsonl alone (no MLflow, no Ray), so it can be rebuilt anywhere the
file is copied to. The page embeds its figures as base64 PNGs and its CSS inline and runs no
script: it can be mailed, archived or opened offline and still show everything.

Every row is accounted for: done rows feed the fits, diverged and failed rows are listed with
their error, and done rows without a metric are named as excluded rather than dropped.

The parts: `scaling.report_rows` (what the rows say directly), `scaling.figures` (matplotlib),
`scaling.report_html` (building blocks), `scaling.report_trials`, `scaling.report_fits` and
`scaling.report_forecast` (the sections); the fits themselves are `scaling.analysis`.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

from scaling.figures import draw_figures
from scaling.forecast import Forecast
from scaling.formatting import json_safe
from scaling.points import measured_rows
from scaling.report_fits import (
    extrapolation_section,
    fits_section,
    headline_section,
    joint_section,
    sim_wer_section,
)
from scaling.report_forecast import NO_FORECAST, forecast_section, read_forecast
from scaling.report_html import CSS, esc
from scaling.report_protocol import protocol_section
from scaling.report_rows import METRICS, PRIMARY, Analysis
from scaling.report_trials import (
    seed_figure_section,
    status_section,
    time_section,
    trials_section,
    verdict_section,
)
from store.records import ResultRow
from store.results_file import ResultsError, load_rows

__all__ = [
    "METRICS",
    "add_report_parser",
    "analyse_sweep",
    "build_report",
    "draw_figures",
    "mlflow_ui_for",
    "read_rows",
    "render_html",
]


LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"
"""Where `make mlflow-ui` serves a sweep's local (sqlite) MLflow store."""


def build_report(
    sweep_dir: Path,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    cost_per_gpu_hour: float | None = None,
    mlflow_ui: str | None = None,
) -> Path:
    """Fit the sweep's scaling laws and write `fits.json`, `figures/*.png` and `report.html`
    into `sweep_dir`; returns the path of report.html. `cost_per_gpu_hour` (the sweep
    config's) prices the GPU-hours the trials held; trials link to their runs in the MLflow
    UI at `mlflow_ui` (default: `mlflow_ui_for(sweep_dir)`).

    Raises FileNotFoundError when `sweep_dir/results.jsonl` is missing and ValueError (a
    `ResultsError`) naming file and line when a row is malformed.
    """
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be >= 0, got {bootstrap}")
    sweep_dir = Path(sweep_dir)
    rows = read_rows(sweep_dir / "results.jsonl")
    analyses = analyse_sweep(rows, bootstrap=bootstrap, seed=seed)
    (sweep_dir / "fits.json").write_text(json.dumps(json_safe(analyses), indent=2) + "\n")
    figures = draw_figures(rows, analyses, sweep_dir / "figures")
    forecast, why = read_forecast(sweep_dir)
    page = render_html(
        sweep_dir.name,
        rows,
        analyses,
        figures,
        bootstrap=bootstrap,
        seed=seed,
        cost_per_gpu_hour=cost_per_gpu_hour,
        forecast=forecast,
        no_forecast_why=why,
        mlflow_ui=mlflow_ui or mlflow_ui_for(sweep_dir),
    )
    path = sweep_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def mlflow_ui_for(sweep_dir: Path) -> str:
    """The MLflow UI holding the sweep's runs: its tracking server when the sweep logged to
    one (sweep.json's `tracking_uri`), else what `make mlflow-ui` serves locally."""
    try:
        uri = json.loads((Path(sweep_dir) / "sweep.json").read_text()).get("tracking_uri")
    except (OSError, ValueError, AttributeError):
        uri = None
    if isinstance(uri, str) and uri.startswith(("http://", "https://")):
        return uri
    return LOCAL_MLFLOW_UI


def read_rows(path: Path) -> list[ResultRow]:
    """All rows of results.jsonl in file order, whatever their status."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no results.jsonl here — run the sweep first (`voicescale sweep`), "
            "or point at the sweep's directory under runs/"
        )
    return load_rows(path)


def analyse_sweep(
    rows: Sequence[ResultRow], *, bootstrap: int, seed: int
) -> dict[str, Analysis | None]:
    """`scaling.analysis.analyse_results` per metric; None for a metric no done row has (all
    failed, or never evaluated), so the report can say so instead of plotting nothing.

    The metrics are independent fits of a few seconds each: one process per metric, up to
    the CPU count (spawned, not forked: the sweep driver calling this runs Ray's threads)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from scaling.analysis import analyse_results

    usable = [m for m in METRICS if measured_rows(rows, m)]
    rows = list(rows)
    options = {"bootstrap": bootstrap, "seed": seed}
    workers = min(len(usable), os.cpu_count() or 1)
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {m: pool.submit(analyse_results, rows, metric=m, **options) for m in usable}
            fitted = {m: f.result() for m, f in futures.items()}
    else:
        fitted = {m: analyse_results(rows, metric=m, **options) for m in usable}
    return {m: fitted.get(m) for m in METRICS}


def render_html(
    sweep: str,
    rows: Sequence[ResultRow],
    analyses: dict[str, Analysis | None],
    figures: dict[str, Path],
    *,
    bootstrap: int,
    seed: int,
    cost_per_gpu_hour: float | None = None,
    forecast: Forecast | None = None,
    no_forecast_why: str = NO_FORECAST,
    mlflow_ui: str | None = None,
) -> str:
    """The whole page, in the order a reader asks: the headline figure and the verdict, then
    the checks (the classic figure, what did not finish, what "more data" meant), then the
    other figures, the fit tables, the extrapolation check, the forecast against what was
    measured, and every trial (linked to its MLflow run in the UI at `mlflow_ui`)."""
    primary = analyses.get(PRIMARY)
    sections = [
        f"<h1>Scaling report — {esc(sweep)}</h1>",
        f'<p class="meta">{len(rows)} trials in results.jsonl · power laws fitted with a Huber '
        f"loss on log residuals · intervals from {bootstrap} bootstrap resamples (seed {seed})"
        " · primary metric: held-out loss</p>",
        headline_section(primary, figures) if primary is not None else "",
        verdict_section(primary, rows),
        seed_figure_section(rows),
        status_section(rows),
        protocol_section(rows),
    ]
    if primary is not None:
        sections += [
            sim_wer_section(figures),
            fits_section(analyses),
            joint_section(primary, figures),
            extrapolation_section(primary),
        ]
    sections.append(forecast_section(forecast, rows, no_forecast_why))
    sections.append(trials_section(rows, mlflow_ui))
    sections.append(time_section(rows, cost_per_gpu_hour))
    body = "\n".join(s for s in sections if s)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Scaling report — {esc(sweep)}</title><style>{CSS}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def add_report_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `voicescale report RUNS/SWEEP [--bootstrap B] [--seed S]` on a subparsers
    object; the parsed namespace's `handler` builds the report and prints its path."""
    parser = commands.add_parser(
        "report", help="fit the scaling laws and write runs/<sweep>/report.html"
    )
    parser.add_argument("sweep_dir", type=Path, metavar="RUNS/SWEEP", help="holds results.jsonl")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="B",
        help="bootstrap resamples behind every interval (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument(
        "--cost-per-gpu-hour",
        type=float,
        metavar="X",
        help="price of one GPU-hour: the report multiplies it by the GPU-hours trials held",
    )
    parser.add_argument(
        "--mlflow-ui",
        metavar="URL",
        help="the MLflow UI that trials link to (default: the sweep's tracking server, "
        f"else {LOCAL_MLFLOW_UI}, where `make mlflow-ui` serves the local store)",
    )
    parser.set_defaults(handler=_report_command)
    return parser


def _report_command(args: argparse.Namespace) -> int:
    from training.config import ConfigError

    if args.bootstrap < 0:
        raise ConfigError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    try:
        path = build_report(
            args.sweep_dir,
            bootstrap=args.bootstrap,
            seed=args.seed,
            cost_per_gpu_hour=args.cost_per_gpu_hour,
            mlflow_ui=args.mlflow_ui,
        )
    except (FileNotFoundError, ResultsError) as err:
        raise ConfigError(str(err)) from err
    print(path)
    return 0

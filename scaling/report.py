"""`voicescale report`: `runs/<sweep>/results.jsonl` → `fits.json`, `figures/*.png` and one
self-contained `report.html`.

The report reads results.jsonl alone (no MLflow, no Ray), so it can be rebuilt anywhere the
file is copied to. The page embeds its figures as base64 PNGs and its CSS inline and runs no
script: it can be mailed, archived or opened offline and still show everything.

Every row is accounted for: done rows feed the fits, diverged and failed rows are listed with
their error, and done rows without a metric are named as excluded rather than dropped.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaling.results import ResultsError, describe_seed_figure, load_results

if TYPE_CHECKING:  # matplotlib is imported lazily: `voicescale --help` should not pay for it
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "METRICS",
    "add_report_parser",
    "analyse_sweep",
    "build_report",
    "draw_figures",
    "read_rows",
    "render_html",
]

METRICS = ("val_loss", "sim", "wer")
PRIMARY = "val_loss"
Row = dict[str, Any]
Analysis = dict[str, Any]

METRIC_AXIS = {
    "val_loss": "held-out loss (lower is better)",
    "sim": "SIM, speaker similarity (higher is better)",
    "wer": "WER, word error rate (lower is better)",
}
BASELINE_COLOUR = "0.2"
CEILING_STYLE = {  # reference lines: what a perfect TTS and a perfect acoustic model would score
    "ground_truth": {"label": "ground truth", "color": "tab:green", "linestyle": ":"},
    "vocoder": {"label": "vocoded ground truth", "color": "tab:purple", "linestyle": "-."},
}


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def build_report(sweep_dir: Path, *, bootstrap: int = 1000, seed: int = 0) -> Path:
    """Fit the sweep's scaling laws and write `fits.json`, `figures/*.png` and `report.html`
    into `sweep_dir`; returns the path of report.html.

    Raises FileNotFoundError when `sweep_dir/results.jsonl` is missing and ValueError (a
    `ResultsError`) naming file and line when a row is malformed.
    """
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be >= 0, got {bootstrap}")
    sweep_dir = Path(sweep_dir)
    rows = read_rows(sweep_dir / "results.jsonl")
    analyses = analyse_sweep(rows, bootstrap=bootstrap, seed=seed)
    (sweep_dir / "fits.json").write_text(json.dumps(_json_safe(analyses), indent=2) + "\n")
    figures = draw_figures(rows, analyses, sweep_dir / "figures")
    page = render_html(sweep_dir.name, rows, analyses, figures, bootstrap=bootstrap, seed=seed)
    path = sweep_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def read_rows(path: Path) -> list[Row]:
    """All rows of results.jsonl in file order, whatever their status."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no results.jsonl here — run the sweep first (`voicescale sweep`), "
            "or point at the sweep's directory under runs/"
        )
    return list(load_results(path).values())


def analyse_sweep(rows: Sequence[Row], *, bootstrap: int, seed: int) -> dict[str, Analysis | None]:
    """`scaling.fit.analyse_results` per metric; None for a metric no done row has (all
    failed, or never evaluated), so the report can say so instead of plotting nothing.

    The metrics are independent fits of a few seconds each: one process per metric, up to
    the CPU count (spawned, not forked: the sweep driver calling this runs Ray's threads)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from scaling.fit import analyse_results

    usable = [m for m in METRICS if _usable_rows(rows, m)]
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
    parser.set_defaults(handler=_report_command)
    return parser


def _report_command(args: argparse.Namespace) -> int:
    from training.config import ConfigError

    if args.bootstrap < 0:
        raise ConfigError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    try:
        path = build_report(args.sweep_dir, bootstrap=args.bootstrap, seed=args.seed)
    except (FileNotFoundError, ResultsError) as err:
        raise ConfigError(str(err)) from err
    print(path)
    return 0


# ---------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """One curve of the figures: a model size, or the traditional baseline."""

    name: str
    kind: str
    params: float | None

    @property
    def label(self) -> str:
        return f"{self.name} · {_human_count(self.params)} params" if self.params else self.name


def _num(value: Any) -> float:
    """A float, NaN for anything missing: NaN flows through numpy and formats as a dash."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _finite(value: Any) -> bool:
    return math.isfinite(_num(value))


def _usable_rows(rows: Iterable[Row], metric: str) -> list[Row]:
    return [r for r in rows if r.get("status") == "done" and _finite(r.get(metric))]


def _family_name(row: Row) -> str:
    """The key `scaling.fit` groups by, so rows and fitted families line up."""
    return str(row.get("model_size"))


def _families(rows: Sequence[Row]) -> list[Family]:
    """Families in plotting order: neural sizes by parameter count, then the baseline."""
    params: dict[str, list[float]] = defaultdict(list)
    kinds: dict[str, str] = {}
    for row in rows:
        name = _family_name(row)
        kinds[name] = "baseline" if row.get("kind") == "baseline" else "neural"
        if _finite(row.get("params")):
            params[name].append(_num(row["params"]))
    found = [
        Family(n, kinds[n], statistics.median(params[n]) if params[n] else None) for n in kinds
    ]
    return sorted(
        found, key=lambda f: (f.kind == "baseline", f.params is None, f.params or 0, f.name)
    )


def _hours_per_utterance(rows: Iterable[Row]) -> float | None:
    """For the secondary hours axis; the median ratio, robust to one odd row."""
    ratios = [
        _num(r["data_hours"]) / _num(r["data_utterances"])
        for r in rows
        if _finite(r.get("data_hours")) and _num(r.get("data_utterances")) > 0
    ]
    return statistics.median(ratios) if ratios else None


def _budgets(rows: Iterable[Row]) -> list[float]:
    return [_num(r.get("data_utterances")) for r in rows if r.get("status") == "done"]


def _ceilings(rows: Iterable[Row]) -> dict[str, dict[str, float]]:
    """Ground-truth and vocoder ceilings averaged over the rows that carry them."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        for source, metrics in (row.get("ceilings") or {}).items():
            for metric, value in (metrics or {}).items():
                if _finite(value):
                    values[(source, metric)].append(_num(value))
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


def _metric_points(rows: Iterable[Row], metric: str) -> dict[str, list[MetricPoint]]:
    """Per family, sorted by budget: seed-mean of `metric` and of `<metric>_ci`."""
    groups: dict[tuple[str, float], list[Row]] = defaultdict(list)
    for row in _usable_rows(rows, metric):
        if _finite(row.get("data_utterances")):
            groups[(_family_name(row), _num(row["data_utterances"]))].append(row)
    out: dict[str, list[MetricPoint]] = defaultdict(list)
    for (family, d), group in sorted(groups.items()):
        cis = [r.get(f"{metric}_ci") or [None, None] for r in group]
        out[family].append(
            MetricPoint(
                d=d,
                mean=statistics.fmean(_num(r[metric]) for r in group),
                lo=_nanmean(ci[0] for ci in cis),
                hi=_nanmean(ci[1] for ci in cis),
                seeds=len(group),
            )
        )
    return dict(out)


def _nanmean(values: Iterable[Any]) -> float:
    finite = [_num(v) for v in values if _finite(v)]
    return statistics.fmean(finite) if finite else math.nan


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Style:
    color: Any
    linestyle: str
    marker: str


def _family_styles(families: Sequence[Family]) -> dict[str, Style]:
    """Fixed colours per family across every figure; the baseline dashed and near-black."""
    from matplotlib import colormaps

    neural = [f for f in families if f.kind == "neural"]
    cmap = colormaps["viridis"]
    styles = {
        f.name: Style(cmap(0.1 + 0.75 * i / max(1, len(neural) - 1)), "-", "o")
        for i, f in enumerate(neural)
    }
    styles.update({f.name: Style(BASELINE_COLOUR, "--", "s") for f in families if f not in neural})
    return styles


def draw_figures(
    rows: Sequence[Row], analyses: dict[str, Analysis | None], out_dir: Path
) -> dict[str, Path]:
    """Write every figure the data supports as a PNG under `out_dir`; returns name → path."""
    families = _families(rows)
    styles = _family_styles(families)
    primary = analyses.get(PRIMARY)
    drawn = {
        "headline": _draw_headline(rows, primary, families, styles) if primary else None,
        "sim_wer": _draw_sim_wer(rows, analyses, families, styles),
        "joint": _draw_joint(rows, primary) if primary else None,
        "frontier": _draw_frontier(rows, primary, families, styles) if primary else None,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, fig in drawn.items():
        stale = out_dir / f"{name}.png"
        if fig is None:
            stale.unlink(missing_ok=True)  # an old figure must not outlive the data behind it
            continue
        paths[name] = _save(fig, stale)
    return paths


def _new_figure(width: float, height: float, panels: int = 1) -> tuple[Figure, list[Axes]]:
    """A figure bound to the Agg canvas directly: no pyplot, so no global backend to select,
    no figure registry to leak into, nothing to close, safe beside any other matplotlib user."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(1, panels, i + 1) for i in range(panels)]


def _save(fig: Figure, path: Path) -> Path:
    # No Software/date metadata: the same results give byte-identical PNGs.
    fig.savefig(path, format="png", dpi=110, metadata={"Software": None})
    return path


def _data_axis(ax: Axes, hours_per_utt: float | None, budgets: Iterable[float] = ()) -> None:
    """Log x in utterances, with hours on the top axis when rows give the ratio. Ticks sit on
    powers of two (budgets are usually doublings) and read as plain numbers, not 2^k."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=2, numticks=12))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training data (utterances, log scale)")
    ax.grid(True, which="major", alpha=0.3)
    distinct = {b for b in budgets if b > 0}
    if len(distinct) == 1:  # autoscale would put a lone budget on the edge of a decade
        (only,) = distinct
        ax.set_xlim(only / 2, only * 2)
    if hours_per_utt:
        top = ax.secondary_xaxis(
            "top", functions=(lambda u: u * hours_per_utt, lambda h: h / hours_per_utt)
        )
        top.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        top.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        top.xaxis.set_minor_formatter(NullFormatter())
        top.set_xlabel("training data (hours)")


def _display(analysis: Analysis) -> Callable[[float], float]:
    """Fitted quantity → plotted quantity: fits of SIM are fits of 1 − SIM."""
    return (lambda v: 1.0 - v) if analysis.get("transform") == "1 - sim" else (lambda v: v)


def _plot_fitted_family(
    ax: Axes, fam: Analysis, style: Style, label: str, show: Callable[[float], float]
) -> None:
    """Measured points with min–max error bars over seeds, then the fitted curve and band."""
    points = fam.get("points") or []
    if points:
        mid = [show(_num(p.get("loss"))) for p in points]
        ends = [(show(_num(p.get("loss_min"))), show(_num(p.get("loss_max")))) for p in points]
        ax.errorbar(
            [_num(p.get("d")) for p in points],
            mid,
            yerr=_error_bars(mid, [min(e) for e in ends], [max(e) for e in ends]),
            color=style.color,
            marker=style.marker,
            linestyle="none",
            capsize=3,
            zorder=3,
        )
    curve = fam.get("curve") or {}
    fit_ok = bool((fam.get("fit") or {}).get("ok")) and bool(curve.get("d"))
    if fit_ok:
        cd = [_num(v) for v in curve["d"]]
        ax.plot(cd, [show(_num(v)) for v in curve["loss"]], color=style.color, ls=style.linestyle)
        if curve.get("lo") and curve.get("hi"):
            ax.fill_between(
                cd,
                [show(_num(v)) for v in curve["lo"]],
                [show(_num(v)) for v in curve["hi"]],
                color=style.color,
                alpha=0.15,
                linewidth=0,
            )
    # One legend entry per family: marker and line style, or the marker alone without a curve.
    ax.plot(
        [],
        [],
        color=style.color,
        marker=style.marker,
        ls=style.linestyle if fit_ok else "none",
        label=label if fit_ok else f"{label} (no fit)",
    )


def _error_bars(
    mid: Sequence[float], lo: Sequence[float], hi: Sequence[float]
) -> list[list[float]]:
    """Matplotlib's [below, above] bar lengths; a missing end draws no bar rather than failing."""

    def length(a: float, b: float) -> float:
        return max(0.0, b - a) if math.isfinite(a) and math.isfinite(b) else 0.0

    return [
        [length(low, m) for m, low in zip(mid, lo, strict=True)],
        [length(m, high) for m, high in zip(mid, hi, strict=True)],
    ]


def _draw_headline(
    rows: Sequence[Row], analysis: Analysis, families: Sequence[Family], styles: dict[str, Style]
) -> Figure | None:
    """(a) held-out loss vs data, one curve per model size and the baseline."""
    fitted = analysis.get("families") or {}
    if not fitted:
        return None
    fig, (ax,) = _new_figure(8.0, 5.0)
    for family in families:
        if family.name in fitted:
            _plot_fitted_family(
                ax, fitted[family.name], styles[family.name], family.label, _display(analysis)
            )
    _data_axis(ax, _hours_per_utterance(rows), _budgets(rows))
    ax.set_ylabel(METRIC_AXIS[PRIMARY])
    ax.set_title("Held-out loss vs training data: which models plateau, which keep improving")
    ax.legend(title="model · parameters", fontsize="small")
    return fig


def _draw_sim_wer(
    rows: Sequence[Row],
    analyses: dict[str, Analysis | None],
    families: Sequence[Family],
    styles: dict[str, Style],
) -> Figure | None:
    """(b) SIM and WER vs data with per-row CIs averaged over seeds, fits and ceilings."""
    by_metric = {m: _metric_points(rows, m) for m in ("sim", "wer")}
    if not any(by_metric.values()):
        return None
    fig, axes = _new_figure(11.0, 4.6, panels=2)
    ceilings = _ceilings(rows)
    hours_per_utt = _hours_per_utterance(rows)
    for ax, metric in zip(axes, ("sim", "wer"), strict=True):
        analysis = analyses.get(metric) or {}
        fitted = analysis.get("families") or {}
        for family in families:
            points = by_metric[metric].get(family.name)
            if points:
                _plot_metric_points(ax, points, styles[family.name], family.label)
            curve = (fitted.get(family.name) or {}).get("curve") or {}
            if curve.get("d"):
                show = _display(analysis)
                style = styles[family.name]
                ys = [show(_num(v)) for v in curve["loss"]]
                ax.plot(curve["d"], ys, color=style.color, ls=style.linestyle, alpha=0.6)
        for source, style in CEILING_STYLE.items():
            value = ceilings.get(source, {}).get(metric)
            if value is not None:
                ax.axhline(value, lw=1.2, **{**style, "label": f"{style['label']} ({value:.3g})"})
        _data_axis(ax, hours_per_utt, _budgets(rows))
        ax.set_ylabel(METRIC_AXIS[metric])
        ax.set_title(f"{metric.upper()} vs training data")
        ax.legend(fontsize="x-small")
    return fig


def _plot_metric_points(ax: Axes, points: Sequence[MetricPoint], style: Style, label: str) -> None:
    mean = [p.mean for p in points]
    ax.errorbar(
        [p.d for p in points],
        mean,
        yerr=_error_bars(mean, [p.lo for p in points], [p.hi for p in points]),
        color=style.color,
        marker=style.marker,
        ls=style.linestyle,
        capsize=3,
        label=label,
    )


def _joint_loss(joint: Analysis, n: Any, d: Any) -> Any:
    """L(N, D) = E + A / N^α + B / D^β, for scalars or numpy arrays."""
    return (
        _num(joint["E"])
        + _num(joint["A"]) / n ** _num(joint["alpha"])
        + _num(joint["B"]) / d ** _num(joint["beta"])
    )


def _joint_ok(analysis: Analysis) -> Analysis | None:
    joint = analysis.get("joint")
    keys = ("E", "A", "B", "alpha", "beta")
    if joint and joint.get("ok") and all(_finite(joint.get(k)) for k in keys):
        return joint
    return None


def _draw_joint(rows: Sequence[Row], analysis: Analysis) -> Figure | None:
    """(d) iso-loss contours of the joint fit over (D, N), with the trials on top."""
    import numpy as np

    joint = _joint_ok(analysis)
    trials = [
        r
        for r in _usable_rows(rows, PRIMARY)
        if r.get("kind") != "baseline" and _num(r.get("params")) > 0
    ]
    trials = [r for r in trials if _num(r.get("data_utterances")) > 0]
    if joint is None or not trials:
        return None
    n = np.array([_num(r["params"]) for r in trials])
    d = np.array([_num(r["data_utterances"]) for r in trials])
    loss = np.array([_num(r[PRIMARY]) for r in trials])
    # Reach past the grid: the point of the joint fit is to say what lies beyond it.
    grid_n = np.geomspace(n.min() / 2, n.max() * 8, 160)
    grid_d = np.geomspace(d.min() / 2, d.max() * 8, 160)
    dd, nn = np.meshgrid(grid_d, grid_n)
    surface = _joint_loss(joint, nn, dd)
    fig, (ax,) = _new_figure(7.5, 5.5)
    levels = _iso_levels(surface, loss, _num(joint["E"]))
    filled = ax.contourf(dd, nn, surface, levels=levels, cmap="magma_r", alpha=0.85, extend="max")
    lines = ax.contour(dd, nn, surface, levels=levels, colors="k", linewidths=0.5)
    ax.clabel(lines, fmt="%.3g", fontsize=7)
    ax.scatter(
        d,
        n,
        c=loss,
        cmap="magma_r",
        norm=filled.norm,
        edgecolors="white",
        s=55,
        zorder=3,
        label="trials (colour = measured loss)",
    )
    optimal = (analysis.get("frontier") or {}).get("optimal")
    if optimal and optimal.get("d") and optimal.get("n"):
        ax.plot(optimal["d"], optimal["n"], "w--", lw=1.5, label="compute-optimal N*, D*")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(grid_d[0], grid_d[-1])
    ax.set_ylim(grid_n[0], grid_n[-1])
    ax.set_xlabel("training data D (utterances, log scale)")
    ax.set_ylabel("parameters N (log scale)")
    ax.set_title("Joint fit: iso-loss contours of L(N, D)")
    fig.colorbar(filled, ax=ax, label="predicted held-out loss")
    ax.legend(fontsize="small", loc="upper right")
    return fig


def _iso_levels(surface: Any, measured: Any, floor: float) -> Any:
    """Contour levels evenly spaced in log(L − E): a power law's reducible loss shrinks by a
    constant factor per step, so the contours fall evenly across the map. They stop a little
    above the worst measured loss; beyond it the map is one colour."""
    import numpy as np

    low = max(float(surface.min()) - floor, 1e-9)
    high = max(float(measured.max()) - floor, low) * 1.2
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low * 1.01:
        return np.linspace(float(surface.min()), float(surface.max()), 13)
    return floor + np.geomspace(low, high, 13)


def _draw_frontier(
    rows: Sequence[Row], analysis: Analysis, families: Sequence[Family], styles: dict[str, Style]
) -> Figure | None:
    """(d) loss vs training compute: neural trials, their frontier and the analytic N*(C)."""
    trials = [
        r
        for r in _usable_rows(rows, PRIMARY)
        if r.get("kind") != "baseline" and _num(r.get("train_flops")) > 0
    ]
    if not trials:
        return None
    frontier = analysis.get("frontier") or {}
    optimal = frontier.get("optimal") or {}
    has_optimal = bool(optimal.get("flops") and optimal.get("n"))
    fig, axes = _new_figure(11.0 if has_optimal else 7.0, 4.8, panels=2 if has_optimal else 1)
    ax = axes[0]
    for family in families:
        mine = [r for r in trials if _family_name(r) == family.name]
        if mine:
            style = styles[family.name]
            flops = [_num(r["train_flops"]) for r in mine]
            ax.scatter(
                flops, [_num(r[PRIMARY]) for r in mine], color=style.color, label=family.label
            )
    line = sorted((_num(p.get("flops")), _num(p.get("loss"))) for p in frontier.get("points") or [])
    if line:
        ax.plot(*zip(*line, strict=True), "k-", lw=1.2, label="frontier (best loss per compute)")
    if has_optimal and optimal.get("loss"):
        ax.plot(optimal["flops"], optimal["loss"], "k--", lw=1, label="joint fit at N*(C), D*(C)")
    ax.set_xscale("log")
    ax.set_xlabel("training compute C (FLOPs, log scale)")
    ax.set_ylabel(METRIC_AXIS[PRIMARY])
    ax.set_title("Compute frontier")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small")
    if has_optimal:
        _plot_optimal_size(axes[1], trials, optimal, families, styles)
    return fig


def _plot_optimal_size(
    ax: Axes,
    trials: Sequence[Row],
    optimal: Analysis,
    families: Sequence[Family],
    styles: dict[str, Style],
) -> None:
    ax.plot(optimal["flops"], optimal["n"], "k-", label="compute-optimal N*(C)")
    for family in families:
        mine = [r for r in trials if _family_name(r) == family.name]
        if mine:
            ax.scatter(
                [_num(r["train_flops"]) for r in mine],
                [_num(r.get("params")) for r in mine],
                color=styles[family.name].color,
                label=family.label,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute C (FLOPs, log scale)")
    ax.set_ylabel("parameters N (log scale)")
    ax.set_title("Compute-optimal model size")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small")


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1180px;
       padding: 0 1em; color: #1b1b1b; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
.meta { color: #666; }
.verdict { background: #f3f7fb; border-left: 4px solid #2a6db0; padding: 0.6em 1.2em; }
.verdict li { margin: 0.3em 0; }
.warn { background: #fff6e5; border-left: 4px solid #d08a00; padding: 0.5em 1em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.55em; text-align: right; }
th { background: #f4f4f4; }
td.text, th.text { text-align: left; }
tr.failed td { background: #fde8e8; }
tr.diverged td { background: #fff3dc; }
.ok { color: #1a7f37; font-weight: bold; }
.bad { color: #c62828; font-weight: bold; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
code { background: #f4f4f4; padding: 0 0.2em; }
details { margin: 1em 0; }
summary { cursor: pointer; font-weight: bold; }
"""

Cell = str | tuple[str, str]  # plain text, or (text, css class)


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 4) -> str:
    """Numbers for tables: a dash for missing/NaN, integers with separators, else `digits`
    significant figures."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    x = _num(value)
    if not math.isfinite(x):
        return "—"
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:.{digits}g}"


def _fmt_interval(interval: Any, digits: int = 4) -> str:
    if not interval or len(interval) != 2:
        return "—"
    return f"[{_fmt(interval[0], digits)}, {_fmt(interval[1], digits)}]"


def _fmt_with_interval(value: Any, interval: Any, digits: int = 4) -> str:
    shown = _fmt(value, digits)
    return shown if shown == "—" or not interval else f"{shown} {_fmt_interval(interval, digits)}"


def _pct(value: Any) -> str:
    x = _num(value)
    return f"{100 * x:.2g} %" if math.isfinite(x) else "—"


def _pct_with_interval(value: Any, interval: Any) -> str:
    shown = _pct(value)
    if shown == "—" or not interval or not all(_finite(v) for v in interval):
        return shown
    return f"{shown} [{_pct(interval[0])}, {_pct(interval[1])}]"


def _human_count(n: Any) -> str:
    """523000 → '523 k', 2.1e6 → '2.1 M': legend-sized parameter counts."""
    x = _num(n)
    if not math.isfinite(x):
        return "?"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g}"


def _table(
    headers: Sequence[str],
    body: Sequence[Sequence[Cell]],
    *,
    row_classes: Sequence[str] | None = None,
    text_columns: int = 1,
) -> str:
    """An HTML table: the first `text_columns` columns left-aligned, the rest numeric."""

    def cell(tag: str, value: Cell, index: int) -> str:
        text, cls = value if isinstance(value, tuple) else (value, "")
        classes = " ".join(c for c in ("text" if index < text_columns else "", cls) if c)
        attr = f' class="{classes}"' if classes else ""
        return f"<{tag}{attr}>{_esc(text)}</{tag}>"

    head = "".join(cell("th", h, i) for i, h in enumerate(headers))
    lines = []
    for k, row in enumerate(body):
        cls = (row_classes or [""] * len(body))[k]
        attr = f' class="{cls}"' if cls else ""
        lines.append(f"<tr{attr}>" + "".join(cell("td", c, i) for i, c in enumerate(row)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _figure(path: Path | None, alt: str, caption: str) -> str:
    """A PNG inlined as a data URI, so the page needs no file beside it."""
    if path is None:
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(alt)}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _note(text: str, cls: str = "warn") -> str:
    return f'<p class="{cls}">{_esc(text)}</p>'


def render_html(
    sweep: str,
    rows: Sequence[Row],
    analyses: dict[str, Analysis | None],
    figures: dict[str, Path],
    *,
    bootstrap: int,
    seed: int,
) -> str:
    """The whole page: verdict and status first, then figures, fit tables, the extrapolation
    check and every trial."""
    primary = analyses.get(PRIMARY)
    sections = [
        f"<h1>Scaling report — {_esc(sweep)}</h1>",
        f'<p class="meta">{len(rows)} trials in results.jsonl · power laws fitted with a Huber '
        f"loss on log residuals · intervals from {bootstrap} bootstrap resamples (seed {seed})"
        " · primary metric: held-out loss</p>",
        _verdict_section(primary, rows),
        _seed_figure_section(rows),
        _status_section(rows),
    ]
    if primary is not None:
        sections += [
            _headline_section(primary, figures),
            _sim_wer_section(figures),
            _fits_section(analyses),
            _joint_section(primary, figures),
            _extrapolation_section(primary),
        ]
    sections.append(_trials_section(rows))
    body = "\n".join(s for s in sections if s)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Scaling report — {_esc(sweep)}</title><style>{CSS}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def _verdict_section(primary: Analysis | None, rows: Sequence[Row]) -> str:
    if primary is not None:
        verdict = primary.get("verdict") or []
    elif rows:
        verdict = ["No trial finished with a held-out loss, so there is nothing to fit yet."]
    else:
        verdict = ["The sweep has recorded no trial yet: nothing to report."]
    items = "".join(f"<li>{_esc(v)}</li>" for v in verdict)
    return f'<section id="verdict"><h2>Verdict</h2><ul class="verdict">{items}</ul></section>'


def _seed_figure_section(rows: Sequence[Row]) -> str:
    """The classic claim checked on the measured points, pass or fail, with its numbers."""
    head, *checks = describe_seed_figure(list(rows))
    items = "".join(f"<li>{_esc(line.strip())}</li>" for line in checks)
    return (
        f'<section id="seed-figure"><h2>The classic figure, checked</h2><p>{_esc(head)}</p>'
        f"<ul>{items}</ul></section>"
    )


def _why_not_done(row: Row) -> str:
    divergence = row.get("divergence")
    if isinstance(divergence, dict):
        last = divergence.get("last_finite_train_loss")
        last_text = f"{last:.4g}" if _finite(last) else "none"
        return f"{divergence.get('reason')}; last finite train_loss {last_text}"
    return str(row.get("error") or "no error recorded")


def _status_section(rows: Sequence[Row]) -> str:
    """Counts by status, then every trial that did not finish, with its error."""
    if not rows:
        return (
            '<section id="status"><h2>Trials</h2>'
            + _note("results.jsonl has no rows yet: the sweep has not recorded any trial.")
            + "</section>"
        )
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[str(row.get("status"))] += 1
    known = ("done", "diverged", "failed")
    order = [*known, *sorted(set(counts) - set(known))]
    summary = ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s) or s == "done")
    parts = [f'<section id="status"><h2>Trials</h2><p>{len(rows)} trials: {_esc(summary)}.</p>']
    if not counts.get("done"):
        parts.append(_note("No trial finished: this report can only list what went wrong."))
    broken = [r for r in rows if r.get("status") != "done"]
    if broken:
        items = "".join(
            f"<li><code>{_esc(r.get('trial'))}</code> — {_esc(r.get('status'))}: "
            f"{_esc(_why_not_done(r))}</li>"
            for r in broken
        )
        parts.append(f"<p>Not finished (excluded from every fit):</p><ul>{items}</ul>")
    missing = [
        f"{r.get('trial')} (no {m})"
        for r in rows
        if r.get("status") == "done"
        for m in METRICS
        if not _finite(r.get(m))
    ]
    if missing:
        parts.append(
            _note("Done but missing a metric (excluded from that fit): " + "; ".join(missing))
        )
    parts.append("</section>")
    return "".join(parts)


def _headline_section(primary: Analysis, figures: dict[str, Path]) -> str:
    no_curve = [
        f"{name}: {(fam.get('fit') or {}).get('message') or 'no reason given'}"
        for name, fam in _ordered_families(primary)
        if not (fam.get("fit") or {}).get("ok")
    ]
    return (
        '<section id="headline"><h2>Held-out loss vs data</h2>'
        + _figure(
            figures.get("headline"),
            "held-out loss vs training data per model size",
            "Points: seed mean, bars: min–max over seeds. Lines: fitted L(D) = E + B / D^β per "
            "family, shaded: 95 % prediction band. Dashed grey: the traditional baseline.",
        )
        + (_note("No fitted curve for " + "; ".join(no_curve)) if no_curve else "")
        + "</section>"
    )


def _sim_wer_section(figures: dict[str, Path]) -> str:
    if "sim_wer" not in figures:
        return _note("No trial has SIM or WER: the checkpoints were not evaluated.")
    return (
        '<section id="sim-wer"><h2>SIM and WER vs data</h2>'
        + _figure(
            figures["sim_wer"],
            "speaker similarity and word error rate vs training data",
            "Points: seed mean; bars: the evaluation's confidence interval averaged over seeds. "
            "Thin lines: fitted curves. Horizontal lines: ground-truth and vocoder ceilings.",
        )
        + "</section>"
    )


def _fits_section(analyses: dict[str, Analysis | None]) -> str:
    primary = analyses[PRIMARY]
    parts = [
        '<section id="fits"><h2>Fits</h2>',
        "<p>Per family: L(D) = E + B / D<sup>β</sup>, 95 % bootstrap intervals in brackets. "
        "Gain: the relative fall in loss from doubling the data — measured over the last "
        "doubling in the grid, fitted for the next doubling beyond it. A family has plateaued "
        "when the fitted gain's lower bound is at most the minimum gain that counts.</p>",
        _family_table(primary),
        _joint_table(primary),
    ]
    for metric in ("sim", "wer"):
        analysis = analyses.get(metric)
        if analysis is None:
            continue
        what = "1 − SIM" if analysis.get("transform") == "1 - sim" else metric.upper()
        verdict = "".join(f"<li>{_esc(v)}</li>" for v in analysis.get("verdict") or [])
        parts.append(
            f"<details><summary>{_esc(metric.upper())} fits (fitted quantity: {_esc(what)}, "
            f"lower is better)</summary><ul>{verdict}</ul>{_family_table(analysis)}"
            f"{_joint_table(analysis)}</details>"
        )
    parts.append("</section>")
    return "".join(parts)


def _family_table(analysis: Analysis) -> str:
    headers = [
        "family",
        "params",
        "budgets",
        "E",
        "B",
        "β",
        "gain, last doubling",
        "gain, next doubling (fit)",
        "verdict",
        "note",
    ]
    body = []
    for name, fam in _ordered_families(analysis):
        fit = fam.get("fit") or {}
        intervals = fit.get("intervals") or {}
        plateau = fam.get("plateau") or {}
        ok = bool(fit.get("ok"))
        body.append(
            [
                name,
                _human_count(fam.get("params")),
                str(len(fam.get("points") or [])),
                _fmt_with_interval(fit.get("E"), intervals.get("E")) if ok else "—",
                _fmt_with_interval(fit.get("B"), intervals.get("B")) if ok else "—",
                _fmt_with_interval(fit.get("beta"), intervals.get("beta")) if ok else "—",
                _pct(plateau.get("measured_gain")),
                _pct_with_interval(plateau.get("fitted_gain_2x"), plateau.get("fitted_gain_2x_ci")),
                _plateau_verdict(plateau),
                (_family_note(fit, plateau), "text"),
            ]
        )
    if not body:
        return _note("No family has a finished trial.")
    return f'<div id="fit-table">{_table(headers, body)}</div>'


def _family_note(fit: Analysis, plateau: Analysis) -> str:
    """The fit's caveat, or why there is no curve and how the plateau call was made then (the
    plateau note repeats the fit's message, so it replaces it)."""
    if fit.get("ok"):
        return str(fit.get("message") or "")
    return str(plateau.get("note") or f"no fit: {fit.get('message') or 'no reason given'}")


def _plateau_verdict(plateau: Analysis) -> Cell:
    if not plateau or plateau.get("plateaued") is None:
        return "—"
    basis = "fit" if plateau.get("basis") == "fit" else "measured"
    if basis == "measured" and not _finite(plateau.get("measured_gain")):
        return "cannot tell"  # one budget: nothing measured, nothing fitted
    if plateau["plateaued"]:
        return (f"plateaued ({basis})", "bad")
    return (f"still improving ({basis})", "ok")


def _ordered_families(analysis: Analysis) -> list[tuple[str, Analysis]]:
    def key(item: tuple[str, Analysis]) -> tuple[bool, float, str]:
        params = _num(item[1].get("params"))
        return (item[1].get("kind") == "baseline", params if math.isfinite(params) else 0, item[0])

    return sorted((analysis.get("families") or {}).items(), key=key)


def _joint_table(analysis: Analysis) -> str:
    joint = analysis.get("joint")
    if not joint:
        return _note(
            "No joint fit L(N, D): it needs at least two neural model sizes and two budgets."
        )
    if not joint.get("ok"):
        return _note(f"Joint fit L(N, D) failed: {joint.get('message') or 'no reason given'}")
    intervals = joint.get("intervals") or {}
    names = {"E": "E", "A": "A", "alpha": "α", "B": "B", "beta": "β"}
    body = [[names[k], _fmt(joint.get(k)), _fmt_interval(intervals.get(k))] for k in names]
    sizes = ", ".join(str(s) for s in joint.get("sizes") or [])
    caveat = f" Caveat: {_esc(joint['message'])}." if joint.get("message") else ""
    intro = (
        f"<p>Joint fit L(N, D) = E + A / N<sup>α</sup> + B / D<sup>β</sup> over "
        f"{_esc(_fmt(joint.get('n_points')))} trials (sizes: {_esc(sizes)}).{caveat}</p>"
    )
    table = _table(["parameter", "value", "95 % interval"], body)
    return f'<div id="joint-table">{intro}{table}{_forecast(joint.get("forecast"))}</div>'


def _forecast(forecast: Analysis | None) -> str:
    if not forecast:
        return ""
    d_max = _fmt(forecast.get("d_max"))
    now = f"largest size ({_human_count(forecast.get('n_max'))}) at {d_max} utterances (now)"
    body = [
        [now, _fmt(forecast.get("loss_now")), "—"],
        _forecast_row(
            f"next size ({_human_count(forecast.get('n_next'))} params) at {d_max} utterances",
            forecast.get("loss_next_size"),
        ),
        _forecast_row("largest size with twice the data", forecast.get("loss_2x_data")),
    ]
    if forecast.get("next_size_minus_2x_data"):
        body.append(
            _forecast_row(
                "difference: next size − twice the data (confidence interval)",
                forecast["next_size_minus_2x_data"],
            )
        )
    return "<p>Forecast from the joint fit (95 % prediction intervals):</p>" + _table(
        ["scenario", "predicted loss", "interval"], body
    )


def _forecast_row(label: str, triple: Any) -> list[Cell]:
    mid, lo, hi = (list(triple) + [None] * 3)[:3] if triple else (None, None, None)
    return [label, _fmt(mid), _fmt_interval([lo, hi])]


def _joint_section(primary: Analysis, figures: dict[str, Path]) -> str:
    parts = ['<section id="joint"><h2>Joint fit and compute frontier</h2>']
    if "joint" in figures:
        parts.append(
            _figure(
                figures["joint"],
                "iso-loss contours of the joint fit over parameters and data",
                "Contours: the joint fit's predicted loss; dots: finished neural trials coloured "
                "by their measured loss (a dot that matches its background fits well).",
            )
        )
    else:
        parts.append(_note("No iso-loss map: there is no successful joint fit."))
    if "frontier" in figures:
        parts.append(
            _figure(
                figures["frontier"],
                "held-out loss vs training compute",
                "Left: every finished neural trial by training FLOPs, the frontier of the best "
                "loss per compute. Right (when the joint fit allows): the compute-optimal model "
                "size N*(C).",
            )
        )
    else:
        parts.append(
            _note("No compute frontier: no finished neural trial with its training FLOPs recorded.")
        )
    parts.append("</section>")
    return "".join(parts)


def _extrapolation_section(primary: Analysis) -> str:
    check = primary.get("extrapolation") or {}
    header = '<section id="extrapolation"><h2>Extrapolation check</h2>'
    body = [
        _extrapolation_row("per family", size, entry or {})
        for size, entry in (check.get("families") or {}).items()
    ]
    body += [
        _extrapolation_row("joint", size, entry or {})
        for size, entry in (check.get("joint") or {}).items()
    ]
    if not body:
        return header + _note("No fit to check: no family has a finished trial.") + "</section>"
    intro = (
        "<p>Each law refitted without the largest budget "
        f"(d = {_esc(_fmt(check.get('dropped_d')))} utterances), then asked to predict it: "
        "✓ when the measured loss falls inside the 95 % prediction interval.</p>"
    )
    headers = ["fit", "family", "predicted", "interval", "actual", "error", "covered", "note"]
    return header + intro + _table(headers, body, text_columns=2) + "</section>"


def _extrapolation_row(fit_name: str, size: str, entry: Analysis) -> list[Cell]:
    covered = entry.get("covered")
    mark: Cell = "—" if covered is None else (("✓", "ok") if covered else ("✗", "bad"))
    error = _num(entry.get("relative_error"))
    if entry.get("ok", True):
        note = entry.get("message") or ""  # e.g. why an interval has no width
    else:
        note = f"no refit: {entry.get('message') or 'no reason given'}"
    return [
        fit_name,
        size,
        _fmt(entry.get("predicted")),
        _fmt_interval(entry.get("interval")),
        _fmt(entry.get("actual")),
        f"{100 * error:+.1f} %" if math.isfinite(error) else "—",
        mark,
        (note, "text"),
    ]


def _trials_section(rows: Sequence[Row]) -> str:
    if not rows:
        return ""
    order = {f.name: i for i, f in enumerate(_families(rows))}
    ordered = sorted(
        rows,
        key=lambda r: (
            order.get(_family_name(r), 0),
            _num(r.get("data_utterances")) if _finite(r.get("data_utterances")) else math.inf,
            str(r.get("seed")),
        ),
    )
    headers = [
        "trial",
        "status",
        "params",
        "utterances",
        "hours",
        "steps",
        "val_loss",
        "SIM [CI]",
        "WER [CI]",
        "train s",
        "eval s",
    ]
    body = [
        [
            str(r.get("trial")),
            str(r.get("status")),
            _fmt(r.get("params")),
            _fmt(r.get("data_utterances")),
            _fmt(r.get("data_hours"), 3),
            _fmt(r.get("steps")),
            _fmt(r.get("val_loss")),
            _fmt_with_interval(r.get("sim"), r.get("sim_ci"), 3),
            _fmt_with_interval(r.get("wer"), r.get("wer_ci"), 3),
            _fmt(r.get("train_seconds"), 3),
            _fmt(r.get("eval_seconds"), 3),
        ]
        for r in ordered
    ]
    classes = [str(r.get("status")) if r.get("status") != "done" else "" for r in ordered]
    return (
        '<section id="all-trials"><h2>All trials</h2>'
        + _table(headers, body, row_classes=classes, text_columns=2)
        + "</section>"
    )


# ---------------------------------------------------------------------------------------------
# fits.json
# ---------------------------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    """Strict JSON: numpy scalars and arrays become Python, NaN/inf become null."""
    if hasattr(value, "tolist"):  # numpy scalar or array
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value

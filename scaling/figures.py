"""The report's figures as PNGs, drawn with matplotlib (imported lazily).

Loss vs data, SIM and WER vs data, perceptual quality (DNSMOS, UTMOS) vs data, the joint fit's
iso-loss map, and the compute frontier.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaling import report_rows
from scaling.formatting import as_float
from scaling.points import measured_rows
from scaling.report_rows import PRIMARY, Analysis, Family, MetricPoint
from store.records import ResultRow

if TYPE_CHECKING:  # matplotlib is imported lazily: `voicescale --help` should not pay for it
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["METRIC_AXIS", "draw_figures"]

METRIC_AXIS = {
    "val_loss": "held-out loss (lower is better)",
    "sim": "SIM, speaker similarity (higher is better)",
    "wer": "WER, word error rate (lower is better)",
    "dnsmos": "DNSMOS OVRL, perceptual quality 1-5 (higher is better)",
    "utmos": "UTMOS, perceptual quality 1-5 (higher is better)",
}
BASELINE_COLOUR = "0.2"
CEILING_STYLE = {  # reference lines: what a perfect TTS and a perfect acoustic model would score
    "ground_truth": {"label": "ground truth", "color": "tab:green", "linestyle": ":"},
    "vocoder": {"label": "vocoded ground truth", "color": "tab:purple", "linestyle": "-."},
}


@dataclass(frozen=True)
class Style:
    """How one family is drawn in every figure."""

    color: Any
    linestyle: str
    marker: str


def _family_styles(families: Sequence[Family]) -> dict[str, Style]:
    """Fixed colours per family across every figure; the traditional baselines near-black,
    each with its own line and marker (ridge dashed squares, unit selection dotted triangles)."""
    from matplotlib import colormaps

    neural = [f for f in families if f.kind == "neural"]
    cmap = colormaps["viridis"]
    styles = {
        f.name: Style(cmap(0.1 + 0.75 * i / max(1, len(neural) - 1)), "-", "o")
        for i, f in enumerate(neural)
    }
    traditional = [f for f in families if f not in neural]
    for i, f in enumerate(traditional):
        line, marker = _BASELINE_LINES[i % len(_BASELINE_LINES)]
        styles[f.name] = Style(BASELINE_COLOUR, line, marker)
    return styles


_BASELINE_LINES = (("--", "s"), (":", "^"), ("-.", "D"))


def draw_figures(
    rows: Sequence[ResultRow], analyses: dict[str, Analysis | None], out_dir: Path
) -> dict[str, Path]:
    """Write every figure the data supports as a PNG under `out_dir`; returns name → path."""
    families = report_rows.families(rows)
    styles = _family_styles(families)
    primary = analyses.get(PRIMARY)
    drawn = {
        "headline": _draw_headline(rows, primary, families, styles) if primary else None,
        "sim_wer": _draw_sim_wer(rows, analyses, families, styles),
        "quality": _draw_quality(rows, families, styles),
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
        mid = [show(as_float(p.get("loss"))) for p in points]
        ends = [
            (show(as_float(p.get("loss_min"))), show(as_float(p.get("loss_max")))) for p in points
        ]
        ax.errorbar(
            [as_float(p.get("d")) for p in points],
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
        cd = [as_float(v) for v in curve["d"]]
        ax.plot(
            cd, [show(as_float(v)) for v in curve["loss"]], color=style.color, ls=style.linestyle
        )
        if curve.get("lo") and curve.get("hi"):
            ax.fill_between(
                cd,
                [show(as_float(v)) for v in curve["lo"]],
                [show(as_float(v)) for v in curve["hi"]],
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
    rows: Sequence[ResultRow],
    analysis: Analysis,
    families: Sequence[Family],
    styles: dict[str, Style],
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
    _data_axis(ax, report_rows.hours_per_utterance(rows), report_rows.budgets(rows))
    ax.set_ylabel(METRIC_AXIS[PRIMARY])
    ax.set_title("Held-out loss vs training data: which models plateau, which keep improving")
    ax.legend(title="model · parameters", fontsize="small")
    return fig


def _draw_sim_wer(
    rows: Sequence[ResultRow],
    analyses: dict[str, Analysis | None],
    families: Sequence[Family],
    styles: dict[str, Style],
) -> Figure | None:
    """(b) SIM and WER vs data with per-row CIs averaged over seeds, fits and ceilings."""
    by_metric = {m: report_rows.metric_points(rows, m) for m in ("sim", "wer")}
    if not any(by_metric.values()):
        return None
    fig, axes = _new_figure(11.0, 4.6, panels=2)
    for ax, (metric, points) in zip(axes, by_metric.items(), strict=True):
        _metric_panel(ax, rows, metric, points, analyses.get(metric) or {}, families, styles)
    return fig


def _draw_quality(
    rows: Sequence[ResultRow], families: Sequence[Family], styles: dict[str, Style]
) -> Figure | None:
    """(c) Perceptual quality (DNSMOS, and UTMOS where judged) vs data: per-row CIs averaged
    over seeds and the ceilings, no fitted curve (a MOS is not fitted)."""
    by_metric = {m: report_rows.metric_points(rows, m) for m in report_rows.QUALITY}
    by_metric = {m: points for m, points in by_metric.items() if points}
    if not by_metric:
        return None
    fig, axes = _new_figure(5.5 * len(by_metric) + 0.5, 4.6, panels=len(by_metric))
    for ax, (metric, points) in zip(axes, by_metric.items(), strict=True):
        _metric_panel(ax, rows, metric, points, {}, families, styles)
    return fig


def _metric_panel(
    ax: Axes,
    rows: Sequence[ResultRow],
    metric: str,
    points: dict[str, list[MetricPoint]],
    analysis: Analysis,
    families: Sequence[Family],
    styles: dict[str, Style],
) -> None:
    """One evaluation metric vs data: each family's points, its fitted curve when `analysis`
    has one, and the ground-truth and vocoder ceilings."""
    fitted = analysis.get("families") or {}
    for family in families:
        if points.get(family.name):
            _plot_metric_points(ax, points[family.name], styles[family.name], family.label)
        curve = (fitted.get(family.name) or {}).get("curve") or {}
        if curve.get("d"):
            show = _display(analysis)
            style = styles[family.name]
            ys = [show(as_float(v)) for v in curve["loss"]]
            ax.plot(curve["d"], ys, color=style.color, ls=style.linestyle, alpha=0.6)
    ceilings = report_rows.ceilings(rows)
    for source, style in CEILING_STYLE.items():
        value = ceilings.get(source, {}).get(metric)
        if value is not None:
            ax.axhline(value, lw=1.2, **{**style, "label": f"{style['label']} ({value:.3g})"})
    _data_axis(ax, report_rows.hours_per_utterance(rows), report_rows.budgets(rows))
    ax.set_ylabel(METRIC_AXIS[metric])
    ax.set_title(f"{metric.upper()} vs training data")
    ax.legend(fontsize="x-small")


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


def _joint_surface(analysis: Analysis) -> Analysis | None:
    """The joint fit's predicted surface (`joint.surface` in fits.json), or None."""
    joint = analysis.get("joint")
    surface = (joint or {}).get("surface")
    if joint and joint.get("ok") and surface and surface.get("loss"):
        return surface
    return None


def _draw_joint(rows: Sequence[ResultRow], analysis: Analysis) -> Figure | None:
    """(d) iso-loss contours of the joint fit over (D, N), with the trials on top."""
    import numpy as np

    grid = _joint_surface(analysis)
    trials = [
        r for r in measured_rows(rows, PRIMARY) if r.kind != "baseline" and as_float(r.params) > 0
    ]
    trials = [r for r in trials if as_float(r.data_utterances) > 0]
    if grid is None or not trials:
        return None
    n = np.array([as_float(r.params) for r in trials])
    d = np.array([as_float(r.data_utterances) for r in trials])
    loss = np.array([as_float(r.metric(PRIMARY)) for r in trials])
    grid_d, grid_n = np.asarray(grid["d"], float), np.asarray(grid["n"], float)
    dd, nn = np.meshgrid(grid_d, grid_n)
    surface = np.asarray(grid["loss"], float)
    fig, (ax,) = _new_figure(7.5, 5.5)
    levels = _iso_levels(surface, loss)
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


def _iso_levels(surface: Any, measured: Any) -> Any:
    """Contour levels evenly spaced in log L (no floor is subtracted: the fit may not
    identify one). They stop a little above the worst measured loss; beyond it the map is one
    colour."""
    import numpy as np

    low = float(surface.min())
    high = max(float(measured.max()), low) * 1.2
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 or high <= low * 1.01:
        return np.linspace(float(surface.min()), float(surface.max()), 13)
    return np.geomspace(low, high, 13)


def _draw_frontier(
    rows: Sequence[ResultRow],
    analysis: Analysis,
    families: Sequence[Family],
    styles: dict[str, Style],
) -> Figure | None:
    """(d) loss vs training compute: neural trials, their frontier and the analytic N*(C)."""
    trials = [
        r
        for r in measured_rows(rows, PRIMARY)
        if r.kind != "baseline" and as_float(r.train_flops) > 0
    ]
    if not trials:
        return None
    frontier = analysis.get("frontier") or {}
    optimal = frontier.get("optimal") or {}
    has_optimal = bool(optimal.get("flops") and optimal.get("n"))
    fig, axes = _new_figure(11.0 if has_optimal else 7.0, 4.8, panels=2 if has_optimal else 1)
    ax = axes[0]
    for family in families:
        mine = [r for r in trials if r.family == family.name]
        if mine:
            style = styles[family.name]
            flops = [as_float(r.train_flops) for r in mine]
            ax.scatter(
                flops,
                [as_float(r.metric(PRIMARY)) for r in mine],
                color=style.color,
                label=family.label,
            )
    line = sorted(
        (as_float(p.get("flops")), as_float(p.get("loss"))) for p in frontier.get("points") or []
    )
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
    trials: Sequence[ResultRow],
    optimal: Analysis,
    families: Sequence[Family],
    styles: dict[str, Style],
) -> None:
    ax.plot(optimal["flops"], optimal["n"], "k-", label="compute-optimal N*(C)")
    for family in families:
        mine = [r for r in trials if r.family == family.name]
        if mine:
            ax.scatter(
                [as_float(r.train_flops) for r in mine],
                [as_float(r.params) for r in mine],
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

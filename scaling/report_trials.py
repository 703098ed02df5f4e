"""The report's HTML sections about the trials: verdict, seed figure, status, all trials.

Status names every trial that did not finish, with its error.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import get_args

from scaling import report_rows
from scaling.formatting import as_float, finite, fmt_number, fmt_with_interval
from scaling.report_html import Cell, Link, esc, note, table
from scaling.report_rows import METRICS, Analysis
from scaling.seed_figure import describe_seed_figure
from scaling.timing import sweep_timing
from store.records import ResultRow, Status

__all__ = [
    "mlflow_run_url",
    "seed_figure_section",
    "status_section",
    "time_section",
    "trials_section",
    "verdict_section",
]


def verdict_section(primary: Analysis | None, rows: Sequence[ResultRow]) -> str:
    """The primary metric's verdict sentences, or why there are none."""
    if primary is not None:
        verdict = primary.get("verdict") or []
    elif rows:
        verdict = ["No trial finished with a held-out loss, so there is nothing to fit yet."]
    else:
        verdict = ["The sweep has recorded no trial yet: nothing to report."]
    items = "".join(f"<li>{esc(v)}</li>" for v in verdict)
    return f'<section id="verdict"><h2>Verdict</h2><ul class="verdict">{items}</ul></section>'


def seed_figure_section(rows: Sequence[ResultRow]) -> str:
    """The classic claim checked on the measured points, pass or fail, with its numbers."""
    head, *checks = describe_seed_figure(rows)
    items = "".join(f"<li>{esc(line.strip())}</li>" for line in checks)
    return (
        f'<section id="seed-figure"><h2>The classic figure, checked</h2><p>{esc(head)}</p>'
        f"<ul>{items}</ul></section>"
    )


def _why_not_done(row: ResultRow) -> str:
    divergence = row.divergence
    if divergence is not None:
        last = divergence.last_finite_train_loss
        last_text = f"{last:.4g}" if finite(last) else "none"
        return f"{divergence.reason}; last finite train_loss {last_text}"
    return str(row.error or "no error recorded")


def status_section(rows: Sequence[ResultRow]) -> str:
    """Counts by status, then every trial that did not finish, with its error."""
    if not rows:
        return (
            '<section id="status"><h2>Trials</h2>'
            + note("results.jsonl has no rows yet: the sweep has not recorded any trial.")
            + "</section>"
        )
    counts = Counter(row.status for row in rows)
    summary = ", ".join(f"{counts[s]} {s}" for s in get_args(Status) if counts[s] or s == "done")
    parts = [f'<section id="status"><h2>Trials</h2><p>{len(rows)} trials: {esc(summary)}.</p>']
    if not counts["done"]:
        parts.append(note("No trial finished: this report can only list what went wrong."))
    broken = [r for r in rows if r.status != "done"]
    if broken:
        items = "".join(
            f"<li><code>{esc(r.trial)}</code> — {esc(r.status)}: {esc(_why_not_done(r))}</li>"
            for r in broken
        )
        parts.append(f"<p>Not finished (excluded from every fit):</p><ul>{items}</ul>")
    missing = [
        f"{r.trial} (no {m})"
        for r in rows
        if r.status == "done"
        for m in METRICS
        if not finite(r.metric(m))
    ]
    if missing:
        parts.append(
            note("Done but missing a metric (excluded from that fit): " + "; ".join(missing))
        )
    parts.append("</section>")
    return "".join(parts)


TRIAL_COLUMNS = (
    "trial",
    "status",
    "params",
    "utterances",
    "hours",
    "steps",
    "val_loss",
    "SIM [CI]",
    "WER [CI]",
    "DNSMOS [CI]",
    "train s",
    "eval s",
    "other s",
)


def mlflow_run_url(ui: str, run_id: str) -> str:
    """The MLflow UI's page of one run (its direct route, no experiment id needed)."""
    return f"{ui.rstrip('/')}/#/runs/{run_id}"


def trials_section(rows: Sequence[ResultRow], mlflow_ui: str | None = None) -> str:
    """Every row, failed and diverged ones highlighted, by family, budget and seed; with
    `mlflow_ui`, each trial's name links to its MLflow run there."""
    if not rows:
        return ""

    def name(r: ResultRow) -> Cell:
        if mlflow_ui and r.mlflow_run_id:
            return Link(str(r.trial), mlflow_run_url(mlflow_ui, r.mlflow_run_id))
        return str(r.trial)

    order = {f.name: i for i, f in enumerate(report_rows.families(rows))}
    ordered = sorted(
        rows,
        key=lambda r: (
            order.get(r.family, 0),
            as_float(r.data_utterances) if finite(r.data_utterances) else math.inf,
            str(r.seed),
        ),
    )
    other = {t.trial: t.other for t in sweep_timing(rows).trials}
    body: list[list[Cell]] = [
        [
            name(r),
            str(r.status),
            fmt_number(r.params),
            fmt_number(r.data_utterances),
            fmt_number(r.data_hours, 3),
            fmt_number(r.steps),
            fmt_number(r.val_loss),
            fmt_with_interval(r.sim, r.sim_ci, 3),
            fmt_with_interval(r.wer, r.wer_ci, 3),
            fmt_with_interval(r.dnsmos, r.dnsmos_ci, 3),
            fmt_number(r.train_seconds, 3),
            fmt_number(r.eval_seconds, 3),
            fmt_number(other.get(r.trial), 3),
        ]
        for r in ordered
    ]
    classes = [r.status if r.status != "done" else "" for r in ordered]
    linked = sum(isinstance(line[0], Link) for line in body)
    where = (
        f"<p>Each trial's name opens its MLflow run ({linked} of {len(body)} recorded there) "
        f"in the UI at <code>{esc(mlflow_ui)}</code>: metrics per step, the per-utterance "
        "scores, audio samples and the exported checkpoint.</p>"
        if mlflow_ui and linked
        else ""
    )
    return (
        '<section id="all-trials"><h2>All trials</h2>'
        + where
        + table(TRIAL_COLUMNS, body, row_classes=classes, text_columns=2)
        + "</section>"
    )


def time_section(rows: Sequence[ResultRow], cost_per_gpu_hour: float | None = None) -> str:
    """Where the sweep's time went: the summary line, what the GPUs cost, and a bar per trial
    (train / eval / other seconds, `scaling.timing`)."""
    timing = sweep_timing(rows)
    if not timing.trials:
        return ""
    longest = max(t.wall for t in timing.trials) or 1.0
    bars = []
    for t in sorted(timing.trials, key=lambda t: t.started_at):
        parts = "".join(
            f'<span class="{kind}" style="width:{100 * seconds / longest:.2f}%"></span>'
            for kind, seconds in (("train", t.train), ("eval", t.eval), ("other", t.other))
        )
        label = f"{t.train:.0f} / {t.eval:.0f} / {t.other:.0f} s"
        bars.append(
            f'<tr><td><code>{esc(t.trial)}</code></td><td class="timebar">{parts}</td>'
            f"<td>{esc(label)}</td></tr>"
        )
    return (
        '<section id="time"><h2>Where the time went</h2>'
        f"<p>{esc(timing.summary().removeprefix('time: '))}.</p>"
        "<p>Per trial, in start order: training steps (blue), waiting for the judges "
        "(orange) and everything else — starting Ray Train's controller and workers, imports, "
        "data loading, DeepSpeed's set-up, validation, checkpoints (grey); train / eval / "
        "other seconds.</p>"
        f"<p>{esc(gpu_cost(rows, cost_per_gpu_hour))}</p>"
        f'<table class="timing">{"".join(bars)}</table></section>'
    )


def gpu_cost(rows: Sequence[ResultRow], cost_per_gpu_hour: float | None) -> str:
    """The GPU-hours the trials held (their `gpu_hours`) and, given the sweep's
    `cost_per_gpu_hour`, what they cost."""
    hours = sum(r.gpu_hours or 0.0 for r in rows)
    unknown = sum(r.gpu_hours is None for r in rows)
    text = f"GPU-hours held by the trials: {hours:.2f}"
    if unknown:
        text += f" ({unknown} row(s) without a measured wall time not counted)"
    if not hours:
        return text + " — this sweep ran on CPUs."
    if cost_per_gpu_hour is None:
        return text + "; set cost_per_gpu_hour in the sweep config to see what they cost."
    return text + f" × {cost_per_gpu_hour:g} per GPU-hour = {hours * cost_per_gpu_hour:,.2f}."

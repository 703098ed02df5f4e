"""The report's HTML sections about the fits: figures, fit tables, joint fit, extrapolation.

The fit tables include the joint law's forecast (one more model size vs twice the data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scaling.formatting import (
    MISSING,
    finite,
    fmt_interval,
    fmt_number,
    fmt_with_interval,
    human_count,
    percent_2sig,
    percent_2sig_with_interval,
    signed_percent,
)
from scaling.points import family_sort_key
from scaling.report_html import Cell, esc, figure, note, table
from scaling.report_rows import PRIMARY, Analysis

__all__ = [
    "extrapolation_section",
    "fits_section",
    "headline_section",
    "joint_section",
    "quality_section",
    "sim_wer_section",
]


def headline_section(primary: Analysis, figures: dict[str, Path]) -> str:
    """Held-out loss vs data, and which families have no fitted curve (and why)."""
    no_curve = [
        f"{name}: {(fam.get('fit') or {}).get('message') or 'no reason given'}"
        for name, fam in _ordered_families(primary)
        if not (fam.get("fit") or {}).get("ok")
    ]
    return (
        '<section id="headline"><h2>Held-out loss vs data</h2>'
        + figure(
            figures.get("headline"),
            "held-out loss vs training data per model size",
            "Points: seed mean, bars: min–max over seeds. Lines: each family's fitted law "
            "(E + B / D^β or B / D^β, whichever AICc supports), shaded: 95 % prediction band. "
            "Dashed grey: the traditional baselines.",
            look_at="whether the largest model's line keeps falling at the largest budgets "
            "where the small models and the baselines flatten (the classic claim).",
        )
        + (note("No fitted curve for " + "; ".join(no_curve)) if no_curve else "")
        + "</section>"
    )


def sim_wer_section(figures: dict[str, Path]) -> str:
    """SIM and WER vs data, then perceptual quality vs data, or a note that nothing was
    evaluated."""
    if "sim_wer" not in figures:
        return note("No trial has SIM or WER: the checkpoints were not evaluated.")
    return (
        '<section id="sim-wer"><h2>SIM and WER vs data</h2>'
        + figure(
            figures["sim_wer"],
            "speaker similarity and word error rate vs training data",
            "Points: seed mean; bars: the evaluation's confidence interval averaged over seeds. "
            "Thin lines: fitted curves. Horizontal lines: ground-truth and vocoder ceilings.",
            look_at="how far each family's SIM and WER still are from the vocoder ceiling, "
            "and whether more data closes that gap.",
        )
        + "</section>"
        + quality_section(figures)
    )


def quality_section(figures: dict[str, Path]) -> str:
    """Perceptual quality (DNSMOS, UTMOS) vs data, or a note that no trial was scored."""
    if "quality" not in figures:
        return note(
            "No trial has a perceptual quality score (DNSMOS or UTMOS): eval.quality was "
            "empty, or the rows predate it."
        )
    return (
        '<section id="quality"><h2>Perceptual quality vs data</h2>'
        + figure(
            figures["quality"],
            "perceptual quality (DNSMOS, UTMOS) vs training data",
            "DNSMOS OVRL: Microsoft's non-intrusive P.835 model, 1 (bad) to 5 (excellent); "
            "UTMOS likewise, where judged. Points: seed mean; bars: the evaluation's "
            "speaker-clustered confidence interval averaged over seeds. Horizontal lines: "
            "ground-truth and vocoder ceilings (the vocoder's own cost is the gap between "
            "them). Not fitted: a MOS saturates below the ground truth's score rather than "
            "falling as a power law.",
            look_at="whether any model's clones approach the vocoder ceiling or stay near the "
            "white-noise floor (about 1.1).",
        )
        + "</section>"
    )


def fits_section(analyses: dict[str, Analysis | None]) -> str:
    """The primary metric's family and joint tables; SIM's and WER's folded below."""
    primary = analyses[PRIMARY]
    parts = [
        '<section id="fits"><h2>Fits</h2>',
        "<p>Per family, two laws are fitted to every seed's points: L(D) = E + B / D<sup>β</sup> "
        "and L(D) = B / D<sup>β</sup> (no floor). The floor is kept only when it lowers AICc "
        "(small-sample AIC of the log residuals) by more than 2; otherwise the points cannot "
        "tell the two apart and the simpler law is used. 95 % bootstrap intervals in brackets. "
        "A parameter the data do not identify (at its bound, an unbounded interval, or no "
        "residual degree of freedom) is shown as <em>not identified</em>, never as a number; "
        "the note says why and what data would pin it. Gain: the relative fall in loss from "
        "doubling the data — measured over the last doubling in the grid, fitted for the next "
        "doubling beyond it. A family has plateaued when the fitted gain's lower bound is at "
        "most the minimum gain that counts.</p>",
        _family_table(primary),
        _alternatives_table(primary),
        _joint_table(primary),
    ]
    for metric in ("sim", "wer"):
        analysis = analyses.get(metric)
        if analysis is None:
            continue
        what = "1 − SIM" if analysis.get("transform") == "1 - sim" else metric.upper()
        verdict = "".join(f"<li>{esc(v)}</li>" for v in analysis.get("verdict") or [])
        parts.append(
            f"<details><summary>{esc(metric.upper())} fits (fitted quantity: {esc(what)}, "
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
        "law",
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
        plateau = fam.get("plateau") or {}
        ok = bool(fit.get("ok"))
        body.append(
            [
                name,
                human_count(fam.get("params")),
                str(len(fam.get("points") or [])),
                str(fit.get("law") or MISSING) if ok else MISSING,
                *(_param_cell(fit, name) for name in ("E", "B", "beta")),
                percent_2sig(plateau.get("measured_gain")),
                percent_2sig_with_interval(
                    plateau.get("fitted_gain_2x"), plateau.get("fitted_gain_2x_ci")
                ),
                _plateau_verdict(plateau),
                (_family_note(fit, plateau), "text"),
            ]
        )
    if not body:
        return note("No family has a finished trial.")
    return f'<div id="fit-table">{table(headers, body)}</div>'


def _param_cell(fit: Analysis, name: str) -> Cell:
    """A fitted parameter with its interval; "not identified"; or "no floor" for E of B/D^β."""
    if not fit.get("ok"):
        return MISSING
    if name in (fit.get("not_identified") or {}):
        return ("not identified", "bad")
    if name not in fit:
        return "0 (no floor)" if name == "E" else MISSING
    return fmt_with_interval(fit.get(name), (fit.get("intervals") or {}).get(name))


def _identification_note(fit: Analysis) -> str:
    unknown = fit.get("not_identified") or {}
    return " ".join(f"{name} not identified: {why}." for name, why in unknown.items())


def _family_note(fit: Analysis, plateau: Analysis) -> str:
    """The law's selection and the fit's caveats, or why there is no curve and how the
    plateau call was made then (the plateau note repeats the fit's message, so it replaces
    it)."""
    if fit.get("ok"):
        reason = (fit.get("selection") or {}).get("reason")
        parts = [str(reason or ""), str(fit.get("message") or ""), _identification_note(fit)]
        return " ".join(p for p in parts if p)
    return str(plateau.get("note") or f"no fit: {fit.get('message') or 'no reason given'}")


def _alternatives_table(analysis: Analysis) -> str:
    """Both laws for every family, with AICc: what the selection chose between."""
    body = []
    for name, fam in _ordered_families(analysis):
        for law, fit in ((fam.get("fit") or {}).get("alternatives") or {}).items():
            body.append(
                [
                    name,
                    law,
                    fmt_number((fit or {}).get("aicc"), 3),
                    *(_param_cell(fit or {}, p) for p in ("E", "B", "beta")),
                    (
                        _identification_note(fit or {})
                        if (fit or {}).get("ok")
                        else f"no fit: {(fit or {}).get('message')}",
                        "text",
                    ),
                ]
            )
    if not body:
        return ""
    headers = ["family", "law", "AICc", "E", "B", "β", "note"]
    return (
        "<details><summary>Both laws per family (AICc: lower is better)</summary>"
        + table(headers, body)
        + "</details>"
    )


def _plateau_verdict(plateau: Analysis) -> Cell:
    if not plateau or plateau.get("plateaued") is None:
        return MISSING
    basis = "fit" if plateau.get("basis") == "fit" else "measured"
    if basis == "measured" and not finite(plateau.get("measured_gain")):
        return "cannot tell"  # one budget: nothing measured, nothing fitted
    if plateau["plateaued"]:
        return (f"plateaued ({basis})", "bad")
    return (f"still improving ({basis})", "ok")


def _ordered_families(analysis: Analysis) -> list[tuple[str, Analysis]]:
    """The analysis' families in table order (by parameter count, then name; baseline last)."""

    def key(item: tuple[str, Analysis]) -> tuple[bool, bool, float, str]:
        name, fam = item
        params = fam.get("params")
        return family_sort_key(fam.get("kind"), params if finite(params) else None, name)

    return sorted((analysis.get("families") or {}).items(), key=key)


def _joint_table(analysis: Analysis) -> str:
    joint = analysis.get("joint")
    if not joint:
        return note(
            "No joint fit L(N, D): it needs at least two neural model sizes and two budgets."
        )
    if not joint.get("ok"):
        return note(f"Joint fit L(N, D) failed: {joint.get('message') or 'no reason given'}")
    intervals = joint.get("intervals") or {}
    unknown = joint.get("not_identified") or {}
    names = {"E": "E", "A": "A", "alpha": "α", "B": "B", "beta": "β"}
    body: list[list[Cell]] = [
        [names[k], ("not identified", "bad"), (unknown[k], "text")]
        if k in unknown
        else [names[k], fmt_number(joint.get(k)), fmt_interval(intervals.get(k))]
        for k in names
    ]
    sizes = ", ".join(str(s) for s in joint.get("sizes") or [])
    caveat = f" Caveat: {esc(joint['message'])}." if joint.get("message") else ""
    intro = (
        f"<p>Joint fit L(N, D) = E + A / N<sup>α</sup> + B / D<sup>β</sup> over "
        f"{esc(fmt_number(joint.get('n_points')))} trials (sizes: {esc(sizes)}).{caveat}</p>"
    )
    params = table(["parameter", "value", "95 % interval"], body)
    return f'<div id="joint-table">{intro}{params}{_forecast(joint.get("forecast"))}</div>'


def _forecast(forecast: Analysis | None) -> str:
    if not forecast:
        return ""
    d_max = fmt_number(forecast.get("d_max"))
    now = f"largest size ({human_count(forecast.get('n_max'))}) at {d_max} utterances (now)"
    body = [
        [now, fmt_number(forecast.get("loss_now")), MISSING],
        _forecast_row(
            f"next size ({human_count(forecast.get('n_next'))} params) at {d_max} utterances",
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
    return "<p>Forecast from the joint fit (95 % prediction intervals):</p>" + table(
        ["scenario", "predicted loss", "interval"], body
    )


def _forecast_row(label: str, triple: Any) -> list[Cell]:
    mid, lo, hi = (list(triple) + [None] * 3)[:3] if triple else (None, None, None)
    return [label, fmt_number(mid), fmt_interval([lo, hi])]


def joint_section(primary: Analysis, figures: dict[str, Path]) -> str:
    """The joint fit's iso-loss map and the compute frontier, or why either is missing."""
    parts = ['<section id="joint"><h2>Joint fit and compute frontier</h2>']
    if "joint" in figures:
        parts.append(
            figure(
                figures["joint"],
                "iso-loss contours of the joint fit over parameters and data",
                "Contours: the joint fit's predicted loss; dots: finished neural trials coloured "
                "by their measured loss (a dot that matches its background fits well).",
                look_at="dots whose colour differs from the contour behind them: where the "
                "joint law misfits.",
            )
        )
    else:
        parts.append(note("No iso-loss map: there is no successful joint fit."))
    if "frontier" in figures:
        parts.append(
            figure(
                figures["frontier"],
                "held-out loss vs training compute",
                "Left: every finished neural trial by its measured training FLOPs, the "
                "frontier of the best loss per compute. Right (when the sweep and the joint "
                "fit allow): the compute-optimal model size N*(C).",
                look_at="which model size holds the lowest loss at each compute budget, and "
                "where the frontier changes hands.",
            )
        )
        absent = (primary.get("frontier") or {}).get("optimal_absent")
        if absent:
            parts.append(note(f"No compute-optimal allocation: {absent}."))
    else:
        parts.append(
            note("No compute frontier: no finished neural trial with its training FLOPs recorded.")
        )
    parts.append("</section>")
    return "".join(parts)


def extrapolation_section(primary: Analysis) -> str:
    """Each law refitted without the largest budget against what was measured there."""
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
        return header + note("No fit to check: no family has a finished trial.") + "</section>"
    intro = (
        "<p>Each law refitted without the largest budget "
        f"(d = {esc(fmt_number(check.get('dropped_d')))} utterances), then asked to predict it: "
        "✓ when the measured loss falls inside the 95 % prediction interval.</p>"
    )
    headers = ["fit", "family", "predicted", "interval", "actual", "error", "covered", "note"]
    return header + intro + table(headers, body, text_columns=2) + "</section>"


def _extrapolation_row(fit_name: str, size: str, entry: Analysis) -> list[Cell]:
    covered = entry.get("covered")
    mark: Cell = MISSING if covered is None else (("✓", "ok") if covered else ("✗", "bad"))
    if entry.get("ok", True):
        why = entry.get("message") or ""  # e.g. why an interval has no width
    else:
        why = f"no refit: {entry.get('message') or 'no reason given'}"
    return [
        fit_name,
        size,
        fmt_number(entry.get("predicted")),
        fmt_interval(entry.get("interval")),
        fmt_number(entry.get("actual")),
        signed_percent(entry.get("relative_error")),
        mark,
        (why, "text"),
    ]

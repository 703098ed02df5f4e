"""Numbers as text, and values as strict JSON: shared by the fits, the verdicts and the report.

Two families of number formats live here on purpose, because both are already in outputs
people read and diff: the verdict sentences (stored in fits.json) say "n/a" for a missing
value and give percentages to one decimal; the report's tables say "—" and give percentages
to two significant figures. Each format is one function; nothing else formats numbers.
"""

from __future__ import annotations

import math
from typing import Any

from store.records import json_safe

__all__ = [
    "MISSING",
    "as_float",
    "count_text",
    "finite",
    "fmt_interval",
    "fmt_number",
    "fmt_with_interval",
    "human_count",
    "json_safe",
    "percent",
    "percent_2sig",
    "percent_2sig_with_interval",
    "sig4",
    "signed_percent",
]

MISSING = "—"
"""What a table cell shows for a missing or non-finite number."""


# ---------------------------------------------------------------------------------------------
# Values


def as_float(value: Any) -> float:
    """A float, NaN for anything missing or not a number: NaN flows through numpy and
    formats as a dash."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def finite(value: Any) -> bool:
    """Is `value` a finite real number (int or float; None, NaN, ±inf and strings are not)?"""
    return isinstance(value, (int, float)) and math.isfinite(value)


def percent(value: float | None, missing: str = "n/a") -> str:
    """0.1234 → '12.3 %' (one decimal); `missing` for None or a non-finite value."""
    return f"{100 * value:.1f} %" if finite(value) else missing


def sig4(value: float | None) -> str:
    """A loss in a sentence: four significant figures, 'n/a' when missing."""
    return f"{value:.4g}" if finite(value) else "n/a"


def count_text(value: float) -> str:
    """A budget or parameter count in a sentence: 12,345 below a million, else 1.23e+06."""
    return f"{value:,.0f}" if value < 1e6 else f"{value:.3g}"


# ---------------------------------------------------------------------------------------------
# Table cells: MISSING for missing values


def fmt_number(value: Any, digits: int = 4) -> str:
    """Numbers for tables: a dash for missing/NaN, integers with separators, else `digits`
    significant figures; booleans as yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    x = as_float(value)
    if not math.isfinite(x):
        return MISSING
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:.{digits}g}"


def fmt_interval(interval: Any, digits: int = 4) -> str:
    """'[lo, hi]' with `fmt_number`; a dash unless `interval` has two ends."""
    if not interval or len(interval) != 2:
        return MISSING
    return f"[{fmt_number(interval[0], digits)}, {fmt_number(interval[1], digits)}]"


def fmt_with_interval(value: Any, interval: Any, digits: int = 4) -> str:
    """'value [lo, hi]', or the value alone when there is no interval."""
    shown = fmt_number(value, digits)
    if shown == MISSING or not interval:
        return shown
    return f"{shown} {fmt_interval(interval, digits)}"


def percent_2sig(value: Any) -> str:
    """0.01234 → '1.2 %' (two significant figures); a dash when missing."""
    x = as_float(value)
    return f"{100 * x:.2g} %" if math.isfinite(x) else MISSING


def percent_2sig_with_interval(value: Any, interval: Any) -> str:
    """'1.2 % [0.8 %, 1.6 %]', or the percentage alone without a finite interval."""
    shown = percent_2sig(value)
    if shown == MISSING or not interval or not all(finite(v) for v in interval):
        return shown
    return f"{shown} [{percent_2sig(interval[0])}, {percent_2sig(interval[1])}]"


def signed_percent(value: Any) -> str:
    """-0.0123 → '-1.2 %', always signed; a dash when missing."""
    x = as_float(value)
    return f"{100 * x:+.1f} %" if math.isfinite(x) else MISSING


def human_count(n: Any) -> str:
    """523000 → '523 k', 2.1e6 → '2.1 M': legend-sized parameter counts ('?' when missing)."""
    x = as_float(n)
    if not math.isfinite(x):
        return "?"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g}"

"""The laws' names and parameters, without numpy: what the report and the forecast need to
label a fit (`scaling.law` holds the maths)."""

from __future__ import annotations

from typing import Literal

__all__ = ["LAW_TEXT", "PARAM_NAMES", "Form"]

Form = Literal["data", "power", "joint"]
"""`data`: L(D) = E + B/D^β (one model size). `power`: L(D) = B/D^β (no floor: the loss would
reach 0 with unlimited data). `joint`: L(N, D) = E + A/N^α + B/D^β."""

PARAM_NAMES: dict[str, tuple[str, ...]] = {
    "data": ("E", "B", "beta"),
    "power": ("B", "beta"),
    "joint": ("E", "A", "B", "alpha", "beta"),
}
LAW_TEXT: dict[str, str] = {
    "data": "E + B/D^β",
    "power": "B/D^β",
    "joint": "E + A/N^α + B/D^β",
}

"""What the data can say about a fitted law: which parameters they identify, which form they
support, and the plain-JSON a fit is reported as.

A parameter is **not identified** — reported with the reason and what data would pin it, never
as a number — when any of these holds:

* the fit has no residual degree of freedom (points ≤ parameters): nothing measures the
  uncertainty, and the bootstrap's near-zero-width intervals would look like precision;
* a scale parameter (E, A, B) sits at its bound 0: its estimate or its interval's lower end
  is below `FLOOR_FRACTION` × the smallest measured loss (the term is indistinguishable from
  absent: E → 0 means "no floor in these data");
* a scale parameter's 95 % interval spans more than `MAX_SPAN`× (unbounded);
* an exponent's 95 % interval (or estimate) reaches `MAX_EXPONENT` (its term dies out within
  the data, so its size is unconstrained) or, in a law with a floor, falls to `MIN_EXPONENT`
  (its term is flat and trades off against the floor E). In B/D^β a small β is no trade-off
  but the measurement itself: the gain per doubling, 1 − 2^−β.

Form selection (per family, L(D)): E + B/D^β against B/D^β by AICc on the log residuals
(a Gaussian likelihood on the fit's residuals — the fit itself minimises a Huber loss, so this
is an approximation, stated in the report). The floor is kept only when it lowers AICc by more
than `AICC_MARGIN`; otherwise the data cannot tell the two apart and the simpler law is used.
With too few points for AICc (n ≤ k + 1) the floorless law is used and the reason says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scaling.formatting import json_safe
from scaling.law import LAW_TEXT, PARAM_NAMES
from scaling.power_law import PowerLawFit

__all__ = [
    "AICC_MARGIN",
    "FLOOR_FRACTION",
    "MAX_EXPONENT",
    "MAX_SPAN",
    "MIN_EXPONENT",
    "FormChoice",
    "aicc",
    "choose_form",
    "fit_json",
    "not_identified",
]

FLOOR_FRACTION = 1e-3
MAX_SPAN = 100.0
MAX_EXPONENT = 4.0
MIN_EXPONENT = 0.01
AICC_MARGIN = 2.0

_EXPONENTS = {"alpha", "beta"}
_WOULD_PIN = {
    "E": "budgets past the bend of the curve (larger D), or more seeds per budget",
    "B": "more budgets over a wider range of D, or more seeds per budget",
    "beta": "more budgets over a wider range of D, or more seeds per budget",
    "A": "more model sizes over a wider range of N",
    "alpha": "more model sizes over a wider range of N",
}


def not_identified(fit: PowerLawFit, min_loss: float) -> dict[str, str]:
    """Parameter name → why the data do not identify it (absent: identified). `min_loss`: the
    smallest measured value of the fitted quantity. Empty for a failed fit."""
    if not fit.ok:
        return {}
    names = PARAM_NAMES[fit.form]
    p = len(names)
    if fit.n_points <= p:
        why = (
            f"{fit.n_points} points for {p} parameters: no residual degree of freedom, so "
            "nothing measures the uncertainty"
        )
        return {name: f"{why}; would pin it: {_WOULD_PIN[name]}" for name in names}
    values, intervals = fit.params, fit.intervals
    out = {}
    for name in names:
        reason = _reason(name, values[name], intervals[name], min_loss, "E" in names)
        if reason:
            out[name] = f"{reason}; would pin it: {_WOULD_PIN[name]}"
    return out


def _reason(
    name: str, value: float, interval: tuple[float, float], min_loss: float, has_floor: bool
) -> str:
    lo, hi = interval
    # Both ends NaN: no bootstrap replicates, no interval. One end NaN or infinite: some
    # replicate ran off to infinity (numpy's percentile of ∞ is NaN) — an unbounded interval.
    no_interval = math.isnan(lo) and math.isnan(hi)
    if not no_interval and not (math.isfinite(lo) and math.isfinite(hi)):
        return f"its 95 % interval ({_g(lo)}, {_g(hi)}) is unbounded: a resample ran off to ∞"
    if name in _EXPONENTS:
        top = value if no_interval else max(value, hi)
        bottom = value if no_interval else min(value, lo)
        if not math.isfinite(top) or top >= MAX_EXPONENT:
            return f"its 95 % interval reaches {_g(top)} (≥ {MAX_EXPONENT:g}): the term dies out"
        if has_floor and bottom <= MIN_EXPONENT:
            return f"its 95 % interval reaches {_g(bottom)} (≤ {MIN_EXPONENT:g}): the term is flat"
        return ""
    bottom = value if no_interval else min(value, lo)
    if not bottom > FLOOR_FRACTION * min_loss:
        return (
            f"at its bound 0 (reaches {_g(bottom)}, below {FLOOR_FRACTION:g} × the smallest "
            "measured value): the data cannot tell this term from absent"
        )
    if not no_interval and hi / lo > MAX_SPAN:
        return f"its 95 % interval {_g(lo)} … {_g(hi)} spans more than {MAX_SPAN:g}×"
    return ""


def _g(value: float) -> str:
    return f"{value:.3g}"


def aicc(fit: PowerLawFit) -> float:
    """Small-sample AIC of the fit's log residuals (Gaussian likelihood); NaN for a failed fit
    or with n ≤ k + 1 points."""
    k, n = len(PARAM_NAMES[fit.form]), fit.n_points
    if not fit.ok or n <= k + 1 or not math.isfinite(fit.rss):
        return math.nan
    rss = max(fit.rss, 1e-12 * n)  # an exact fit would give log 0
    return n * math.log(rss / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


@dataclass(frozen=True)
class FormChoice:
    """The L(D) form a family's points support, and why."""

    chosen: PowerLawFit
    with_floor: PowerLawFit
    without_floor: PowerLawFit
    reason: str

    def to_json(self) -> dict[str, Any]:
        """`selection` in fits.json: the criterion, both AICc values and the reason."""
        return json_safe(
            {
                "criterion": f"AICc on log residuals; the floor must lower it by > {AICC_MARGIN:g}",
                "chosen": LAW_TEXT[self.chosen.form],
                "aicc": {
                    LAW_TEXT["data"]: aicc(self.with_floor),
                    LAW_TEXT["power"]: aicc(self.without_floor),
                },
                "reason": self.reason,
            }
        )


def choose_form(with_floor: PowerLawFit, without_floor: PowerLawFit) -> FormChoice:
    """E + B/D^β or B/D^β for one family (see the module docstring for the rule)."""
    a_floor, a_power = aicc(with_floor), aicc(without_floor)
    if not with_floor.ok and not without_floor.ok:
        chosen, reason = with_floor, f"neither law could be fitted: {with_floor.message}"
    elif not with_floor.ok:
        chosen, reason = without_floor, f"E + B/D^β could not be fitted: {with_floor.message}"
    elif not without_floor.ok:
        chosen, reason = with_floor, f"B/D^β could not be fitted: {without_floor.message}"
    elif not math.isfinite(a_floor) or not math.isfinite(a_power):
        k = len(PARAM_NAMES["data"])
        chosen = without_floor
        reason = (
            f"{with_floor.n_points} points: AICc needs more than {k + 1} to weigh a floor, so "
            "the simpler law is used"
        )
    elif a_floor < a_power - AICC_MARGIN:
        chosen = with_floor
        reason = f"the floor lowers AICc by {a_power - a_floor:.1f} (> {AICC_MARGIN:g})"
    else:
        chosen = without_floor
        change = (
            f"raises AICc by {a_floor - a_power:.1f}"
            if a_floor >= a_power
            else f"lowers AICc by only {a_power - a_floor:.1f}"
        )
        reason = (
            f"the floor {change} (it must lower it by > {AICC_MARGIN:g}): these points show "
            "no floor, so the simpler law is used"
        )
    return FormChoice(chosen, with_floor, without_floor, reason)


def fit_json(fit: PowerLawFit, min_loss: float) -> dict[str, Any]:
    """A fit as fits.json stores it: `PowerLawFit.to_dict()` without its form, plus `law` and
    `not_identified`; a parameter the data do not identify has value and interval None."""
    out = {k: v for k, v in fit.to_dict().items() if k != "form"}
    unknown = not_identified(fit, min_loss)
    out["law"] = LAW_TEXT[fit.form]
    out["aicc"] = json_safe(aicc(fit))
    out["not_identified"] = unknown
    for name in PARAM_NAMES[fit.form]:
        if name in unknown:
            out[name] = None
            out["intervals"][name] = None
    return out

"""The verdict: one metric's analysis as the plain-language sentences the report leads with."""

from __future__ import annotations

from typing import Any

from scaling.formatting import count_text, percent, sig4
from scaling.law_names import LAW_TEXT

__all__ = ["verdict"]


def verdict(result: dict[str, Any]) -> list[str]:
    """Sentences about an `analyse_results` result (its plain-JSON form, without `verdict`):
    per family plateaued or still improving, what the joint law forecasts, and how the
    extrapolation check went."""
    label = result["transform"] or result["metric"]
    lines = [_plateau_sentence(name, fam, label) for name, fam in result["families"].items()]
    if not lines:
        lines.append(f"No finished trials with a finite {result['metric']}: nothing to fit.")
    lines.append(_joint_sentence(result["joint"], label))
    lines.append(_extrapolation_sentence(result["extrapolation"]))
    return [line for line in lines if line]


def _plateau_sentence(name: str, family: dict[str, Any], label: str) -> str:
    plateau, points = family["plateau"], family["points"]
    if not points:
        return ""
    d_max = points[-1]["d"]
    state = "plateaued" if plateau["plateaued"] else "still improving"
    if plateau["basis"] == "fit":
        lo, hi = plateau["fitted_gain_2x_ci"]
        law = family["fit"].get("law")
        floorless = (
            f" Law {law}: these points show no floor, so the fitted gain per doubling is the "
            "same at every budget (1 − 2^−β)."
            if law == LAW_TEXT["power"]
            else ""
        )
        return (
            f"{name}: {state} — doubling data beyond {count_text(d_max)} utterances is "
            f"predicted to cut {label} by {percent(plateau['fitted_gain_2x'])} (95 % CI "
            f"{percent(lo)} to {percent(hi)}; plateau means the lower bound is ≤ "
            f"{percent(plateau['min_gain'])}).{floorless}"
        )
    if plateau["measured_gain"] is None:
        return f"{name}: cannot tell — {plateau['note']}."
    return (
        f"{name}: {state} — no usable fit ({family['fit']['message']}); the last measured step "
        f"to {count_text(d_max)} utterances cut {label} by {percent(plateau['measured_gain'])}."
    )


def _joint_sentence(joint: dict[str, Any] | None, label: str) -> str:
    if joint is None:
        return "No joint fit: it needs at least 2 neural model sizes and 2 data budgets."
    if not joint["ok"]:
        return f"The joint fit failed: {joint['message']}."
    fc = joint["forecast"]
    nxt, dbl, diff = fc["loss_next_size"], fc["loss_2x_data"], fc["next_size_minus_2x_data"]
    if diff[1] is not None and diff[1] > 0:
        winner = "twice the data is predicted to buy more"
    elif diff[2] is not None and diff[2] < 0:
        winner = "the next size is predicted to buy more"
    else:
        winner = "the two are not distinguishable at 95 %"
    return (
        f"At the largest budget ({count_text(fc['d_max'])} utterances, {label} "
        f"{sig4(fc['loss_now'])} for the largest model): one more model size "
        f"(N ≈ {count_text(fc['n_next'])}) is predicted to reach {sig4(nxt[0])} (95 % PI "
        f"{sig4(nxt[1])}–{sig4(nxt[2])}); twice the data {sig4(dbl[0])} "
        f"({sig4(dbl[1])}–{sig4(dbl[2])}); {winner}."
    )


def _extrapolation_sentence(extrapolation: dict[str, Any]) -> str:
    checks = [c for c in extrapolation["families"].values() if c.get("ok")]
    if not checks:
        return (
            "Extrapolation check: no family had enough points below its largest budget to refit "
            "with a residual degree of freedom left."
        )
    covered = sum(bool(c["covered"]) for c in checks)
    worst = max(abs(c["relative_error"]) for c in checks)
    unchecked = len(extrapolation["families"]) - len(checks)
    caveat = (
        f"; {unchecked} could not be checked (too few points below the largest budget)"
        if unchecked
        else ""
    )
    joint = extrapolation["joint"]
    joint_text = ""
    if joint:
        joint_covered = sum(bool(c["covered"]) for c in joint.values())
        joint_text = f"; the joint law covered {joint_covered} of {len(joint)} sizes"
    return (
        f"Extrapolation check: refitted without the largest budget, the per-size laws predicted "
        f"it within their 95 % intervals for {covered} of {len(checks)} families (worst error "
        f"{percent(worst)}){caveat}{joint_text}."
    )

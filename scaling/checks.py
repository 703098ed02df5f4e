"""Checks built on fitted laws: plateau, optimal allocation, compute frontier, extrapolation.

The extrapolation check refits without the largest budget and asks the law to predict it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from scaling.law import PARAM_NAMES, Form
from scaling.power_law import LEVEL, PowerLawFit, fit_power_law, percentiles

__all__ = [
    "MAX_K_SPREAD",
    "MIN_GAIN",
    "compute_frontier",
    "compute_optimal_allocation",
    "extrapolation_check",
    "plateau_test",
]

MIN_GAIN = 0.005
"""The smallest relative gain from doubling the data that counts as still improving."""
MAX_K_SPREAD = 1.5
"""C/(N·D) may vary this much across trials before C = k·N·D is no longer one k."""
_COVERAGE_RTOL = 1e-9  # an interval of zero width still covers its own value


def plateau_test(
    fit: PowerLawFit | None,
    d: Sequence[float],
    loss: Sequence[float],
    *,
    min_gain: float = MIN_GAIN,
    n: float | None = None,
) -> dict[str, Any]:
    """Is the family still improving at its largest budget? `d`, `loss`: its measured points
    (seed means). measured_gain = (L(D_prev) − L(D_max)) / L(D_prev); fitted_gain_2x =
    1 − L(2 D_max)/L(D_max) with its bootstrap confidence interval; plateaued = the interval's
    lower bound ≤ min_gain (the gain is not significantly above it). Without a usable fit the
    measured gain decides, and `note` says so. `n`: the size, for a joint-form fit."""
    order = np.argsort(d)
    d_sorted, loss_sorted = np.asarray(d, float)[order], np.asarray(loss, float)[order]
    measured = (
        (loss_sorted[-2] - loss_sorted[-1]) / loss_sorted[-2] if len(d_sorted) >= 2 else math.nan
    )
    result: dict[str, Any] = {
        "measured_gain": measured,
        "fitted_gain_2x": math.nan,
        "fitted_gain_2x_ci": [math.nan, math.nan],
        "min_gain": min_gain,
    }
    if fit is not None and fit.ok and len(d_sorted):
        d_max = d_sorted[-1]
        now, doubled = fit.predict([d_max, 2 * d_max], None if n is None else [n, n])
        gain = 1 - doubled / now
        reps = fit.replicate_predictions([d_max, 2 * d_max], None if n is None else [n, n])
        lo, hi = percentiles(1 - reps[:, 1] / reps[:, 0], LEVEL) if len(reps) else (math.nan,) * 2
        decisive = lo if np.isfinite(lo) else gain  # no replicates: the point estimate decides
        result |= {
            "fitted_gain_2x": gain,
            "fitted_gain_2x_ci": [lo, hi],
            "plateaued": bool(decisive <= min_gain),
            "basis": "fit",
            "note": None,
        }
        return result
    reason = fit.message if fit is not None else "no fit"
    result |= {
        "plateaued": bool(np.isfinite(measured) and measured <= min_gain),
        "basis": "measured",
        "note": f"no usable fit ({reason}); decided on the measured gain between the two "
        "largest budgets"
        if np.isfinite(measured)
        else f"no usable fit ({reason}) and fewer than 2 budgets: cannot tell",
    }
    return result


def compute_optimal_allocation(
    fit: PowerLawFit, flops: Sequence[float] | np.ndarray, k: float
) -> dict[str, list[float]] | None:
    """N*(C), D*(C) minimising the joint law under C = k·N·D (Chinchilla's closed form
    N* = G (C/k)^(β/(α+β)), G = (αA / βB)^(1/(α+β))); None unless α, β > 0."""
    p = fit.params
    alpha, beta = p.get("alpha", math.nan), p["beta"]
    if not fit.ok or not (alpha > 0 and beta > 0) or not k > 0:
        return None
    budget = np.asarray(flops, dtype=float) / k  # N·D
    g = (alpha * p["A"] / (beta * p["B"])) ** (1 / (alpha + beta))
    n_opt = g * budget ** (beta / (alpha + beta))
    d_opt = budget / n_opt
    return {
        "flops": np.asarray(flops, float).tolist(),
        "n": n_opt.tolist(),
        "d": d_opt.tolist(),
        "loss": fit.predict(d_opt, n_opt).tolist(),
    }


def compute_frontier(
    points: Sequence[Mapping[str, Any]],
    joint: PowerLawFit | None = None,
    *,
    unidentified: Collection[str] = (),
) -> dict[str, Any]:
    """Loss-vs-compute frontier of trials (dicts with trial, n, d, flops, loss; flops > 0).
    `points`: the Pareto frontier of the measured FLOPs (no cheaper trial reached a lower loss),
    each marked whether it is also on the lower convex hull in (log flops, loss) — this needs
    no assumption about how compute relates to N and D. `optimal`: the compute-optimal
    allocation from the joint fit over [min C, 10 × max C], which assumes C = k·N·D with one k
    (k = median C/(N·D)); it is absent, with `optimal_absent` saying why, when C/(N·D) varies
    by more than `MAX_K_SPREAD`× across the trials (steps not proportional to data) or when the
    joint fit does not identify A, B, α or β (`unidentified`: names the data do not pin)."""
    usable = [p for p in points if p["flops"] and p["flops"] > 0]
    if not usable:
        return {"points": [], "k": None, "optimal": None, "optimal_absent": "no FLOPs measured"}
    usable.sort(key=lambda p: (p["flops"], p["loss"]))
    pareto, best = [], math.inf
    for p in usable:
        if p["loss"] < best:
            pareto.append(p)
            best = p["loss"]
    hull = _lower_hull([(math.log(p["flops"]), p["loss"]) for p in pareto])
    ratios = [p["flops"] / (p["n"] * p["d"]) for p in usable]
    spread = max(ratios) / min(ratios)
    absent = _why_no_allocation(joint, spread, unidentified)
    k = float(np.median(ratios)) if spread <= MAX_K_SPREAD else None
    flops = [p["flops"] for p in usable]
    grid = np.logspace(math.log10(min(flops)), math.log10(10 * max(flops)), 30)
    return {
        "points": [
            {"trial": p["trial"], "flops": p["flops"], "loss": p["loss"], "on_hull": i in hull}
            for i, p in enumerate(pareto)
        ],
        "k": k,
        "k_spread": spread,
        "optimal": None if absent else compute_optimal_allocation(joint, grid, k),
        "optimal_absent": absent,
    }


def _why_no_allocation(
    joint: PowerLawFit | None, spread: float, unidentified: Collection[str]
) -> str | None:
    """Why the compute-optimal allocation cannot be drawn, or None when it can."""
    if spread > MAX_K_SPREAD:
        return (
            f"C/(N·D) varies {spread:.1f}× across the trials (training steps are not "
            "proportional to the data), so C = k·N·D does not hold; a compute-protocol sweep "
            "(fixed samples seen per parameter, IsoFLOP slices) would give a meaningful one"
        )
    if joint is None or not joint.ok:
        return "no usable joint fit L(N, D)"
    missing = sorted(set(unidentified) & {"A", "B", "alpha", "beta"})
    if missing:
        return f"the joint fit does not identify {', '.join(missing)}"
    return None


def _lower_hull(xy: list[tuple[float, float]]) -> set[int]:
    """Indices of the points (sorted by x) on the lower convex hull (monotone chain)."""
    hull: list[int] = []
    for i, (x, y) in enumerate(xy):
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = xy[hull[-2]], xy[hull[-1]]
            if (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) > 0:  # left turn: keeps convexity
                break
            hull.pop()
        hull.append(i)
    return set(hull)


def extrapolation_check(
    d: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    n: Sequence[float] | np.ndarray | None = None,
    *,
    bootstrap: int = 1000,
    seed: int | np.random.SeedSequence = 0,
    floor: bool = True,
    min_dof: int = 1,
) -> dict[str, Any]:
    """Refit without the largest budget and predict it (for every size, joint form). Returns
    {"dropped_d", "fit": PowerLawFit, "checks": [{"n", "d", "predicted", "interval", "actual",
    "relative_error", "covered", "n_points"}], "message"}: `actual` is the mean measured loss
    there, `interval` the 95 % prediction interval, `covered` whether it holds `actual` (None
    without bootstrap replicates), `n_points` the refit's. The refit must keep `min_dof`
    residual degrees of freedom (points − parameters): with fewer, its interval measures
    nothing, so there is no check. Without checks, `message` says why. `floor`: False refits
    L(D) = B/D^β."""
    d_arr, loss_arr = np.asarray(d, float), np.asarray(loss, float)
    n_arr = None if n is None else np.asarray(n, float)
    d_max = float(d_arr.max())
    keep = d_arr < d_max
    form: Form = "joint" if n is not None else "data" if floor else "power"
    if not keep.any():
        failed = PowerLawFit(form=form, ok=False, message="only one budget", n_points=0)
        return {"dropped_d": d_max, "fit": failed, "checks": [], "message": failed.message}
    fit = fit_power_law(
        d_arr[keep],
        loss_arr[keep],
        None if n_arr is None else n_arr[keep],
        bootstrap=bootstrap,
        seed=seed,
        floor=floor,
    )
    p = len(PARAM_NAMES[form])
    if not fit.ok or fit.n_points - p < min_dof:
        why = (
            fit.message
            if not fit.ok
            else (
                f"{fit.n_points} points below the largest budget for {p} parameters: the refit "
                f"needs ≥ {p + min_dof} to keep {min_dof} residual degree(s) of freedom"
            )
        )
        return {"dropped_d": d_max, "fit": fit, "checks": [], "message": why}
    checks = []
    sizes = [None] if n_arr is None else sorted(set(n_arr[~keep].tolist()))
    for size in sizes:
        at = ~keep if size is None else ~keep & (n_arr == size)
        checks.append(_check_prediction(fit, d_max, size, float(loss_arr[at].mean())))
    return {"dropped_d": d_max, "fit": fit, "checks": checks, "message": fit.message}


def _check_prediction(fit: PowerLawFit, d: float, n: float | None, actual: float) -> dict[str, Any]:
    """The refit's 95 % prediction at (d, n) against the measured mean `actual`."""
    mid, lo, hi = (float(v[0]) for v in fit.band([d], None if n is None else [n]))
    covered = lo * (1 - _COVERAGE_RTOL) <= actual <= hi * (1 + _COVERAGE_RTOL)
    known = math.isfinite(lo) and math.isfinite(hi)
    return {
        "n": n,
        "d": d,
        "predicted": mid,
        "interval": [lo, hi],
        "actual": actual,
        "relative_error": (mid - actual) / actual,
        "covered": bool(covered) if known else None,
        "n_points": fit.n_points,
    }

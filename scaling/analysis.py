"""Results rows → one metric's analysis, the plain-JSON dict that fits.json stores.

Per-family and joint fits, plateau tests, compute frontier, forecast, extrapolation checks and
the verdict; the seed-figure check (`seed_figure`) is importable from here too.

D = data_utterances, N = params. Seeds at one (size, budget) are averaged for the plotted
points; fits use every row. Every family gets an independent, reproducible bootstrap stream
(`_child_seed`), so adding a family never changes another's intervals.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scaling.checks import compute_frontier, extrapolation_check, plateau_test
from scaling.formatting import json_safe
from scaling.identify import FormChoice, choose_form, fit_json
from scaling.law import LAW_TEXT
from scaling.optimise import one_blas_thread
from scaling.points import METRIC_TRANSFORMS, Point, family_sort_key, fit_points
from scaling.power_law import LEVEL, PowerLawFit, fit_or_reason, percentiles
from scaling.seed_figure import describe_seed_figure, seed_figure
from scaling.verdicts import verdict
from store.records import ResultRow

__all__ = [
    "CURVE_POINTS",
    "BudgetPoint",
    "FamilyAnalysis",
    "analyse_results",
    "describe_seed_figure",
    "seed_figure",
]

CURVE_POINTS = 60
SURFACE_POINTS = 40


@one_blas_thread
def analyse_results(
    rows: Sequence[ResultRow], *, metric: str = "val_loss", bootstrap: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Fits, plateau tests, frontier, extrapolation checks and a verdict from results rows
    (only `status == "done"` rows with a finite metric and a positive budget count).
    "sim" is fitted as 1 − sim (`transform`), so every `loss` in the result is that quantity.
    Families whose fit cannot run (too few budgets, invalid values) get fit.ok = False with
    the reason, and their plateau test falls back to the measured gain. Plain JSON out."""
    if metric not in METRIC_TRANSFORMS:
        raise ValueError(f"metric must be one of {sorted(METRIC_TRANSFORMS)}, got {metric!r}")
    usable = fit_points(rows, metric)
    by_family = _by_family(usable)
    families = {
        name: _analyse_family(points, bootstrap, _child_seed(seed, name)).to_json()
        for name, points in sorted(by_family.items(), key=lambda kv: _family_order(kv[1]))
    }
    joint_points = [p for p in usable if p.row.kind == "neural" and (p.row.params or 0) > 0]
    joint_fit, joint = _analyse_joint(joint_points, bootstrap, _child_seed(seed, "joint"))
    frontier = compute_frontier(
        [_frontier_point(p) for p in joint_points],
        joint_fit if joint_fit is not None and joint_fit.ok else None,
        unidentified=(joint or {}).get("not_identified") or {},
    )
    result = {
        "metric": metric,
        "transform": METRIC_TRANSFORMS[metric],
        "bootstrap": bootstrap,
        "rows_used": len(usable),
        "rows_skipped": len(rows) - len(usable),
        "families": families,
        "joint": joint,
        "frontier": frontier,
        "extrapolation": _extrapolation(usable, by_family, joint_points, bootstrap, seed),
    }
    result = json_safe(result)
    result["verdict"] = verdict(result)
    return result


# ---------------------------------------------------------------------------------------------
# Per family


@dataclass(frozen=True)
class BudgetPoint:
    """One family at one budget: the seed mean of the fitted quantity and its spread."""

    d: float
    """The budget as the rows give it (an int stays an int in fits.json)."""
    hours: float | None
    loss: float
    loss_min: float
    loss_max: float
    seeds: int
    values: list[float]

    def to_json(self) -> dict[str, Any]:
        """The fits.json object of this point."""
        return {
            "d": self.d,
            "hours": self.hours,
            "loss": self.loss,
            "loss_min": self.loss_min,
            "loss_max": self.loss_max,
            "seeds": self.seeds,
            "values": self.values,
        }


@dataclass(frozen=True)
class FamilyAnalysis:
    """One model size (or the baseline): points, L(D) fit, fitted curve with its prediction
    band, and plateau test."""

    kind: str
    params: float | None
    points: list[BudgetPoint]
    fit: dict[str, Any]
    """`PowerLawFit.to_dict()` without its form."""
    curve: dict[str, list[float]]
    plateau: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The fits.json object of this family (`families.<name>`)."""
        return {
            "kind": self.kind,
            "params": self.params,
            "points": [p.to_json() for p in self.points],
            "fit": self.fit,
            "curve": self.curve,
            "plateau": self.plateau,
        }


def _by_family(points: list[Point]) -> dict[str, list[Point]]:
    groups: dict[str, list[Point]] = {}
    for point in points:
        groups.setdefault(point.row.family, []).append(point)
    return groups


def _family_order(points: list[Point]) -> tuple[bool, bool, float, str]:
    """Neural sizes by parameter count, then the baseline; equal counts keep row order."""
    first = points[0].row
    return family_sort_key(first.kind, first.params)


def _child_seed(seed: int, name: str) -> np.random.SeedSequence:
    """An independent, reproducible stream per family (stable across runs and machines)."""
    return np.random.SeedSequence([seed, zlib.crc32(name.encode())])


def _budget_points(points: list[Point]) -> list[BudgetPoint]:
    """Seed-averaged points, sorted by budget, keeping the spread over seeds."""
    by_budget: dict[float, list[Point]] = {}
    for point in points:  # keyed by value: 1000 and 1000.0 are one budget
        by_budget.setdefault(float(point.row.data_utterances), []).append(point)
    out = []
    for _, at in sorted(by_budget.items()):
        losses = [p.loss for p in at]
        hours = [p.row.data_hours for p in at if isinstance(p.row.data_hours, (int, float))]
        out.append(
            BudgetPoint(
                d=at[0].row.data_utterances,
                hours=float(np.mean(hours)) if hours else None,
                loss=float(np.mean(losses)),
                loss_min=min(losses),
                loss_max=max(losses),
                seeds=len(at),
                values=losses,
            )
        )
    return out


def _choose_law(d: list[float], loss: list[float], bootstrap: int, seed: Any) -> FormChoice:
    """Both L(D) forms fitted to one family's points (every seed's row), and the one AICc
    supports (`scaling.identify.choose_form`). Both draw the same resamples (one seed)."""
    with_floor = fit_or_reason(d, loss, bootstrap=bootstrap, seed=seed)
    without_floor = fit_or_reason(d, loss, bootstrap=bootstrap, seed=seed, floor=False)
    return choose_form(with_floor, without_floor)


def _analyse_family(
    points: list[Point], bootstrap: int, seed: np.random.SeedSequence
) -> FamilyAnalysis:
    """One model size: points, both L(D) forms and the one chosen, its curve with prediction
    band, plateau test."""
    budgets = _budget_points(points)
    losses = [p.loss for p in points]
    choice = _choose_law([float(p.row.data_utterances) for p in points], losses, bootstrap, seed)
    fit, floor = choice.chosen, min(losses)
    first = points[0].row
    summary = fit_json(fit, floor) | {
        "selection": choice.to_json(),
        "alternatives": {
            LAW_TEXT["data"]: fit_json(choice.with_floor, floor),
            LAW_TEXT["power"]: fit_json(choice.without_floor, floor),
        },
    }
    return FamilyAnalysis(
        kind=first.kind,
        params=first.params,
        points=budgets,
        fit=summary,
        curve=_curve(fit, [b.d for b in budgets]),
        plateau=plateau_test(fit, [b.d for b in budgets], [b.loss for b in budgets]),
    )


def _curve(fit: PowerLawFit, d_points: list[float]) -> dict[str, list[float]]:
    """The fitted law and its 95 % prediction band from 1/1.5 of the smallest budget to twice
    the largest (empty without a usable fit)."""
    if not fit.ok:
        return {"d": [], "loss": [], "lo": [], "hi": []}
    d = np.logspace(np.log10(min(d_points) / 1.5), np.log10(max(d_points) * 2), CURVE_POINTS)
    mid, lo, hi = fit.band(d)
    return {"d": d.tolist(), "loss": mid.tolist(), "lo": lo.tolist(), "hi": hi.tolist()}


# ---------------------------------------------------------------------------------------------
# Joint law, frontier, extrapolation


def _frontier_point(point: Point) -> dict[str, Any]:
    row = point.row
    return {
        "trial": row.trial,
        "n": row.params,
        "d": row.data_utterances,
        "flops": row.train_flops or 0.0,
        "loss": point.loss,
    }


def _analyse_joint(
    points: list[Point], bootstrap: int, seed: np.random.SeedSequence
) -> tuple[PowerLawFit | None, dict[str, Any] | None]:
    """The joint law on neural points; None unless ≥ 2 sizes and ≥ 2 budgets."""
    sizes = sorted({(float(p.row.params), p.row.family) for p in points})
    budgets = {float(p.row.data_utterances) for p in points}
    if len({n for n, _ in sizes}) < 2 or len(budgets) < 2:
        return None, None
    fit = fit_or_reason(
        [float(p.row.data_utterances) for p in points],
        [p.loss for p in points],
        [float(p.row.params) for p in points],
        bootstrap=bootstrap,
        seed=seed,
    )
    summary = fit_json(fit, min(p.loss for p in points))
    summary["sizes"] = [name for _, name in sizes]
    summary["forecast"] = _forecast(fit, points, sizes) if fit.ok else None
    summary["surface"] = _surface(fit, points) if fit.ok else None
    return fit, summary


def _surface(fit: PowerLawFit, points: list[Point]) -> dict[str, Any]:
    """The joint law on a SURFACE_POINTS² log grid reaching past the trials (the point of a
    joint fit is what lies beyond them): the iso-loss figure draws this, so it never needs a
    parameter the data do not identify."""
    n = [float(p.row.params) for p in points]
    d = [float(p.row.data_utterances) for p in points]
    grid_n = np.geomspace(min(n) / 2, max(n) * 8, SURFACE_POINTS)
    grid_d = np.geomspace(min(d) / 2, max(d) * 8, SURFACE_POINTS)
    dd, nn = np.meshgrid(grid_d, grid_n)
    loss = fit.predict(dd.ravel(), nn.ravel()).reshape(dd.shape)
    return {"d": grid_d.tolist(), "n": grid_n.tolist(), "loss": loss.tolist()}


def _forecast(
    fit: PowerLawFit, points: list[Point], sizes: list[tuple[float, str]]
) -> dict[str, Any]:
    """At the largest budget: one more model size (n_max × the ratio of the two largest) vs
    twice the data. Ranges are 95 % prediction intervals; the difference's is a confidence
    interval (both options share the law's noise, so it cancels)."""
    n_values = sorted({n for n, _ in sizes})
    n_max, n_prev = n_values[-1], n_values[-2]
    d_max = max(float(p.row.data_utterances) for p in points)
    n_next = n_max * n_max / n_prev
    queries_d, queries_n = [d_max, d_max, 2 * d_max], [n_max, n_next, n_max]
    mid, lo, hi = fit.band(queries_d, queries_n)
    reps = fit.replicate_predictions(queries_d, queries_n)
    diff = reps[:, 1] - reps[:, 2]
    diff_lo, diff_hi = percentiles(diff, LEVEL) if len(diff) else (math.nan, math.nan)
    return {
        "d_max": d_max,
        "n_max": n_max,
        "n_next": n_next,
        "loss_now": mid[0],
        "loss_next_size": [mid[1], lo[1], hi[1]],
        "loss_2x_data": [mid[2], lo[2], hi[2]],
        "next_size_minus_2x_data": [mid[1] - mid[2], diff_lo, diff_hi],
    }


def _extrapolation(
    usable: list[Point],
    by_family: dict[str, list[Point]],
    joint_points: list[Point],
    bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """Per family and joint: refit without the largest budget, predict it."""
    per_family = {
        name: _extrapolate_family(points, bootstrap, _child_seed(seed, f"extrapolation/{name}"))
        for name, points in by_family.items()
    }
    joint, joint_message = None, "needs ≥ 2 neural sizes and ≥ 3 budgets"
    if len({p.row.params for p in joint_points}) >= 2:
        joint, joint_message = _extrapolate_joint(
            joint_points, bootstrap, _child_seed(seed, "extrapolation/joint")
        )
    d_all = [float(p.row.data_utterances) for p in usable]
    return {
        "dropped_d": max(d_all) if d_all else None,
        "families": per_family,
        "joint": joint,
        "joint_message": joint_message,
    }


def _extrapolate_family(points: list[Point], bootstrap: int, seed: Any) -> dict[str, Any]:
    """One family's check with the L(D) form AICc chooses on the points below the largest
    budget (the form is chosen as a forecaster would, without the point it predicts); a
    refit that cannot run, or has no residual degree of freedom, gives ok False, a message
    and Nones."""
    d = [float(p.row.data_utterances) for p in points]
    loss = [p.loss for p in points]
    try:
        results = {
            floor: extrapolation_check(d, loss, bootstrap=bootstrap, seed=seed, floor=floor)
            for floor in (True, False)
        }
    except ValueError as err:
        return _failed_check(str(err))
    choice = choose_form(results[True]["fit"], results[False]["fit"])
    result = results[choice.chosen.form == "data"]
    if not result["checks"]:
        return _failed_check(result["message"]) | {"law": LAW_TEXT[choice.chosen.form]}
    check = {k: v for k, v in result["checks"][0].items() if k != "n"}
    return check | {"ok": True, "message": result["message"], "law": LAW_TEXT[choice.chosen.form]}


def _extrapolate_joint(
    points: list[Point], bootstrap: int, seed: Any
) -> tuple[dict[str, Any] | None, str | None]:
    """The joint law's check per size name, or (None, why not)."""
    names = {float(p.row.params): p.row.family for p in points}
    try:
        result = extrapolation_check(
            [float(p.row.data_utterances) for p in points],
            [p.loss for p in points],
            [float(p.row.params) for p in points],
            bootstrap=bootstrap,
            seed=seed,
        )
    except ValueError as err:
        return None, str(err)
    if not result["checks"]:
        return None, result["message"]
    checks = {
        names[c["n"]]: {k: v for k, v in c.items() if k != "n"}
        | {"ok": True, "message": result["fit"].message}
        for c in result["checks"]
    }
    return checks, None


def _failed_check(message: str | None) -> dict[str, Any]:
    return {
        "ok": False,
        "message": message,
        "d": None,
        "predicted": None,
        "interval": [None, None],
        "actual": None,
        "relative_error": None,
        "covered": None,
        "n_points": None,
    }

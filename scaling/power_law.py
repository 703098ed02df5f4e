"""Fitting one power law to points: `fit_power_law` → `PowerLawFit`, with bootstrap intervals.

Data that cannot identify the parameters gives a failed fit with a message (`_identifiability`);
invalid data raises ValueError naming the column.

Bootstrap. Points are resampled with replacement (a seeded `numpy.random.Generator`). A resample
that could not identify the parameters — fewer distinct values of a variable than min(3, the
number in the data), or fewer distinct points than parameters — is drawn again (a conditional
bootstrap; otherwise a 4-budget family would get nonsense β in a quarter of its replicates).
Parameter intervals are the 2.5/97.5 percentiles of the replicates. Replicates do not rerun the
start grid: each starts from the full-data optimum and those other distinct local optima of the
full-data grid whose objective is within RIVAL_RATIO of the best (none, on the Chinchilla
data), all replicates together in the vectorised L-BFGS (`scaling.optimise`). On the Chinchilla
data this reaches the full 4,500-start grid's optimum on every resample tried (objective within
2e-12, `bench/fit_epoch.py --verify`, and a slow test).

Prediction intervals (`PowerLawFit.band`) answer "where would a new measurement fall": each
replicate's prediction plus one residual of the full-data fit, drawn with replacement, in log
space; residuals are inflated by sqrt(n / (n − p)) because fitted residuals understate the
noise. The band is the 2.5/97.5 percentiles of those. Confidence intervals of derived quantities
(the gain of doubling data) use the replicates without the residual.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scaling.formatting import json_safe
from scaling.law import (
    HUBER_DELTA,
    LAW_TEXT,
    PARAM_NAMES,
    Form,
    natural_params,
    predict_log_loss,
    start_grid,
)
from scaling.optimise import GRID_FTOL, GRID_MAX_ITER, minimise_from_starts, one_blas_thread, polish

__all__ = [
    "BOOTSTRAP_STARTS",
    "LEVEL",
    "PowerLawFit",
    "fit_or_reason",
    "fit_power_law",
    "percentiles",
]

LEVEL = 0.95
BOOTSTRAP_STARTS = 5
"""Most starts per bootstrap replicate: the full-data optimum + the next-best distinct optima."""
RIVAL_RATIO = 2.0
"""Another optimum starts bootstrap replicates only if its full-data objective is within this
factor of the best: a resample rescales every optimum's summed loss alike, so a far worse one
never wins, and starting there only costs a long crawl across a flat L1-like landscape."""
POLISH_CANDIDATES = 5  # distinct grid end points polished with scipy
BASIN_TOLERANCE = 1e-2  # one optimum: log predictions at the data agree within this


def percentiles(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The central `level` interval of `values` along axis 0: (lower, upper) percentiles."""
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail], axis=0)
    return lo, hi


@dataclass(frozen=True, eq=False)
class PowerLawFit:
    """A fitted law with its bootstrap replicates. Build it with `fit_power_law`."""

    form: Form
    ok: bool
    message: str | None = None
    """Why the fit is not ok, or a caveat about an ok one."""
    theta: np.ndarray | None = None
    """Best log-space parameters [e, (a,) b, (α,) β]."""
    objective: float = math.nan
    rss: float = math.nan
    """Sum of squared log residuals of the full-data fit (for AICc, `scaling.identify`)."""
    n_points: int = 0
    boot_theta: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    """One row of θ per bootstrap replicate."""
    boot_noise: np.ndarray = field(default_factory=lambda: np.empty(0))
    """One resampled (inflated) log residual per replicate, for prediction intervals."""
    other_optima: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    """The next-best distinct optima the grid found (θ rows): bootstrap starts."""
    seconds: float = 0.0

    @property
    def params(self) -> dict[str, float]:
        """E, (A,) B, (alpha,) beta in natural units; NaN when the fit is not ok."""
        names = PARAM_NAMES[self.form]
        if self.theta is None:
            return dict.fromkeys(names, math.nan)
        return dict(
            zip(names, natural_params(self.theta[None, :], self.form)[0].tolist(), strict=True)
        )

    @property
    def intervals(self) -> dict[str, tuple[float, float]]:
        """95 % percentile bootstrap interval per parameter; NaN without replicates."""
        names = PARAM_NAMES[self.form]
        if not len(self.boot_theta):
            return {name: (math.nan, math.nan) for name in names}
        lo, hi = percentiles(natural_params(self.boot_theta, self.form), LEVEL)
        return {name: (float(lo[i]), float(hi[i])) for i, name in enumerate(names)}

    def predict(self, d: Any, n: Any = None) -> np.ndarray:
        """L at budgets `d` (and sizes `n`, joint form; broadcast against each other)."""
        if self.theta is None:
            raise ValueError(f"the fit is not usable: {self.message}")
        return np.exp(predict_log_loss(self.theta, self._logx(d, n)))

    def replicate_predictions(self, d: Any, n: Any = None) -> np.ndarray:
        """L under every bootstrap replicate (R × Q), without residual noise."""
        logx = self._logx(d, n)
        if not len(self.boot_theta):
            return np.empty((0, len(logx)))
        return np.exp(predict_log_loss(self.boot_theta, logx))

    def band(
        self, d: Any, n: Any = None, *, noise: bool = True, level: float = LEVEL
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prediction, lower, upper) at each query. noise=True: a prediction interval for a
        new measurement (replicate + resampled residual); False: a confidence interval for the
        law itself. Bounds are NaN without bootstrap replicates."""
        mid = self.predict(d, n)
        if not len(self.boot_theta):
            return mid, np.full_like(mid, math.nan), np.full_like(mid, math.nan)
        log_reps = predict_log_loss(self.boot_theta, self._logx(d, n))
        if noise:
            log_reps = log_reps + self.boot_noise[:, None]
        lo, hi = percentiles(np.exp(log_reps), level)
        return mid, lo, hi

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary (NaN → None)."""
        return json_safe(
            {
                "ok": self.ok,
                "message": self.message,
                "form": self.form,
                **self.params,
                "intervals": self.intervals,
                "objective": self.objective,
                "rss": self.rss,
                "n_points": self.n_points,
                "bootstrap": len(self.boot_theta),
            }
        )

    def _logx(self, d: Any, n: Any) -> np.ndarray:
        if self.form != "joint":
            return np.log(np.asarray(d, dtype=float)).reshape(-1, 1)
        n_arr, d_arr = np.broadcast_arrays(np.asarray(n, dtype=float), np.asarray(d, dtype=float))
        return np.column_stack([np.log(n_arr).ravel(), np.log(d_arr).ravel()])


@one_blas_thread
def fit_power_law(
    d: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    n: Sequence[float] | np.ndarray | None = None,
    *,
    bootstrap: int = 1000,
    seed: int | np.random.SeedSequence = 0,
    delta: float = HUBER_DELTA,
    names: tuple[str, str, str] = ("d", "loss", "n"),
    floor: bool = True,
) -> PowerLawFit:
    """Fit L(D) = E + B/D^β (n None), L(D) = B/D^β (n None, floor=False) or L(N, D) =
    E + A/N^α + B/D^β, with `bootstrap` replicates. Data that cannot determine the parameters
    (too few distinct budgets or sizes) gives `ok=False` and a message; invalid data
    (non-finite or non-positive values, all losses equal) raises ValueError naming the column
    (`names`: labels of d, loss, n)."""
    start_time = time.perf_counter()
    if n is not None and not floor:
        raise ValueError("the joint law always has its floor E (floor=False is for L(D))")
    form: Form = "joint" if n is not None else "data" if floor else "power"
    logx, logy = _log_inputs(d, loss, n, names)
    problem, caveat = _identifiability(logx, form, names)
    if problem:
        return PowerLawFit(form=form, ok=False, message=problem, n_points=len(logy))
    _require_spread(logy, names[1])
    grid = start_grid(form)
    ends, objectives = minimise_from_starts(
        grid, logx, logy, delta=delta, ftol=GRID_FTOL, max_iter=GRID_MAX_ITER
    )
    theta, objective, other_optima = _best_optimum(ends, objectives, logx, logy, delta)
    rng = np.random.default_rng(seed)
    boot_theta = _bootstrap(theta, other_optima, logx, logy, bootstrap, rng, delta)
    noise = _residual_draws(theta, logx, logy, len(boot_theta), rng)
    return PowerLawFit(
        form=form,
        ok=True,
        message=caveat,
        theta=theta,
        objective=objective,
        rss=float(np.sum((logy - predict_log_loss(theta, logx)) ** 2)),
        n_points=len(logy),
        boot_theta=boot_theta,
        boot_noise=noise,
        other_optima=other_optima,
        seconds=time.perf_counter() - start_time,
    )


def fit_or_reason(
    d: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    n: Sequence[float] | np.ndarray | None = None,
    *,
    bootstrap: int = 1000,
    seed: int | np.random.SeedSequence = 0,
    floor: bool = True,
) -> PowerLawFit:
    """`fit_power_law`, or a failed fit (ok False) carrying the ValueError's message (e.g.
    every value equal): one bad family never stops a report or a forecast."""
    try:
        return fit_power_law(d, loss, n, bootstrap=bootstrap, seed=seed, floor=floor)
    except ValueError as err:
        form: Form = "joint" if n is not None else "data" if floor else "power"
        return PowerLawFit(form=form, ok=False, message=str(err))


def _log_inputs(
    d: Any, loss: Any, n: Any, names: tuple[str, str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Validated log x (n × K) and log loss."""
    d_name, loss_name, n_name = names
    loss_arr = _positive_column(loss, loss_name)
    columns = [(n, n_name)] if n is not None else []
    columns.append((d, d_name))
    logx = [np.log(_positive_column(values, name)) for values, name in columns]
    for values, (_, name) in zip(logx, columns, strict=True):
        if len(values) != len(loss_arr):
            raise ValueError(
                f"'{name}' has {len(values)} values but '{loss_name}' has {len(loss_arr)}"
            )
    return np.column_stack(logx), np.log(loss_arr)


def _require_spread(logy: np.ndarray, name: str) -> None:
    if np.ptp(logy) == 0:
        raise ValueError(
            f"'{name}': all {len(logy)} values equal {math.exp(logy[0]):g}; "
            "a power law cannot be fitted to a flat line"
        )


def _positive_column(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    if not arr.size:
        raise ValueError(f"'{name}' is empty")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr <= 0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"'{name}' must be finite and > 0: value {float(arr[i])!r} at index {i} "
            f"({bad.size} bad value(s) in all)"
        )
    return arr


def _identifiability(
    logx: np.ndarray, form: Form, names: tuple[str, str, str]
) -> tuple[str | None, str | None]:
    """(problem that stops the fit, caveat for a fit that runs)."""
    n_params = len(PARAM_NAMES[form])
    distinct = [len(np.unique(logx[:, j])) for j in range(logx.shape[1])]
    points = len(np.unique(logx, axis=0))
    labels = [names[0]] if form != "joint" else [names[2], names[0]]
    counts = dict(zip(labels, distinct, strict=True))
    described = ", ".join(f"{count} distinct '{label}'" for label, count in counts.items())
    if form != "joint" and distinct[0] < 3:  # B/D^β too: two budgets leave nothing to test it
        return f"{described} values; {LAW_TEXT[form]} needs at least 3", None
    if min(distinct) < 2 or points < n_params:
        return (
            f"{points} distinct points ({described}); the joint law needs ≥ {n_params} points "
            "and ≥ 2 values of each variable",
            None,
        )
    few = [f"'{label}'" for label, count in counts.items() if count < 3]
    if len(logx) <= n_params:
        return None, (
            f"only {len(logx)} points for {n_params} parameters: neither the bootstrap nor the "
            "residuals can measure the uncertainty, so the intervals are (nearly) zero-width"
        )
    if few:
        return None, (
            f"fewer than 3 distinct values of {' and '.join(few)}: not every parameter is "
            "identifiable from these points, so the intervals are wide"
        )
    return None, None


def _best_optimum(
    ends: np.ndarray,
    objectives: np.ndarray,
    logx: np.ndarray,
    logy: np.ndarray,
    delta: float,
) -> tuple[np.ndarray, float, np.ndarray]:
    """Polish the best distinct end points with scipy's L-BFGS-B. Returns the best optimum, its
    objective and the other distinct optima, best first (θ rows)."""
    candidates = _distinct_optima(ends, objectives, logx, POLISH_CANDIDATES)
    optima = []
    for i in candidates:
        theta, f = polish(ends[i], logx, logy, None, delta)
        optima.append((theta, f) if f <= objectives[i] else (ends[i], float(objectives[i])))
    thetas = np.array([theta for theta, _ in optima])
    values = np.array([f for _, f in optima])
    distinct = _distinct_optima(thetas, values, logx, BOOTSTRAP_STARTS)  # polishing may merge
    best = distinct[0]
    others = [i for i in distinct[1:] if values[i] <= RIVAL_RATIO * values[best]]
    return thetas[best], float(values[best]), thetas[others].reshape(-1, ends.shape[1])


def _distinct_optima(
    ends: np.ndarray, objectives: np.ndarray, logx: np.ndarray, count: int
) -> list[int]:
    """Indices of the `count` best end points that are different optima: their predictions at
    the data differ by more than BASIN_TOLERANCE somewhere (comparing θ would split one optimum
    along its flat directions, e.g. E → 0 where e no longer matters)."""
    chosen: list[int] = []
    predictions: list[np.ndarray] = []
    for i in np.argsort(np.where(np.isfinite(objectives), objectives, np.inf)):
        if not np.isfinite(objectives[i]) or len(chosen) == count:
            break
        prediction = predict_log_loss(ends[i], logx)
        if all(np.abs(prediction - other).max() > BASIN_TOLERANCE for other in predictions):
            chosen.append(int(i))
            predictions.append(prediction)
    return chosen


def _bootstrap(
    theta: np.ndarray,
    other_optima: np.ndarray,
    logx: np.ndarray,
    logy: np.ndarray,
    replicates: int,
    rng: np.random.Generator,
    delta: float,
) -> np.ndarray:
    """Best θ of each resample (R × P), started from the full-data optimum and the other
    distinct optima of the full-data grid."""
    if replicates <= 0:
        return np.empty((0, len(theta)))
    counts = _resample_counts(rng, logx, replicates, len(theta)).astype(float)
    starts = np.vstack([theta[None, :], other_optima])
    k = len(starts)
    x0 = np.tile(starts, (replicates, 1))  # replicate r owns rows r*k .. r*k + k − 1
    weights = np.repeat(counts, k, axis=0)
    ends, objectives = minimise_from_starts(x0, logx, logy, weights, delta=delta)
    objectives = np.where(np.isfinite(objectives), objectives, np.inf).reshape(replicates, k)
    best = np.argmin(objectives, axis=1)
    return ends.reshape(replicates, k, -1)[np.arange(replicates), best]


def _resample_counts(
    rng: np.random.Generator, logx: np.ndarray, replicates: int, n_params: int
) -> np.ndarray:
    """How often each point is drawn (R × n); resamples that cannot identify the law are drawn
    again (up to 100 times, then kept as they are)."""
    n = len(logx)
    variables = [np.unique(logx[:, j], return_inverse=True)[1] for j in range(logx.shape[1])]
    points = np.unique(logx, axis=0, return_inverse=True)[1].ravel()
    needs = [min(3, codes.max() + 1) for codes in variables] + [min(n_params, points.max() + 1)]
    counts = np.zeros((replicates, n), dtype=np.int64)
    todo = np.arange(replicates)
    for _ in range(100):
        draws = rng.integers(0, n, size=(len(todo), n))
        drawn = _row_bincount(draws, n)
        good = _enough_distinct(drawn > 0, [*variables, points], needs)
        counts[todo] = drawn
        todo = todo[~good]
        if not todo.size:
            break
    return counts


def _row_bincount(draws: np.ndarray, n: int) -> np.ndarray:
    offsets = (draws + n * np.arange(len(draws))[:, None]).ravel()
    return np.bincount(offsets, minlength=len(draws) * n).reshape(len(draws), n)


def _enough_distinct(present: np.ndarray, codes: list[np.ndarray], needs: list[int]) -> np.ndarray:
    """Per resample (rows of `present`, R × n): does every coding of the points (value of N,
    of D, the (N, D) pair) keep at least its `need` distinct values?"""
    rows, cols = np.nonzero(present)
    good = np.ones(len(present), dtype=bool)
    for code, need in zip(codes, needs, strict=True):
        seen = np.zeros((len(present), code.max() + 1), dtype=bool)
        seen[rows, code.ravel()[cols]] = True
        good &= seen.sum(axis=1) >= need
    return good


def _residual_draws(
    theta: np.ndarray, logx: np.ndarray, logy: np.ndarray, replicates: int, rng: np.random.Generator
) -> np.ndarray:
    """One observed-minus-fitted log residual per replicate, inflated by sqrt(n / (n − p))."""
    residuals = logy - predict_log_loss(theta, logx)
    n, p = len(logy), len(theta)
    inflation = math.sqrt(n / (n - p)) if n > p else 1.0
    return inflation * residuals[rng.integers(0, n, size=replicates)]

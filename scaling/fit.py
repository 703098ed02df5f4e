"""Scaling-law fits: L(D) = E + B/D^β per model size and L(N, D) = E + A/N^α + B/D^β jointly.

The method is Epoch AI's replication of Chinchilla's approach 3 (Besiroglu et al. 2024):

* parameters live in log space, E = e^e, A = e^a, B = e^b, so the model is
  log L = logsumexp(e, a − α log N, b − β log D);
* the objective is the Huber loss (δ = 1e-3) of the log residuals, SUMMED over points (an
  average with a default-tolerance optimiser stops early: that is how the original paper got
  E 1.69, β 0.28);
* L-BFGS with analytic gradients from the grid α, β ∈ {0, 0.5, …, 2}, e ∈ {−1, −0.5, …, 1},
  a, b ∈ {0, 5, …, 25}; the best end point wins.

Speed. Running scipy's L-BFGS-B from all 4,500 joint-grid starts costs minutes, so:

1. the whole grid runs as ONE vectorised L-BFGS (`_lbfgs_batch`: every start keeps its own
   history and Armijo line search, with the analytic gradient; it only has to find the best
   basin, so it stops at a relative objective change of GRID_FTOL);
2. the best distinct end points are polished with `scipy.optimize.minimize(method="L-BFGS-B",
   jac=True)` at ftol 1e-15, gtol 1e-12 — the reported optimum is a scipy L-BFGS-B optimum;
3. bootstrap replicates do not rerun the grid: each starts from the full-data optimum and those
   other distinct local optima of the full-data grid whose objective is within RIVAL_RATIO of
   the best (none, on the Chinchilla data), all replicates together in the vectorised L-BFGS
   with the resample counts as point weights, at the tight FTOL. On the Chinchilla data this
   reaches the full 4,500-start grid's optimum on every resample tried (objective within
   2e-12, `bench/fit_epoch.py --verify`, and a slow test). The batched grid finds the same
   optimum as scipy's L-BFGS-B run from each start (every 20th start of the joint grid on the
   Chinchilla data, `--scipy-every`; every start of the L(D) grid in a test).

BLAS runs on one thread inside the public entry points (threadpoolctl, when installed): the
matrices are tiny, and a second OpenBLAS thread made scipy's L-BFGS-B 30× slower on a busy
machine.

Bootstrap. Points are resampled with replacement (a seeded `numpy.random.Generator`). A resample
that could not identify the parameters — fewer distinct values of a variable than min(3, the
number in the data), or fewer distinct points than parameters — is drawn again (a conditional
bootstrap; otherwise a 4-budget family would get nonsense β in a quarter of its replicates).
Parameter intervals are the 2.5/97.5 percentiles of the replicates.

Prediction intervals (`PowerLawFit.band`) answer "where would a new measurement fall": each
replicate's prediction plus one residual of the full-data fit, drawn with replacement, in log
space; residuals are inflated by sqrt(n / (n − p)) because fitted residuals understate the
noise. The band is the 2.5/97.5 percentiles of those. Confidence intervals of derived quantities
(the gain of doubling data) use the replicates without the residual.

Metrics where higher is better (SIM) are fitted as 1 − SIM, so "loss" below always means the
fitted, lower-is-better quantity.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.optimize import minimize

try:  # pinned in requirements.lock (scikit-learn needs it); optional here, only for speed
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

__all__ = [
    "BOOTSTRAP_STARTS",
    "HUBER_DELTA",
    "METRIC_TRANSFORMS",
    "PARAM_NAMES",
    "Form",
    "PowerLawFit",
    "analyse_results",
    "compute_frontier",
    "compute_optimal_allocation",
    "extrapolation_check",
    "fit_power_law",
    "huber_objective",
    "minimise_from_starts",
    "plateau_test",
    "predict_log_loss",
    "start_grid",
]

Form = Literal["data", "joint"]
"""`data`: L(D) = E + B/D^β (one model size). `joint`: L(N, D) = E + A/N^α + B/D^β."""

PARAM_NAMES: dict[str, tuple[str, ...]] = {
    "data": ("E", "B", "beta"),
    "joint": ("E", "A", "B", "alpha", "beta"),
}
HUBER_DELTA = 1e-3
LEVEL = 0.95
BOOTSTRAP_STARTS = 5
"""Most starts per bootstrap replicate: the full-data optimum + the next-best distinct optima."""
RIVAL_RATIO = 2.0
"""Another optimum starts bootstrap replicates only if its full-data objective is within this
factor of the best: a resample rescales every optimum's summed loss alike, so a far worse one
never wins, and starting there only costs a long crawl across a flat L1-like landscape."""

GRID_E = (-1.0, -0.5, 0.0, 0.5, 1.0)
GRID_LOG_COEF = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)  # a and b
GRID_EXPONENT = (0.0, 0.5, 1.0, 1.5, 2.0)  # α and β

# Stopping rules. The batched L-BFGS stops a start when an iteration lowers the objective by
# less than FTOL of itself (scipy divides by max(|f|, 1) instead: with a summed Huber of ~1e-3
# that is an absolute 1e-12, i.e. looser), or its largest gradient component is below GTOL.
# The grid only has to find the best basin (its best end points are then polished by scipy at
# POLISH_*, far tighter than scipy's defaults ftol 2.2e-9, gtol 1e-5); bootstrap replicates are
# not polished, so they run at the tight FTOL.
FTOL = 1e-12
GTOL = 1e-10
MAX_ITER = 1000
GRID_FTOL = 1e-10
GRID_MAX_ITER = 200  # the starts still crawling by then are in flat, poor regions
POLISH_FTOL = 1e-15
POLISH_GTOL = 1e-12
POLISH_CANDIDATES = 5  # distinct grid end points polished with scipy
LBFGS_MEMORY = 10  # scipy's default `maxcor`
HANDOFF = 6
"""When this few problems remain in a batch, each goes on in scipy's L-BFGS-B instead: a Python
iteration of the batch costs ~1 ms whatever its size, scipy's compiled loop ~0.1 ms a problem,
and the last few are the slow crawlers of a nearly piecewise-linear (δ = 1e-3 Huber) surface."""
BASIN_TOLERANCE = 1e-2  # one optimum: log predictions at the data agree within this
_BLOCK_CELLS = 2**15  # starts × points evaluated together: arrays stay in cache, calls stay few
_COVERAGE_RTOL = 1e-9  # an interval of zero width still covers its own value
CURVE_POINTS = 60
MIN_GAIN = 0.005

METRIC_TRANSFORMS: dict[str, str | None] = {"val_loss": None, "wer": None, "sim": "1 - sim"}
"""Metric → transform applied before fitting (the fit needs lower-is-better, → 0 is best)."""


def _one_blas_thread(func: Callable) -> Callable:
    """Run `func` with BLAS/LAPACK on one thread. Every call here is tiny (L-BFGS-B's 5 × 10
    matrices); a second OpenBLAS thread only spins, and on a busy machine that made scipy's
    L-BFGS-B 30× slower."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        limits = threadpool_limits(1, user_api="blas") if threadpool_limits else None
        with limits or contextlib.nullcontext():
            return func(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------------------------------------
# The model and its objective. θ = [e, c_1..c_K, γ_1..γ_K] with log x = [log N, log D] (joint,
# θ = [e, a, b, α, β]) or [log D] (data form, θ = [e, b, β]).


def predict_log_loss(theta: np.ndarray, logx: np.ndarray) -> np.ndarray:
    """log L at `logx` (Q × K) for one θ (P,) → (Q,), or for many (R × P) → (R × Q)."""
    theta = np.asarray(theta, dtype=float)
    single = theta.ndim == 1
    log_loss, _, _ = _log_loss_parts(np.atleast_2d(theta), np.asarray(logx, dtype=float))
    return log_loss[0] if single else log_loss


def _log_loss_parts(
    theta: np.ndarray, logx: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """log L (B × Q), each term's exp relative to the largest term, and their sum (each
    term's share of L is part / total)."""
    k = logx.shape[1]
    e = theta[:, :1]
    terms = [theta[:, 1 + j, None] - theta[:, 1 + k + j, None] * logx[:, j] for j in range(k)]
    top = e
    for term in terms:
        top = np.maximum(top, term)  # logsumexp: shift by the largest term, never overflow
    parts = [np.exp(e - top), *(np.exp(term - top) for term in terms)]
    total = parts[0] + parts[1]
    for part in parts[2:]:
        total += part
    return top + np.log(total), parts, total


def _objective_block(
    theta: np.ndarray,
    logx: np.ndarray,
    logy: np.ndarray,
    weights: np.ndarray | None,
    delta: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Summed Huber objective (B,) and its gradient (B × P) for a block of parameter vectors."""
    k = logx.shape[1]
    log_loss, parts, total = _log_loss_parts(theta, logx)
    residual = log_loss - logy
    clipped = np.clip(residual, -delta, delta)  # = Huber'(r)
    huber = clipped * (residual - 0.5 * clipped)  # r²/2 inside ±δ, δ(|r| − δ/2) outside
    if weights is not None:
        huber *= weights
        clipped *= weights
    clipped /= total  # ∂ log L / ∂ term = part / total
    grad = np.empty_like(theta)
    grad[:, 0] = (clipped * parts[0]).sum(axis=1)
    for j in range(k):
        dterm = clipped * parts[1 + j]
        grad[:, 1 + j] = dterm.sum(axis=1)
        grad[:, 1 + k + j] = -(dterm @ logx[:, j])
    return huber.sum(axis=1), grad


def _objective_batch(
    theta: np.ndarray,
    logx: np.ndarray,
    logy: np.ndarray,
    weights: np.ndarray | None,
    delta: float,
) -> tuple[np.ndarray, np.ndarray]:
    """`_objective_block` over any number of parameter vectors, a cache-sized block at a time."""
    f = np.empty(len(theta))
    grad = np.empty_like(theta)
    block = max(16, _BLOCK_CELLS // len(logy))
    for lo in range(0, len(theta), block):
        rows = slice(lo, lo + block)
        block_weights = None if weights is None else weights[rows]
        f[rows], grad[rows] = _objective_block(theta[rows], logx, logy, block_weights, delta)
    return f, grad


def huber_objective(
    theta: np.ndarray,
    logx: np.ndarray,
    logy: np.ndarray,
    weights: np.ndarray | None = None,
    delta: float = HUBER_DELTA,
) -> tuple[float, np.ndarray]:
    """Σ w_i Huber_δ(log L_pred,i − log L_obs,i) and its analytic gradient, for scipy."""
    block_weights = None if weights is None else weights[None, :]
    f, grad = _objective_block(np.asarray(theta)[None, :], logx, logy, block_weights, delta)
    return float(f[0]), grad[0]


# ---------------------------------------------------------------------------------------------
# Optimisers


def _lbfgs_direction(
    grad: np.ndarray, s: np.ndarray, y: np.ndarray, n_hist: np.ndarray
) -> np.ndarray:
    """−H·g by the L-BFGS two-loop recursion, for a batch. s, y: (B × m × P) oldest first;
    only each element's newest n_hist slots count (the others get ρ = 0 and change nothing).
    Cheaper than the compact matrix form here: that needs a small LU solve per element."""
    memory = s.shape[1]
    sy = np.einsum("bmp,bmp->bm", s, y)
    valid = (np.arange(memory) >= memory - n_hist[:, None]) & (sy > 0)
    rho = np.where(valid, 1.0 / np.where(valid, sy, 1.0), 0.0)
    q = grad.copy()
    alpha = np.zeros((len(grad), memory))
    for j in range(memory - 1, -1, -1):  # newest to oldest
        alpha[:, j] = rho[:, j] * np.einsum("bp,bp->b", s[:, j], q)
        q -= alpha[:, j, None] * y[:, j]
    yy = np.einsum("bp,bp->b", y[:, -1], y[:, -1])
    gamma = np.where(valid[:, -1] & (yy > 0), sy[:, -1] / np.where(yy > 0, yy, 1.0), 1.0)
    r = gamma[:, None] * q
    for j in range(memory):  # oldest to newest
        beta = rho[:, j] * np.einsum("bp,bp->b", y[:, j], r)
        r += s[:, j] * (alpha[:, j] - beta)[:, None]
    return -r


def _armijo_step(
    fg: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    idx: np.ndarray,
    x: np.ndarray,
    f: np.ndarray,
    direction: np.ndarray,
    slope: np.ndarray,
    step: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backtracking line search (sufficient decrease, c1 = 1e-4) for every element at once.
    Returns new x, f, grad and which elements found a step."""
    new_x, new_f = x.copy(), f.copy()
    new_g = np.zeros_like(x)
    found = np.zeros(len(x), dtype=bool)
    pending = np.arange(len(x))
    for attempt in range(20):
        trial = x[pending] + step[pending, None] * direction[pending]
        f_trial, g_trial = fg(trial, idx[pending])
        ok = f_trial <= f[pending] + 1e-4 * step[pending] * slope[pending]  # NaN → not ok
        done = pending[ok]
        new_x[done], new_f[done], new_g[done] = trial[ok], f_trial[ok], g_trial[ok]
        found[done] = True
        pending = pending[~ok]
        if not pending.size:
            break
        step[pending] *= 0.5 if attempt < 3 else 0.1
    return new_x, new_f, new_g, found


def _lbfgs_batch(
    fg: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    x0: np.ndarray,
    *,
    ftol: float = FTOL,
    gtol: float = GTOL,
    max_iter: int = MAX_ITER,
    memory: int = LBFGS_MEMORY,
    handoff: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Minimise independent problems together: `fg(x, idx)` gives objective and gradient of the
    problems `idx` at the rows of `x`. Each keeps its own L-BFGS history and stops when an
    iteration lowers its objective by ≤ ftol of itself, its largest gradient component is
    ≤ gtol, or its line search finds no decrease (the optimum to machine precision). Returns
    x, f, which are unfinished and the iterations run: it stops at max_iter, or as soon as at
    most `handoff` problems remain (see HANDOFF)."""
    x = np.array(x0, dtype=float)
    n, p = x.shape
    f, grad = fg(x, np.arange(n))
    hist_s, hist_y = np.zeros((n, memory, p)), np.zeros((n, memory, p))
    n_hist, head = np.zeros(n, dtype=int), np.zeros(n, dtype=int)
    active = np.isfinite(f) & (np.abs(grad).max(axis=1) > gtol)
    iteration = 0
    while iteration < max_iter:
        idx = np.flatnonzero(active)
        if idx.size <= handoff:
            break
        iteration += 1
        order = (head[idx, None] + np.arange(memory)) % memory  # ring buffer, oldest first
        rows = idx[:, None]
        g = grad[idx]
        direction = _lbfgs_direction(g, hist_s[rows, order], hist_y[rows, order], n_hist[idx])
        slope = np.einsum("bp,bp->b", g, direction)
        uphill = slope >= 0  # a stale history: restart from steepest descent
        direction[uphill] = -g[uphill]
        slope[uphill] = -np.einsum("bp,bp->b", g[uphill], g[uphill])
        n_hist[idx[uphill]] = 0
        first = n_hist[idx] == 0
        step = np.where(first, np.minimum(1.0, 1.0 / np.linalg.norm(g, axis=1)), 1.0)
        new_x, new_f, new_g, found = _armijo_step(fg, idx, x[idx], f[idx], direction, slope, step)
        active[idx[~found]] = False
        moved = np.flatnonzero(found)
        steps, grad_changes = new_x[moved] - x[idx[moved]], new_g[moved] - g[moved]
        _remember(idx[moved], steps, grad_changes, (hist_s, hist_y, n_hist, head))
        decrease = f[idx[moved]] - new_f[moved]
        scale = np.maximum(np.abs(f[idx[moved]]), np.abs(new_f[moved]))  # scale-free (see FTOL)
        x[idx[moved]], f[idx[moved]], grad[idx[moved]] = new_x[moved], new_f[moved], new_g[moved]
        stop = (decrease <= ftol * scale) | (np.abs(new_g[moved]).max(axis=1) <= gtol)
        active[idx[moved[stop]]] = False
    return x, f, active, iteration


def _remember(idx: np.ndarray, s: np.ndarray, y: np.ndarray, history: tuple) -> None:
    """Store the step pairs that keep the inverse-Hessian estimate positive definite.
    `history`: (s, y, count, next slot) arrays of every element, updated in place."""
    hist_s, hist_y, n_hist, head = history
    sy = np.einsum("bp,bp->b", s, y)
    keep = (sy > 1e-10 * np.einsum("bp,bp->b", y, y)) & (sy > 1e-200)
    idx, s, y = idx[keep], s[keep], y[keep]
    hist_s[idx, head[idx]], hist_y[idx, head[idx]] = s, y
    head[idx] = (head[idx] + 1) % hist_s.shape[1]
    n_hist[idx] = np.minimum(n_hist[idx] + 1, hist_s.shape[1])


@_one_blas_thread
def minimise_from_starts(
    starts: np.ndarray,
    logx: np.ndarray,
    logy: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    delta: float = HUBER_DELTA,
    engine: Literal["batched", "scipy"] = "batched",
    ftol: float = FTOL,
    max_iter: int = MAX_ITER,
) -> tuple[np.ndarray, np.ndarray]:
    """End points (S × P) and objectives (S,) of L-BFGS from each start. `weights` (S × n):
    per-start point weights (bootstrap counts). engine "scipy" runs scipy's L-BFGS-B from every
    start (slow; the reference the batched engine is checked against)."""
    starts = np.asarray(starts, dtype=float)
    if engine == "scipy":
        ends = [
            _polish(s, logx, logy, None if weights is None else weights[i], delta)
            for i, s in enumerate(starts)
        ]
        return np.array([e[0] for e in ends]), np.array([e[1] for e in ends])

    def fg(x: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _objective_batch(x, logx, logy, None if weights is None else weights[idx], delta)

    with np.errstate(over="ignore", invalid="ignore"):  # a wild trial step is simply rejected
        x, f, unfinished, done = _lbfgs_batch(
            fg, starts, ftol=ftol, max_iter=max_iter, handoff=HANDOFF
        )
    if done < max_iter:
        problem = (logx, logy, weights, delta)
        rest = max_iter - done
        _finish_one_by_one(x, f, np.flatnonzero(unfinished), problem, ftol=ftol, max_iter=rest)
    return x, f


def _finish_one_by_one(
    x: np.ndarray, f: np.ndarray, idx: np.ndarray, problem: tuple, *, ftol: float, max_iter: int
) -> None:
    """Continue problems `idx` in scipy's L-BFGS-B with the same tolerance and the iterations
    left; updates x and f in place. `problem`: (logx, logy, weights or None, delta)."""
    logx, logy, weights, delta = problem
    for i in idx:
        theta, value = _polish(
            x[i],
            logx,
            logy,
            None if weights is None else weights[i],
            delta,
            ftol=ftol * abs(f[i]) / max(abs(f[i]), 1.0),  # scipy's is relative to max(|f|, 1)
            max_iter=max_iter,
        )
        if value <= f[i]:
            x[i], f[i] = theta, value


def _polish(
    theta: np.ndarray,
    logx: np.ndarray,
    logy: np.ndarray,
    weights: np.ndarray | None,
    delta: float,
    *,
    ftol: float = POLISH_FTOL,
    max_iter: int = 15000,
) -> tuple[np.ndarray, float]:
    """scipy's L-BFGS-B with the analytic gradient; by default at the tightest useful
    tolerances. scipy's ftol is relative to max(|f|, 1), i.e. absolute for our f < 1."""
    with np.errstate(over="ignore", invalid="ignore"):
        result = minimize(
            huber_objective,
            theta,
            args=(logx, logy, weights, delta),
            jac=True,
            method="L-BFGS-B",
            options={
                "ftol": ftol,
                "gtol": POLISH_GTOL,
                "maxiter": max_iter,
                "maxfun": 2 * max_iter,
            },
        )
    return np.asarray(result.x), float(result.fun)


# ---------------------------------------------------------------------------------------------
# Fitting


def start_grid(form: Form) -> np.ndarray:
    """Epoch's starting points as θ rows: 4,500 for the joint form, 150 for the data form."""
    if form == "joint":
        rows = itertools.product(GRID_E, GRID_LOG_COEF, GRID_LOG_COEF, GRID_EXPONENT, GRID_EXPONENT)
    else:
        rows = itertools.product(GRID_E, GRID_LOG_COEF, GRID_EXPONENT)
    return np.array(list(rows), dtype=float)


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
        return dict(zip(names, _natural(self.theta[None, :], self.form)[0].tolist(), strict=True))

    @property
    def intervals(self) -> dict[str, tuple[float, float]]:
        """95 % percentile bootstrap interval per parameter; NaN without replicates."""
        names = PARAM_NAMES[self.form]
        if not len(self.boot_theta):
            return {name: (math.nan, math.nan) for name in names}
        lo, hi = _percentiles(_natural(self.boot_theta, self.form), LEVEL)
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
        lo, hi = _percentiles(np.exp(log_reps), level)
        return mid, lo, hi

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary (NaN → None)."""
        return _jsonable(
            {
                "ok": self.ok,
                "message": self.message,
                "form": self.form,
                **self.params,
                "intervals": self.intervals,
                "objective": self.objective,
                "n_points": self.n_points,
                "bootstrap": len(self.boot_theta),
            }
        )

    def _logx(self, d: Any, n: Any) -> np.ndarray:
        if self.form == "data":
            return np.log(np.asarray(d, dtype=float)).reshape(-1, 1)
        n_arr, d_arr = np.broadcast_arrays(np.asarray(n, dtype=float), np.asarray(d, dtype=float))
        return np.column_stack([np.log(n_arr).ravel(), np.log(d_arr).ravel()])


@_one_blas_thread
def fit_power_law(
    d: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    n: Sequence[float] | np.ndarray | None = None,
    *,
    bootstrap: int = 1000,
    seed: int | np.random.SeedSequence = 0,
    delta: float = HUBER_DELTA,
    names: tuple[str, str, str] = ("d", "loss", "n"),
) -> PowerLawFit:
    """Fit L(D) = E + B/D^β (n None) or L(N, D) = E + A/N^α + B/D^β, with `bootstrap`
    replicates. Data that cannot determine the parameters (too few distinct budgets or sizes)
    gives `ok=False` and a message; invalid data (non-finite or non-positive values, all losses
    equal) raises ValueError naming the column (`names`: labels of d, loss, n)."""
    start_time = time.perf_counter()
    form: Form = "data" if n is None else "joint"
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
        n_points=len(logy),
        boot_theta=boot_theta,
        boot_noise=noise,
        other_optima=other_optima,
        seconds=time.perf_counter() - start_time,
    )


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
    labels = [names[0]] if form == "data" else [names[2], names[0]]
    counts = dict(zip(labels, distinct, strict=True))
    described = ", ".join(f"{count} distinct '{label}'" for label, count in counts.items())
    if form == "data" and distinct[0] < 3:
        return f"{described} values; E + B/D^β needs at least 3", None
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
        theta, f = _polish(ends[i], logx, logy, None, delta)
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


def _natural(theta: np.ndarray, form: Form) -> np.ndarray:
    """Log-space rows [e, (a,) b, (α,) β] → [E, (A,) B, (alpha,) beta]."""
    k = 1 if form == "data" else 2
    out = theta.copy()
    with np.errstate(over="ignore"):  # a degenerate bootstrap replicate may run off to inf
        out[:, : 1 + k] = np.exp(theta[:, : 1 + k])
    return out


def _percentiles(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail], axis=0)
    return lo, hi


# ---------------------------------------------------------------------------------------------
# Analyses on top of fits


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
        lo, hi = _percentiles(1 - reps[:, 1] / reps[:, 0], LEVEL) if len(reps) else (math.nan,) * 2
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
    points: Sequence[Mapping[str, Any]], joint: PowerLawFit | None = None
) -> dict[str, Any]:
    """Loss-vs-compute frontier of trials (dicts with trial, n, d, flops, loss; flops > 0).
    `points`: the Pareto frontier (no cheaper trial reached a lower loss), each marked whether
    it is also on the lower convex hull in (log flops, loss); k = median C/(N·D); `optimal`:
    the compute-optimal allocation from the joint fit over [min C, 10 × max C]."""
    usable = [p for p in points if p["flops"] and p["flops"] > 0]
    if not usable:
        return {"points": [], "k": None, "optimal": None}
    usable.sort(key=lambda p: (p["flops"], p["loss"]))
    pareto, best = [], math.inf
    for p in usable:
        if p["loss"] < best:
            pareto.append(p)
            best = p["loss"]
    hull = _lower_hull([(math.log(p["flops"]), p["loss"]) for p in pareto])
    k = float(np.median([p["flops"] / (p["n"] * p["d"]) for p in usable]))
    flops = [p["flops"] for p in usable]
    grid = np.logspace(math.log10(min(flops)), math.log10(10 * max(flops)), 30)
    return {
        "points": [
            {"trial": p["trial"], "flops": p["flops"], "loss": p["loss"], "on_hull": i in hull}
            for i, p in enumerate(pareto)
        ],
        "k": k,
        "optimal": compute_optimal_allocation(joint, grid, k) if joint is not None else None,
    }


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
) -> dict[str, Any]:
    """Refit without the largest budget and predict it (for every size, joint form). Returns
    {"dropped_d", "fit": PowerLawFit, "checks": [{"n", "d", "predicted", "interval", "actual",
    "relative_error", "covered", "n_points"}]}: `actual` is the mean measured loss there,
    `interval` the 95 % prediction interval, `covered` whether it holds `actual` (None without
    bootstrap replicates), `n_points` the refit's. With an unusable refit the checks are empty
    and fit.message says why."""
    d_arr, loss_arr = np.asarray(d, float), np.asarray(loss, float)
    n_arr = None if n is None else np.asarray(n, float)
    d_max = float(d_arr.max())
    keep = d_arr < d_max
    if not keep.any():
        form: Form = "data" if n is None else "joint"
        failed = PowerLawFit(form=form, ok=False, message="only one budget", n_points=0)
        return {"dropped_d": d_max, "fit": failed, "checks": []}
    fit = fit_power_law(
        d_arr[keep],
        loss_arr[keep],
        None if n_arr is None else n_arr[keep],
        bootstrap=bootstrap,
        seed=seed,
    )
    checks = []
    sizes = [None] if n_arr is None else sorted(set(n_arr[~keep].tolist()))
    for size in sizes if fit.ok else []:
        at = ~keep if size is None else ~keep & (n_arr == size)
        checks.append(_check_prediction(fit, d_max, size, float(loss_arr[at].mean())))
    return {"dropped_d": d_max, "fit": fit, "checks": checks}


def _check_prediction(fit: PowerLawFit, d: float, n: float | None, actual: float) -> dict[str, Any]:
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


# ---------------------------------------------------------------------------------------------
# results.jsonl → everything the report shows


@_one_blas_thread
def analyse_results(
    rows: list[dict], *, metric: str = "val_loss", bootstrap: int = 1000, seed: int = 0
) -> dict:
    """Fits, plateau tests, frontier, extrapolation checks and a verdict from results.jsonl
    rows (only `status == "done"` rows with a finite metric). D = data_utterances, N = params.
    Seeds at one (size, budget) are averaged for the plotted points; fits use every row.
    "sim" is fitted as 1 − sim (`transform`), so every `loss` in the result is that quantity.
    Families whose fit cannot run (too few budgets, invalid values) get fit.ok = False with
    the reason, and their plateau test falls back to the measured gain. Plain JSON out."""
    if metric not in METRIC_TRANSFORMS:
        raise ValueError(f"metric must be one of {sorted(METRIC_TRANSFORMS)}, got {metric!r}")
    usable = _usable_rows(rows, metric)
    by_family = _group(usable, "model_size")
    families = {
        name: _analyse_family(fam_rows, bootstrap, _child_seed(seed, name))
        for name, fam_rows in sorted(by_family.items(), key=lambda kv: _family_order(kv[1]))
    }
    joint_rows = [r for r in usable if r["kind"] == "neural" and (r.get("params") or 0) > 0]
    joint_fit, joint = _analyse_joint(joint_rows, bootstrap, _child_seed(seed, "joint"))
    frontier = compute_frontier(
        [_frontier_point(r) for r in joint_rows],
        joint_fit if joint_fit is not None and joint_fit.ok else None,
    )
    extrapolation = _extrapolation(usable, by_family, joint_rows, bootstrap, seed)
    result = {
        "metric": metric,
        "transform": METRIC_TRANSFORMS[metric],
        "bootstrap": bootstrap,
        "rows_used": len(usable),
        "rows_skipped": len(rows) - len(usable),
        "families": {name: fam["summary"] for name, fam in families.items()},
        "joint": joint,
        "frontier": frontier,
        "extrapolation": extrapolation,
    }
    result = _jsonable(result)
    result["verdict"] = _verdict(result)
    return result


def _usable_rows(rows: list[dict], metric: str) -> list[dict]:
    """Done rows with a finite metric and a positive data budget, with `_loss` (transformed)."""
    usable = []
    for row in rows:
        value = row.get(metric)
        if row.get("status") != "done" or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value) or not (row.get("data_utterances") or 0) > 0:
            continue
        loss = 1.0 - value if METRIC_TRANSFORMS[metric] == "1 - sim" else float(value)
        usable.append({**row, "_loss": loss})
    return usable


def _frontier_point(row: dict) -> dict[str, Any]:
    return {
        "trial": row["trial"],
        "n": row["params"],
        "d": row["data_utterances"],
        "flops": row.get("train_flops") or 0.0,
        "loss": row["_loss"],
    }


def _group(rows: list[dict], key: str) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(str(row[key]), []).append(row)
    return groups


def _family_order(rows: list[dict]) -> tuple[int, float]:
    """Neural sizes by parameter count, then the baseline."""
    return (rows[0]["kind"] != "neural", float(rows[0].get("params") or 0))


def _child_seed(seed: int, name: str) -> np.random.SeedSequence:
    """An independent, reproducible stream per family (stable across runs and machines)."""
    return np.random.SeedSequence([seed, zlib.crc32(name.encode())])


def _family_points(rows: list[dict]) -> list[dict[str, Any]]:
    """Seed-averaged points, sorted by budget, keeping the spread over seeds."""
    by_budget: dict[float, list[dict]] = {}
    for row in rows:  # keyed by value: 1000 and 1000.0 are one budget
        by_budget.setdefault(float(row["data_utterances"]), []).append(row)
    points = []
    for _, at in sorted(by_budget.items()):
        losses = [r["_loss"] for r in at]
        hours = [r["data_hours"] for r in at if isinstance(r.get("data_hours"), (int, float))]
        points.append(
            {
                "d": at[0]["data_utterances"],
                "hours": float(np.mean(hours)) if hours else None,
                "loss": float(np.mean(losses)),
                "loss_min": min(losses),
                "loss_max": max(losses),
                "seeds": len(at),
                "values": losses,
            }
        )
    return points


def _safe_fit(
    d: list[float], loss: list[float], n: list[float] | None, bootstrap: int, seed: Any
) -> PowerLawFit:
    """A fit, or ok=False carrying the ValueError's message: one bad family never stops the
    report."""
    try:
        return fit_power_law(d, loss, n, bootstrap=bootstrap, seed=seed)
    except ValueError as err:
        return PowerLawFit(form="data" if n is None else "joint", ok=False, message=str(err))


def _analyse_family(
    rows: list[dict], bootstrap: int, seed: np.random.SeedSequence
) -> dict[str, Any]:
    """One model size: points, L(D) fit, its curve with prediction band, plateau test."""
    points = _family_points(rows)
    d = [float(r["data_utterances"]) for r in rows]
    fit = _safe_fit(d, [r["_loss"] for r in rows], None, bootstrap, seed)
    fit_summary = {k: v for k, v in fit.to_dict().items() if k != "form"}
    summary = {
        "kind": rows[0]["kind"],
        "params": rows[0].get("params"),
        "points": points,
        "fit": fit_summary,
        "curve": _curve(fit, [p["d"] for p in points]),
        "plateau": plateau_test(fit, [p["d"] for p in points], [p["loss"] for p in points]),
    }
    return {"summary": summary, "fit": fit}


def _curve(fit: PowerLawFit, d_points: list[float]) -> dict[str, list[float]]:
    if not fit.ok:
        return {"d": [], "loss": [], "lo": [], "hi": []}
    d = np.logspace(np.log10(min(d_points) / 1.5), np.log10(max(d_points) * 2), CURVE_POINTS)
    mid, lo, hi = fit.band(d)
    return {"d": d.tolist(), "loss": mid.tolist(), "lo": lo.tolist(), "hi": hi.tolist()}


def _analyse_joint(
    rows: list[dict], bootstrap: int, seed: np.random.SeedSequence
) -> tuple[PowerLawFit | None, dict[str, Any] | None]:
    """The joint law on neural rows; None unless ≥ 2 sizes and ≥ 2 budgets."""
    sizes = sorted({(float(r["params"]), str(r["model_size"])) for r in rows})
    budgets = {float(r["data_utterances"]) for r in rows}
    if len({n for n, _ in sizes}) < 2 or len(budgets) < 2:
        return None, None
    fit = _safe_fit(
        [float(r["data_utterances"]) for r in rows],
        [r["_loss"] for r in rows],
        [float(r["params"]) for r in rows],
        bootstrap,
        seed,
    )
    summary = fit.to_dict()
    summary.pop("form")
    summary["sizes"] = [name for _, name in sizes]
    summary["forecast"] = _forecast(fit, rows, sizes) if fit.ok else None
    return fit, summary


def _forecast(fit: PowerLawFit, rows: list[dict], sizes: list[tuple[float, str]]) -> dict[str, Any]:
    """At the largest budget: one more model size (n_max × the ratio of the two largest) vs
    twice the data. Ranges are 95 % prediction intervals; the difference's is a confidence
    interval (both options share the law's noise, so it cancels)."""
    n_values = sorted({n for n, _ in sizes})
    n_max, n_prev = n_values[-1], n_values[-2]
    d_max = max(float(r["data_utterances"]) for r in rows)
    n_next = n_max * n_max / n_prev
    queries_d, queries_n = [d_max, d_max, 2 * d_max], [n_max, n_next, n_max]
    mid, lo, hi = fit.band(queries_d, queries_n)
    reps = fit.replicate_predictions(queries_d, queries_n)
    diff = reps[:, 1] - reps[:, 2]
    diff_lo, diff_hi = _percentiles(diff, LEVEL) if len(diff) else (math.nan, math.nan)
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
    usable: list[dict],
    by_family: dict[str, list[dict]],
    joint_rows: list[dict],
    bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """Per family and joint: refit without the largest budget, predict it."""
    per_family = {
        name: _extrapolate_family(rows, bootstrap, _child_seed(seed, f"extrapolation/{name}"))
        for name, rows in by_family.items()
    }
    joint, joint_message = None, "needs ≥ 2 neural sizes and ≥ 3 budgets"
    if len({r["params"] for r in joint_rows}) >= 2:
        joint, joint_message = _extrapolate_joint(
            joint_rows, bootstrap, _child_seed(seed, "extrapolation/joint")
        )
    d_all = [float(r["data_utterances"]) for r in usable]
    return {
        "dropped_d": max(d_all) if d_all else None,
        "families": per_family,
        "joint": joint,
        "joint_message": joint_message,
    }


def _extrapolate_family(rows: list[dict], bootstrap: int, seed: Any) -> dict[str, Any]:
    """One family's check; a refit that cannot run gives ok False, a message and Nones."""
    d = [float(r["data_utterances"]) for r in rows]
    try:
        result = extrapolation_check(d, [r["_loss"] for r in rows], bootstrap=bootstrap, seed=seed)
    except ValueError as err:
        return _failed_check(str(err))
    if not result["checks"]:
        return _failed_check(result["fit"].message)
    check = {k: v for k, v in result["checks"][0].items() if k != "n"}
    return check | {"ok": True, "message": result["fit"].message}  # e.g. "no more points than…"


def _extrapolate_joint(
    rows: list[dict], bootstrap: int, seed: Any
) -> tuple[dict[str, Any] | None, str | None]:
    """The joint law's check per size name, or (None, why not)."""
    names = {float(r["params"]): str(r["model_size"]) for r in rows}
    try:
        result = extrapolation_check(
            [float(r["data_utterances"]) for r in rows],
            [r["_loss"] for r in rows],
            [float(r["params"]) for r in rows],
            bootstrap=bootstrap,
            seed=seed,
        )
    except ValueError as err:
        return None, str(err)
    if not result["checks"]:
        return None, result["fit"].message
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


# ---------------------------------------------------------------------------------------------
# Verdict: the plain-language summary the report leads with


def _verdict(result: dict[str, Any]) -> list[str]:
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
        return (
            f"{name}: {state} — doubling data beyond {_num(d_max)} utterances is predicted to "
            f"cut {label} by {_pct(plateau['fitted_gain_2x'])} (95 % CI {_pct(lo)} to "
            f"{_pct(hi)}; plateau means the lower bound is ≤ {_pct(plateau['min_gain'])})."
        )
    if plateau["measured_gain"] is None:
        return f"{name}: cannot tell — {plateau['note']}."
    return (
        f"{name}: {state} — no usable fit ({family['fit']['message']}); the last measured step "
        f"to {_num(d_max)} utterances cut {label} by {_pct(plateau['measured_gain'])}."
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
        f"At the largest budget ({_num(fc['d_max'])} utterances, {label} {_fmt(fc['loss_now'])} "
        f"for the largest model): one more model size (N ≈ {_num(fc['n_next'])}) is predicted "
        f"to reach {_fmt(nxt[0])} (95 % PI {_fmt(nxt[1])}–{_fmt(nxt[2])}); twice the data "
        f"{_fmt(dbl[0])} ({_fmt(dbl[1])}–{_fmt(dbl[2])}); {winner}."
    )


def _extrapolation_sentence(extrapolation: dict[str, Any]) -> str:
    checks = [c for c in extrapolation["families"].values() if c.get("ok")]
    if not checks:
        return "Extrapolation check: no family had enough budgets to refit without its largest."
    covered = sum(bool(c["covered"]) for c in checks)
    worst = max(abs(c["relative_error"]) for c in checks)
    widthless = sum(c["n_points"] <= len(PARAM_NAMES["data"]) for c in checks)
    caveat = (
        f"; {widthless} had no more points than parameters, so no real interval to test"
        if widthless
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
        f"{_pct(worst)}){caveat}{joint_text}."
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _num(value: float) -> str:
    return f"{value:,.0f}" if value < 1e6 else f"{value:.3g}"


def _jsonable(value: Any) -> Any:
    """numpy → Python, NaN/inf → None, tuples → lists: safe for json.dumps(allow_nan=False)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value

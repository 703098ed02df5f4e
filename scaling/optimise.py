"""Minimising the law's objective: one vectorised L-BFGS over many starts, then scipy's L-BFGS-B.

Speed. Running scipy's L-BFGS-B from all 4,500 joint-grid starts costs minutes, so:

1. the whole grid runs as ONE vectorised L-BFGS (`_lbfgs_batch`: every start keeps its own
   history and Armijo line search, with the analytic gradient; it only has to find the best
   basin, so it stops at a relative objective change of GRID_FTOL);
2. the best distinct end points are polished with `scipy.optimize.minimize(method="L-BFGS-B",
   jac=True)` at ftol 1e-15, gtol 1e-12 (`polish`) — the reported optimum is a scipy L-BFGS-B
   optimum;
3. bootstrap replicates do not rerun the grid (`scaling.power_law`): they run here together,
   with the resample counts as point weights, at the tight FTOL.

The batched grid finds the same optimum as scipy's L-BFGS-B run from each start (every 20th
start of the joint grid on the Chinchilla data, `bench/fit_epoch.py --scipy-every`; every start
of the L(D) grid in a test).

BLAS runs on one thread inside the public entry points (`one_blas_thread`, threadpoolctl when
installed): the matrices are tiny, and a second OpenBLAS thread made scipy's L-BFGS-B 30×
slower on a busy machine.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from scipy.optimize import minimize

from scaling.law import HUBER_DELTA, huber_objective, objective_batch

try:  # pinned in requirements.lock (scikit-learn needs it); optional here, only for speed
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

__all__ = [
    "FTOL",
    "GRID_FTOL",
    "GRID_MAX_ITER",
    "MAX_ITER",
    "minimise_from_starts",
    "one_blas_thread",
    "polish",
]

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
LBFGS_MEMORY = 10  # scipy's default `maxcor`
HANDOFF = 6
"""When this few problems remain in a batch, each goes on in scipy's L-BFGS-B instead: a Python
iteration of the batch costs ~1 ms whatever its size, scipy's compiled loop ~0.1 ms a problem,
and the last few are the slow crawlers of a nearly piecewise-linear (δ = 1e-3 Huber) surface."""

FG = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""`fg(x, idx)`: objective and gradient of the problems `idx` at the rows of `x`."""


def one_blas_thread(func: Callable) -> Callable:
    """Run `func` with BLAS/LAPACK on one thread. Every call here is tiny (L-BFGS-B's 5 × 10
    matrices); a second OpenBLAS thread only spins, and on a busy machine that made scipy's
    L-BFGS-B 30× slower."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        limits = threadpool_limits(1, user_api="blas") if threadpool_limits else None
        with limits or contextlib.nullcontext():
            return func(*args, **kwargs)

    return wrapper


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
    fg: FG,
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
    fg: FG,
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


@one_blas_thread
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
            polish(s, logx, logy, None if weights is None else weights[i], delta)
            for i, s in enumerate(starts)
        ]
        return np.array([e[0] for e in ends]), np.array([e[1] for e in ends])

    def fg(x: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return objective_batch(x, logx, logy, None if weights is None else weights[idx], delta)

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
        theta, value = polish(
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


def polish(
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

"""The scaling law log L = logsumexp(e, a − α log N, b − β log D) and its summed Huber objective.

The method is Epoch AI's replication of Chinchilla's approach 3 (Besiroglu et al. 2024):

* parameters live in log space, E = e^e, A = e^a, B = e^b, so the model is
  log L = logsumexp(e, a − α log N, b − β log D);
* the objective is the Huber loss (δ = 1e-3) of the log residuals, SUMMED over points (an
  average with a default-tolerance optimiser stops early: that is how the original paper got
  E 1.69, β 0.28);
* L-BFGS with analytic gradients (`scaling.optimise`) from the grid α, β ∈ {0, 0.5, …, 2},
  e ∈ {−1, −0.5, …, 1}, a, b ∈ {0, 5, …, 25} (`start_grid`); the best end point wins.

θ = [e, c_1..c_K, γ_1..γ_K] with log x = [log N, log D] (joint, θ = [e, a, b, α, β]) or
[log D] (data form, θ = [e, b, β]). The `power` form has no floor: L(D) = B/D^β, θ = [b, β]
(log L = b − β log D, linear in θ, so its Huber objective is convex: one optimum). Whether θ
has a floor is read from its length: 1 + 2K entries with one, 2K without.
"""

from __future__ import annotations

import itertools

import numpy as np

from scaling.law_names import LAW_TEXT, PARAM_NAMES, Form

__all__ = [
    "HUBER_DELTA",
    "LAW_TEXT",
    "PARAM_NAMES",
    "Form",
    "huber_objective",
    "natural_params",
    "objective_batch",
    "predict_log_loss",
    "start_grid",
]

HUBER_DELTA = 1e-3

GRID_E = (-1.0, -0.5, 0.0, 0.5, 1.0)
GRID_LOG_COEF = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)  # a and b
GRID_EXPONENT = (0.0, 0.5, 1.0, 1.5, 2.0)  # α and β
_BLOCK_CELLS = 2**15  # starts × points evaluated together: arrays stay in cache, calls stay few


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
    term's share of L is part / total). Parts: the floor's (when θ has one), then one per
    variable."""
    k = logx.shape[1]
    f = _floor_offset(theta, k)
    terms = [theta[:, f + j, None] - theta[:, f + k + j, None] * logx[:, j] for j in range(k)]
    if f:
        terms.insert(0, theta[:, :1])
    top = terms[0]
    for term in terms[1:]:
        top = np.maximum(top, term)  # logsumexp: shift by the largest term, never overflow
    parts = [np.exp(term - top) for term in terms]
    total = parts[0].copy() if len(parts) == 1 else parts[0] + parts[1]
    for part in parts[2:]:
        total += part
    return top + np.log(total), parts, total


def _floor_offset(theta: np.ndarray, k: int) -> int:
    """1 when θ rows carry the floor e (1 + 2K entries), 0 when they do not (2K)."""
    width = theta.shape[-1]
    if width not in (2 * k, 2 * k + 1):
        raise ValueError(f"θ has {width} entries; {k} variable(s) need {2 * k} or {2 * k + 1}")
    return width - 2 * k


def _objective_block(
    theta: np.ndarray,
    logx: np.ndarray,
    logy: np.ndarray,
    weights: np.ndarray | None,
    delta: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Summed Huber objective (B,) and its gradient (B × P) for a block of parameter vectors."""
    k = logx.shape[1]
    f = _floor_offset(theta, k)
    log_loss, parts, total = _log_loss_parts(theta, logx)
    residual = log_loss - logy
    clipped = np.clip(residual, -delta, delta)  # = Huber'(r)
    huber = clipped * (residual - 0.5 * clipped)  # r²/2 inside ±δ, δ(|r| − δ/2) outside
    if weights is not None:
        huber *= weights
        clipped *= weights
    clipped /= total  # ∂ log L / ∂ term = part / total
    grad = np.empty_like(theta)
    if f:
        grad[:, 0] = (clipped * parts[0]).sum(axis=1)
    for j in range(k):
        dterm = clipped * parts[f + j]
        grad[:, f + j] = dterm.sum(axis=1)
        grad[:, f + k + j] = -(dterm @ logx[:, j])
    return huber.sum(axis=1), grad


def objective_batch(
    theta: np.ndarray,
    logx: np.ndarray,
    logy: np.ndarray,
    weights: np.ndarray | None,
    delta: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Summed Huber objective (B,) and gradient (B × P) of any number of parameter vectors
    (rows of `theta`; `weights`: one row of point weights each, or None), a cache-sized
    block at a time."""
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


def start_grid(form: Form) -> np.ndarray:
    """Epoch's starting points as θ rows: 4,500 for the joint form, 150 for the data form, 30
    for the power form (convex: any start would do; the grid keeps one code path)."""
    if form == "joint":
        rows = itertools.product(GRID_E, GRID_LOG_COEF, GRID_LOG_COEF, GRID_EXPONENT, GRID_EXPONENT)
    elif form == "power":
        rows = itertools.product(GRID_LOG_COEF, GRID_EXPONENT)
    else:
        rows = itertools.product(GRID_E, GRID_LOG_COEF, GRID_EXPONENT)
    return np.array(list(rows), dtype=float)


def natural_params(theta: np.ndarray, form: Form) -> np.ndarray:
    """Log-space rows [(e,) (a,) b, (α,) β] → [(E,) (A,) B, (alpha,) beta]."""
    scales = {"data": 2, "power": 1, "joint": 3}[form]  # leading log-scale entries
    out = theta.copy()
    with np.errstate(over="ignore"):  # a degenerate bootstrap replicate may run off to inf
        out[:, :scales] = np.exp(theta[:, :scales])
    return out

"""The fitting API in one import: scaling-law fits and the checks built on them.

L(D) = E + B/D^β per model size and L(N, D) = E + A/N^α + B/D^β jointly, fitted as Epoch AI's
replication of Chinchilla's approach 3 (Besiroglu et al. 2024). The parts:

* `scaling.law` — the law, its summed Huber objective and the start grid;
* `scaling.optimise` — the batched L-BFGS and scipy polishing;
* `scaling.power_law` — `fit_power_law` → `PowerLawFit`, identifiability, the bootstrap;
* `scaling.checks` — plateau test, optimal allocation, compute frontier, extrapolation check;
* `scaling.analysis` — results rows → one metric's analysis (what fits.json holds);
* `scaling.verdicts` — that analysis in plain sentences.
"""

from __future__ import annotations

from scaling.analysis import analyse_results
from scaling.checks import (
    compute_frontier,
    compute_optimal_allocation,
    extrapolation_check,
    plateau_test,
)
from scaling.law import (
    HUBER_DELTA,
    PARAM_NAMES,
    Form,
    huber_objective,
    predict_log_loss,
    start_grid,
)
from scaling.optimise import minimise_from_starts
from scaling.points import METRIC_TRANSFORMS
from scaling.power_law import BOOTSTRAP_STARTS, PowerLawFit, fit_power_law

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

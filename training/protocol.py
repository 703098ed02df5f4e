"""Training protocols: how long a trial trains, how often it validates, and why it stopped.

`training.protocol` in the trial config (see `TrainingConfig.protocol`):

    steps      `training.steps`, or round(steps_per_sqrt_utterance · √utterances)
    converged  until the dev voices' loss has not improved for `early_stop_patience`
               validations, capped at max(`max_epochs` passes, `min_steps`); the best
               checkpoint is handed in
    compute    ceil(samples_seen / batch_size) steps, whatever the budget

No torch here: the sweep's planner and forecast use the same rules without loading it.
"""

from __future__ import annotations

import math

from training.config import TrialConfig

__all__ = ["StopReason", "epochs_seen", "eval_interval", "stop_reason_at_cap", "total_steps"]

StopReason = str
"""done (step budget spent), converged (dev loss stopped improving), max_epochs (converged's
cap reached first), early_stopped (the steps protocol's optional patience), diverged."""


def total_steps(trial: TrialConfig, n_train: int) -> int:
    """The step budget (under `converged`, its cap)."""
    t = trial.training
    if t.protocol == "converged":
        return max(1, t.min_steps, math.ceil(t.max_epochs * n_train / t.batch_size))
    if t.protocol == "compute":
        return max(1, math.ceil((t.samples_seen or 0) / t.batch_size))
    if t.steps is not None:
        return t.steps
    # Sub-linear in data, as in the probe that set the defaults: small budgets get enough
    # passes to fit, large ones are not starved of updates.
    return max(1, round(t.steps_per_sqrt_utterance * math.sqrt(n_train)))


def eval_interval(trial: TrialConfig, n_train: int) -> int:
    """Steps between validations: `eval_every`; under `converged` one epoch, or `eval_every`
    steps when an epoch is shorter. Patience then counts epochs on a large budget — the dev
    loss of a quarter epoch is mostly noise (measured: an l model stopped after 1.5 epochs
    of 2,048 utterances, 0.07 worse than at 256) — and a small budget is not validated every
    few steps."""
    every = trial.training.eval_every
    if trial.training.protocol != "converged":
        return every
    return max(every, n_train // trial.training.batch_size, 1)


def epochs_seen(trial: TrialConfig, steps: int, n_train: int) -> float:
    """Passes over the budget that `steps` optimiser steps make."""
    return steps * trial.training.batch_size / max(n_train, 1)


def stop_reason_at_cap(trial: TrialConfig) -> StopReason:
    """Why a trial that spent its whole step budget stopped."""
    return "max_epochs" if trial.training.protocol == "converged" else "done"

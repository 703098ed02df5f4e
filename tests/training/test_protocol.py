"""How long each training protocol trains and how often it validates (no torch)."""

from __future__ import annotations

from training.config import DataBudget, DataConfig, TrainingConfig, TrialConfig
from training.protocol import epochs_seen, eval_interval, stop_reason_at_cap, total_steps


def trial(utterances: int, **training) -> TrialConfig:
    return TrialConfig(
        data=DataConfig(budget=DataBudget(utterances=utterances)),
        training=TrainingConfig(batch_size=8, eval_every=32, **training),
    )


def test_converged_caps_at_epochs_or_min_steps_and_validates_per_epoch():
    small = trial(32, protocol="converged", max_epochs=5, min_steps=320, early_stop_patience=2)
    large = trial(2048, protocol="converged", max_epochs=5, min_steps=320, early_stop_patience=2)
    assert total_steps(small, 32) == 320  # 100 epochs of a 4-step epoch
    assert total_steps(large, 2048) == 1280  # 5 epochs of 256 steps
    assert eval_interval(small, 32) == 32 and eval_interval(large, 2048) == 256
    assert stop_reason_at_cap(large) == "max_epochs"
    assert epochs_seen(large, 1280, 2048) == 5.0


def test_compute_sees_the_same_samples_whatever_the_budget():
    for budget in (64, 4096):
        t = trial(budget, protocol="compute", samples_seen=1000)
        assert total_steps(t, budget) == 125 and eval_interval(t, budget) == 32
    assert epochs_seen(trial(64, protocol="compute", samples_seen=1000), 125, 64) == 1000 / 64


def test_steps_keeps_the_square_root_rule():
    t = trial(1024, steps_per_sqrt_utterance=8)
    assert total_steps(t, 1024) == 256 and stop_reason_at_cap(t) == "done"
    assert total_steps(trial(1024, steps=20), 1024) == 20

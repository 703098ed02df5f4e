"""The `converged` training protocol on the real path: Ray Train + DeepSpeed on CPU, stopping on
the dev voices, handing in its best checkpoint, and keeping it across a restart."""

from __future__ import annotations

import math

import pytest
import torch

from cluster.trial_runner import run_trial
from training.config import (
    MODEL_LADDER,
    CorpusRef,
    DataBudget,
    DataConfig,
    DeepSpeedConfig,
    OptimConfig,
    ResourcesConfig,
    TrainingConfig,
    TrialConfig,
)
from training.data import TrialData
from training.inference import load_neural
from training.losses import validation_loss

pytestmark = pytest.mark.slow


def converged_trial(corpus, **training) -> TrialConfig:
    """xs on 32 utterances, batch 8: 4 steps an epoch, a validation every epoch (4 steps)."""
    return TrialConfig(
        model=MODEL_LADDER["xs"],
        data=DataConfig(
            corpus=CorpusRef(synthetic=None, path=str(corpus)), budget=DataBudget(utterances=32)
        ),
        optim=OptimConfig(lr=3e-3, warmup_steps=2),
        training=TrainingConfig(
            protocol="converged",
            batch_size=8,
            checkpoint_every=4,
            **{"max_epochs": 10, "early_stop_patience": 2, "eval_every": 4} | training,
        ),
        deepspeed=DeepSpeedConfig(zero_stage=0),
        resources=ResourcesConfig(num_workers=1),
    )


def test_converged_trial_hands_in_its_best_checkpoint_across_a_restart(
    ray_local, smoke_corpus, tmp_path
):
    trial = converged_trial(smoke_corpus, inject_failure_at_step=10)
    result = run_trial(trial, smoke_corpus, tmp_path, max_failures=1)
    assert result.status == "done", result.error
    m = result.metrics
    assert (tmp_path / trial.name / "markers" / "injected-failure-step10").exists()
    assert m["protocol"] == "converged" and m["resumed_from"]
    assert m["stop_reason"] in ("converged", "max_epochs")
    assert m["epochs"] == pytest.approx(m["steps"] * 8 / 32)
    assert m["steps"] <= 40 and 0 < m["best_step"] <= m["steps"]
    if m["stop_reason"] == "converged":  # stopped 2 validations (epochs) after its best
        assert m["steps"] == m["best_step"] + 2 * 4
    assert math.isfinite(m["dev_loss"]) and m["train_speakers"] >= 1
    # The export is the best checkpoint: its held-out loss is the one recorded at best_step.
    data = TrialData.load(trial, smoke_corpus)
    model = load_neural(
        result.export_dir, trial.model, len(data.vocab), data.n_mels, not data.has_durations
    )
    with torch.no_grad():
        exported = validation_loss(model, data, torch.device("cpu"), 0, 1)
        dev = validation_loss(model, data, torch.device("cpu"), 0, 1, split="dev")
    assert exported == pytest.approx(m["val_loss"], rel=1e-5)
    assert dev == pytest.approx(m["dev_loss"], rel=1e-5)


def test_converged_needs_dev_voices_and_patience():
    with pytest.raises(ValueError, match="early_stop_patience"):
        TrainingConfig(protocol="converged")
    with pytest.raises(ValueError, match="samples_seen"):
        TrainingConfig(protocol="compute")

"""val_loss's interval: per-utterance held-out L1 that adds up to val_loss, resampled by voice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.baseline import fit_baseline, validation_loss, validation_loss_with_ci
from training.config import MODEL_LADDER, CorpusRef, DataBudget, DataConfig, TrialConfig
from training.data import TrialData
from training.losses import validation_l1
from training.losses import validation_loss as neural_validation_loss
from training.model import VoiceCloner


@pytest.fixture(scope="module")
def data(smoke_corpus) -> TrialData:
    trial = TrialConfig(
        model=MODEL_LADDER["xs"],
        data=DataConfig(
            corpus=CorpusRef(synthetic=None, path=str(smoke_corpus)),
            budget=DataBudget(utterances=64),
        ),
    )
    return TrialData.load(trial, smoke_corpus)


def test_per_utterance_sums_add_up_to_the_neural_val_loss(data):
    torch.manual_seed(0)
    model = VoiceCloner(MODEL_LADDER["xs"], len(data.vocab), data.n_mels, learn_alignment=False)
    cpu = torch.device("cpu")
    total, l1, cells = validation_l1(model, data, cpu, 0, 1)
    assert total == neural_validation_loss(model, data, cpu, 0, 1)
    assert len(l1) == len(cells) == len(data.val) and (cells > 0).all()
    assert l1.sum() / cells.sum() == pytest.approx(total, rel=1e-6)  # float32 sums, reordered
    # the utterance order is data.val's: utterance i's cells are its frames × mels
    assert cells.tolist() == [e.mel.size for e in data.val]


def test_the_baseline_val_loss_carries_a_clustered_interval(data):
    model, _ = fit_baseline(data, seed=0)
    value, interval = validation_loss_with_ci(model, data, resamples=200)
    assert value == validation_loss(model, data)
    lo, hi = interval
    assert lo < value < hi
    assert validation_loss_with_ci(model, data, resamples=200)[1] == interval  # seeded
    assert len({e.speaker for e in data.val}) > 1 and np.isfinite([lo, hi]).all()

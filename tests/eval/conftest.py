"""Checkpoints to evaluate: the smallest useful model trained briefly, and the same model
untrained. Trained in-process with the real loss and exported by the real exporter (the
Ray + DeepSpeed path has its own tests; here it would only add minutes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eval.evaluate_checkpoint import Judges
from training.config import (
    MODEL_LADDER,
    CorpusRef,
    DataBudget,
    DataConfig,
    EvalConfig,
    TrialConfig,
)
from training.data import TrialData, batch_indices
from training.deepspeed_loop import lr_lambda
from training.losses import batch_loss
from training.model import VoiceCloner
from training.weights import export_model


def train_and_export(corpus: Path, out: Path, steps: int, size: str = "s") -> Path:
    trial = TrialConfig(
        model=MODEL_LADDER[size],
        data=DataConfig(
            corpus=CorpusRef(synthetic=None, path=str(corpus)), budget=DataBudget(utterances=384)
        ),
        eval=EvalConfig(sentences_per_speaker=4, bootstrap=300, quality=()),
    )
    data = TrialData.load(trial, corpus)
    torch.manual_seed(0)
    model = VoiceCloner(trial.model, len(data.vocab), data.n_mels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=trial.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(50, max(steps, 1)))
    for step in range(steps):
        indices = batch_indices(len(data.train), data.lengths, 16, 0, step)
        loss, _ = batch_loss(model, data.train_batch(indices, 0, step))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    export_model(model, trial, data, out)
    return out


# No quality judge here: DNSMOS (~1.5 s a clip) has its own tests (tests/eval/test_quality.py).
EVAL_CFG = EvalConfig(sentences_per_speaker=4, bootstrap=300, audio_samples=2, quality=())
"""The evaluation settings of these tests (one set, so the ceilings are judged once)."""


@pytest.fixture(scope="session")
def judges(smoke_corpus) -> Judges:
    return Judges.build(EVAL_CFG, smoke_corpus)


@pytest.fixture(scope="session")
def trained_export(smoke_corpus, tmp_path_factory) -> Path:
    return train_and_export(smoke_corpus, tmp_path_factory.mktemp("trained"), steps=600)


@pytest.fixture(scope="session")
def untrained_export(smoke_corpus, tmp_path_factory) -> Path:
    return train_and_export(smoke_corpus, tmp_path_factory.mktemp("untrained"), steps=0)


__all__ = ["EVAL_CFG", "np", "train_and_export"]

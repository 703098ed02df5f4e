"""The traditional baseline: exact normal equations, a prediction that uses them, and
honest tuning."""

from __future__ import annotations

import numpy as np
import pytest

from training.baseline import (
    N_CLASSES,
    _normal_equations,
    fit_baseline,
    frame_columns,
    phoneme_classes,
    speaker_features,
    validation_loss,
)
from training.config import CorpusRef, DataBudget, DataConfig, TrialConfig
from training.data import TrialData


@pytest.fixture(scope="module")
def data(smoke_corpus) -> TrialData:
    trial = TrialConfig(
        kind="baseline",
        data=DataConfig(
            corpus=CorpusRef(synthetic=None, path=str(smoke_corpus)),
            budget=DataBudget(utterances=128),
        ),
    )
    return TrialData.load(trial, smoke_corpus)


def test_sparse_normal_equations_equal_the_dense_ones(data):
    examples, bins, n = data.train[:6], 3, len(data.vocab)
    classes = phoneme_classes(data.vocab.symbols)
    durations = [e.durations for e in examples]
    refs = [e.mel[:50] for e in data.train[6:12]]
    xtx, xty, frames = _normal_equations(examples, durations, refs, classes, bins)
    rows = []
    for e, d, r in zip(examples, durations, refs, strict=True):
        columns = frame_columns(e.phonemes, d, n, bins)
        onehot = np.zeros((len(columns), n * (bins + 2)))
        onehot[np.arange(len(columns))[:, None], columns] = 1.0
        speaker = np.zeros((len(columns), N_CLASSES, 2 * data.n_mels + 1))
        speaker[np.arange(len(columns)), classes[np.repeat(e.phonemes, d)]] = speaker_features(r)
        rows.append(np.hstack([onehot, speaker.reshape(len(columns), -1)]))
    x = np.vstack(rows)
    y = np.concatenate([e.mel for e in examples])
    assert frames == len(x)
    np.testing.assert_allclose(xtx, x.T @ x, atol=1e-8)
    np.testing.assert_allclose(xty, x.T @ y, atol=1e-8)


def test_phoneme_classes_from_espeak_mnemonics():
    assert phoneme_classes(("<pad>", "_:", "'aI", "@", "s", "z", "tS", "n")).tolist() == [
        0,
        0,
        1,
        1,
        3,
        2,
        3,
        2,
    ]


def test_fit_beats_predicting_the_average_frame_and_tunes_on_training_voices(data):
    model, info = fit_baseline(data, seed=0)
    val = validation_loss(model, data)
    mean_frame = np.concatenate([e.mel for e in data.train]).mean(0)
    constant = np.mean([np.abs(e.mel - mean_frame).mean() for e in data.val])
    assert val < 0.8 * constant, (val, constant)
    assert info["tuning"], "hyper-parameters must be chosen on held-out training voices"
    assert (info["position_bins"], info["alpha"]) == min(
        (
            (b, a)
            for b, a in [
                (int(k.split(",")[0][5:]), float(k.split("alpha=")[1])) for k in info["tuning"]
            ]
        ),
        key=lambda ba: info["tuning"][f"bins={ba[0]},alpha={ba[1]:g}"],
    )
    durations = model.predict_durations(data.val[0].phonemes)
    assert durations.sum() > 0 and (durations >= 0).all()

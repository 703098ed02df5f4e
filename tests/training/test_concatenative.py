"""The concatenative baseline: units cut from training voices only, a voice-matched selection,
mels the judges can take, robustness to odd input, and the real trial path."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from training.baseline import validation_loss
from training.concatenative import ConcatenativeModel, fit_concatenative, train_concatenative
from training.config import (
    ConfigError,
    CorpusRef,
    DataBudget,
    DataConfig,
    TrialConfig,
    from_dict,
)
from training.data import TrialData
from training.inference import Synthesizer
from training.model import UNK


def concat_trial(corpus, utterances: int = 128) -> TrialConfig:
    return TrialConfig(
        kind="baseline",
        baseline="concatenative",
        data=DataConfig(
            corpus=CorpusRef(synthetic=None, path=str(corpus)),
            budget=DataBudget(utterances=utterances),
        ),
    )


@pytest.fixture(scope="module")
def data(smoke_corpus) -> TrialData:
    return TrialData.load(concat_trial(smoke_corpus), smoke_corpus)


@pytest.fixture(scope="module")
def fitted(data) -> tuple[ConcatenativeModel, dict]:
    return fit_concatenative(data, seed=0)


def without_phone(model: ConcatenativeModel, phone: int) -> ConcatenativeModel:
    """The inventory less every unit of `phone` (frames stay; `starts` still index them)."""
    keep = model.phone != phone
    arrays = ("starts", "lengths", "phone", "left", "right", "speaker", "continues")
    return dataclasses.replace(model, **{name: getattr(model, name)[keep] for name in arrays})


def test_units_are_cut_from_training_voices_only(data, fitted):
    model, info = fitted
    training_speakers = sorted({e.speaker for e in data.train})
    assert info["speakers"] == len(training_speakers) == len(model.voices)
    assert set(np.unique(model.speaker)) == set(range(len(training_speakers)))
    assert not {e.speaker for e in data.val} & set(training_speakers)
    # The first unit is the first phone of the first training utterance, frame for frame.
    first = data.train[0]
    np.testing.assert_array_equal(model.frames[: model.lengths[0]], first.mel[: first.durations[0]])
    assert model.phone[0] == first.phonemes[0] and model.left[0] == 0


def test_a_reference_in_one_voice_picks_that_voice_units(data, fitted):
    model, _ = fitted
    by_speaker: dict[str, list] = {}
    for e in data.train:
        by_speaker.setdefault(e.speaker, []).append(e)
    a, b = sorted(by_speaker)[:2]
    speaker_ids = {s: i for i, s in enumerate(sorted(by_speaker))}
    sentence = data.val[0].phonemes
    for voice, other in ((a, b), (b, a)):
        ref = by_speaker[voice][0].mel[: data.ref_frames]
        chosen = model.speaker[model.select(sentence, ref)]
        mine = int((chosen == speaker_ids[voice]).sum())
        theirs = int((chosen == speaker_ids[other]).sum())
        assert mine > theirs, (voice, mine, theirs)


def test_output_is_a_finite_log_mel_of_the_right_shape(data, fitted):
    model, info = fitted
    example, ref = data.val[0], data.val_refs[0]
    forced = model.predict(example.phonemes, ref, example.durations)
    assert forced.shape == example.mel.shape and forced.dtype == np.float32
    assert np.isfinite(forced).all()
    free = model.predict(example.phonemes, ref)
    units = model.select(example.phonemes, ref)
    assert free.shape == (model.lengths[units].sum(), data.n_mels) and np.isfinite(free).all()
    # The validation loss is the ridge baseline's quantity (teacher-forced L1 per log-mel
    # cell), and it beats predicting the average training frame.
    cells = sum(e.mel.size for e in data.val)
    weighted = sum(
        np.abs(model.predict(e.phonemes, r, e.durations) - e.mel).sum()
        for e, r in zip(data.val, data.val_refs, strict=True)
    )
    val = validation_loss(model, data, info["aligner"])
    assert val == pytest.approx(weighted / cells)
    mean_frame = np.concatenate([e.mel for e in data.train]).mean(0)
    constant = sum(np.abs(e.mel - mean_frame).sum() for e in data.val) / cells
    assert val < 0.9 * constant, (val, constant)


def test_an_unseen_phone_backs_off_to_its_broad_class(data, fitted):
    model, _ = fitted
    sentence, ref = data.val[0].phonemes, data.val_refs[0]
    vowel = next(int(p) for p in sentence if model.phoneme_class[p] == 1)
    pruned = without_phone(model, vowel)
    chosen = pruned.select(sentence, ref)
    at = np.flatnonzero(sentence == vowel)
    assert (pruned.phone[chosen[at]] != vowel).all()
    assert (pruned.phoneme_class[pruned.phone[chosen[at]]] == 1).all()
    # Unknown and out-of-vocabulary ids still give speech-shaped output.
    odd = np.array([UNK, len(model.phoneme_class) + 7, *sentence[:3]])
    mel = model.predict(odd, ref)
    assert mel.ndim == 2 and len(mel) > 0 and np.isfinite(mel).all()


def test_degenerate_input_never_crashes(data, fitted):
    model, _ = fitted
    sentence, ref = data.val[0].phonemes, data.val_refs[0]
    empty = np.zeros(0, np.int64)
    assert model.predict(empty, ref).shape == (1, data.n_mels)
    assert model.predict(empty, ref, empty).shape == (0, data.n_mels)
    for short in (ref[:0], ref[:1], np.full_like(ref[:4], np.nan)):
        mel = model.predict(sentence, short)
        assert len(mel) > 0 and np.isfinite(mel).all()
    zero = np.zeros(len(sentence), np.int64)  # teacher-forced silence: no frames, no crash
    assert model.predict(sentence, ref, zero).shape == (0, data.n_mels)


def test_without_corpus_timings_units_follow_the_flat_start_alignment(data):
    untimed = TrialData(
        [dataclasses.replace(e, durations=None) for e in data.train[:48]],
        [dataclasses.replace(e, durations=None) for e in data.val[:8]],
        data.val_refs[:8],
        data.vocab,
        data.n_mels,
        data.ref_frames,
    )
    model, info = fit_concatenative(untimed, seed=0)
    assert info["aligner"] is not None and info["units"] > 0
    val = validation_loss(model, untimed, info["aligner"])
    assert np.isfinite(val) and val > 0


def test_selection_is_deterministic(data, fitted):
    model, _ = fitted
    again, _ = fit_concatenative(data, seed=0)
    sentence, ref = data.val[3].phonemes, data.val_refs[3]
    np.testing.assert_array_equal(model.select(sentence, ref), again.select(sentence, ref))


def test_export_round_trips_through_the_synthesizer(smoke_corpus, data, fitted, tmp_path):
    model, _ = fitted
    metrics = train_concatenative(concat_trial(smoke_corpus), smoke_corpus, tmp_path)
    assert metrics["status"] == "done" and metrics["params"] > 0
    config = json.loads((tmp_path / "model_config.json").read_text())
    assert config["kind"] == "baseline" and config["trial"]["baseline"] == "concatenative"
    synthesizer = Synthesizer.load(tmp_path)
    assert synthesizer.trial.family == "concat"
    example, ref = data.val[1], data.val_refs[1]
    # The export stores frames as float16: equal to the fitted model within that precision.
    np.testing.assert_allclose(
        synthesizer.predict_mel(example.phonemes, ref, example.durations),
        model.predict(example.phonemes, ref, example.durations),
        atol=2e-2,
    )


def test_an_unknown_baseline_name_is_rejected_naming_the_field():
    with pytest.raises(ConfigError) as err:
        from_dict(TrialConfig, {"kind": "baseline", "baseline": "unit-selection"})
    assert "baseline: Input should be 'ridge' or 'concatenative'" in str(err.value)


@pytest.mark.slow
def test_a_concatenative_trial_runs_the_real_trial_path(ray_local, smoke_corpus, tmp_path):
    from cluster.trial_runner import run_any_trial

    trial = concat_trial(smoke_corpus, utterances=64)
    outcome = run_any_trial(trial, smoke_corpus, tmp_path)
    assert outcome.status == "done", outcome.error
    assert outcome.name == "concat-u64-seed0"
    assert 0.5 < outcome.metrics["val_loss"] < 2.0
    assert Synthesizer.load(outcome.export_dir).trial.baseline == "concatenative"

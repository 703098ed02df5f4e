"""Whatever a badly trained model outputs — no frames, one frame, minutes of frames, NaN or
infinite mels or durations, a crash — evaluation returns: each such utterance is a counted
failure (WER 1, SIM 0, its reason recorded), never a failed trial."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from eval.evaluate_checkpoint import evaluate_checkpoint
from tests.eval.conftest import EVAL_CFG
from training.config import FeatureConfig
from training.inference import Synthesizer
from training.model import MAX_FRAMES_PER_TOKEN, VoiceCloner
from training.vocoder import GriffinLimVocoder

pytestmark = pytest.mark.slow

N_MELS = 80


def constant_mel(frames: int, value: float = -4.0) -> np.ndarray:
    return np.full((frames, N_MELS), value, np.float32)


def raises(*_: object) -> np.ndarray:
    raise RuntimeError("the model fell over")


# (name, what predict_mel returns, the reason every utterance must fail with)
DEGENERATE = [
    ("no frames", lambda: constant_mel(0), "empty mel"),
    ("no mel axis", lambda: np.zeros(N_MELS, np.float32), "empty mel"),
    ("one frame", lambda: constant_mel(1), "empty audio"),
    ("two frames", lambda: constant_mel(2), "too short audio"),  # crashed Griffin-Lim before
    ("three frames", lambda: constant_mel(3), "too short audio"),
    ("minutes of frames", lambda: constant_mel(60 * 16000 // 256), "absurdly long mel"),
    ("NaN mel", lambda: constant_mel(120, math.nan), "NaN or infinite mel"),
    ("+inf mel", lambda: constant_mel(120, math.inf), "NaN or infinite mel"),
    ("-inf mel", lambda: constant_mel(120, -math.inf), "NaN or infinite mel"),
    ("huge finite mel", lambda: constant_mel(120, 1e4), "NaN or infinite samples"),
    ("silence", lambda: constant_mel(120, math.log(1e-5)), "silent audio"),
]


@pytest.fixture(scope="module")
def untrained(untrained_export) -> Synthesizer:
    return Synthesizer.load(untrained_export)


def evaluate_with(predict, untrained: Synthesizer, export, corpus, judges, out) -> dict:
    """Evaluate the untrained export with its predictions replaced by `predict`."""
    synthesizer = Synthesizer(untrained.trial, untrained.vocab, predict, untrained.vocoder)
    return evaluate_checkpoint(
        export, corpus, out, cfg=EVAL_CFG, judges=judges, synthesizer=synthesizer
    )


@pytest.mark.parametrize(("case", "output", "reason"), DEGENERATE, ids=[d[0] for d in DEGENERATE])
def test_degenerate_mel_is_a_counted_failure(
    case, output, reason, untrained, untrained_export, smoke_corpus, judges, tmp_path
):
    def predict(ids, ref, durations=None):
        return output() if durations is None else untrained.predict_mel(ids, ref, durations)

    metrics = evaluate_with(predict, untrained, untrained_export, smoke_corpus, judges, tmp_path)
    assert metrics.failed_utterances == metrics.utterances > 0
    assert metrics.wer == 1.0 and metrics.sim == 0.0
    rows = [json.loads(line) for line in (tmp_path / "per_utterance.jsonl").open()]
    assert all(r["failed"].startswith(reason) for r in rows), {r["failed"] for r in rows}
    assert math.isfinite(metrics.val_loss), "teacher forcing still measured the model"


def test_a_model_that_raises_is_a_counted_failure(
    untrained, untrained_export, smoke_corpus, judges, tmp_path
):
    metrics = evaluate_with(raises, untrained, untrained_export, smoke_corpus, judges, tmp_path)
    assert metrics.failed_utterances == metrics.utterances
    assert metrics.val_loss == math.inf, "a model that cannot reconstruct has infinite loss"
    assert metrics.failure_reasons == {"synthesis error": metrics.utterances}


@pytest.mark.parametrize(
    ("bias", "reason"),
    [
        (1e4, "absurdly long mel"),  # expm1 overflows: capped, not astronomically long
        (math.inf, "absurdly long mel"),
        (-1e4, "empty audio"),  # every token 0 frames: one frame is emitted
        (math.nan, "empty audio"),
    ],
)
def test_degenerate_durations_from_a_real_model(
    bias, reason, untrained_export, smoke_corpus, judges, tmp_path
):
    """The real network with its duration head broken by weight surgery."""
    broken = tmp_path / "export"
    broken.mkdir()
    weights = load_file(str(untrained_export / "model.safetensors"))
    weights["duration.out.bias"] = torch.full_like(weights["duration.out.bias"], bias)
    save_file(weights, str(broken / "model.safetensors"))
    (broken / "model_config.json").write_text((untrained_export / "model_config.json").read_text())
    metrics = evaluate_checkpoint(
        broken, smoke_corpus, tmp_path / "out", cfg=EVAL_CFG, judges=judges
    )
    assert metrics.failed_utterances == metrics.utterances
    rows = [json.loads(line) for line in (tmp_path / "out" / "per_utterance.jsonl").open()]
    assert all(r["failed"].startswith(reason) for r in rows), {r["failed"] for r in rows}


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e30, -1e30, 40.0])
def test_predicted_durations_are_bounded(value):
    log_durations = torch.tensor([[value, 1.0, value]])
    mask = torch.tensor([[True, True, False]])
    frames = VoiceCloner.predict_durations(log_durations, mask)
    assert frames.dtype == torch.long
    assert (frames >= 0).all() and (frames <= MAX_FRAMES_PER_TOKEN).all()
    assert frames[0, 1] == round(math.expm1(1.0)) and frames[0, 2] == 0 and frames.sum() > 0


@pytest.mark.parametrize("frames", [0, 1, 2, 3, 4, 5, 40])
def test_griffin_lim_takes_any_length(frames):
    cfg = FeatureConfig()
    vocoder = GriffinLimVocoder(cfg)
    mel = torch.randn(frames, cfg.n_mels) - 4
    wave = vocoder(mel)
    assert wave.shape == (cfg.hop_length * max(frames - 1, 0),)
    assert torch.isfinite(wave).all()
    if frames >= vocoder.min_frames:  # long enough: exactly torchaudio's Griffin-Lim
        direct = vocoder._griffin_lim(vocoder._inverse_mel(torch.exp(mel.T)).clamp(min=0))
        assert torch.equal(
            wave, direct / direct.abs().max() * 0.95 if direct.abs().max() > 0.95 else direct
        )


def test_a_bounded_decode_counts_as_wer_1_and_keeps_its_sim(
    trained_export, smoke_corpus, judges, tmp_path
):
    """An ASR judge that hits its decode bound on an utterance (`DecodeBounded`) fails that
    utterance's transcript — WER 1, counted, reason "decode bounded" — while its SIM is what
    the speaker judge measures anyway."""
    from eval.errors import DecodeBounded
    from eval.judges import Judges

    class Hallucinating:
        name = "hallucinating"

        def transcribe(self, wave, rate):
            raise DecodeBounded("900 words from 2.0 s of audio")

        def version(self):
            return "hallucinating: test"

    bounded = Judges(judges.embedder, Hallucinating())
    metrics = evaluate_checkpoint(
        trained_export, smoke_corpus, tmp_path / "bounded", cfg=EVAL_CFG, judges=bounded
    )
    assert metrics.failure_reasons == {"decode bounded": metrics.utterances}
    assert metrics.wer == 1.0
    rows = [json.loads(line) for line in (tmp_path / "bounded" / "per_utterance.jsonl").open()]
    assert rows[0]["failed"] == "decode bounded (900 words from 2.0 s of audio)"
    # SIM is measured as usual (a failure of any other kind scores 0).
    assert all(0 < r["sim"] <= 1 for r in rows)
    assert metrics.sim == pytest.approx(sum(r["sim"] for r in rows) / len(rows))

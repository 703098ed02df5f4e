"""The judges on audio with known answers, and their loading paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eval.asr import PocketsphinxJsgf, make_transcriber
from eval.errors import JudgeUnavailable
from eval.judges_check import check_judges, equal_error_rate
from eval.speaker_similarity import (
    ResemblyzerEmbedder,
    SpeechbrainEcapaEmbedder,
    cosine,
    verify_checkpoint_loaded,
)
from eval.word_error_rate import pooled_wer, utterance_wer
from tests.eval.tiny_ecapa import write_ecapa_dir
from training.corpus.audio import read_audio
from training.corpus.manifest import Corpus

pytestmark = pytest.mark.slow


def test_equal_error_rate():
    assert equal_error_rate(np.array([0.9, 0.8, 0.7]), np.array([0.1, 0.2, 0.3])) == 0.0
    assert equal_error_rate(np.array([0.9, 0.2]), np.array([0.8, 0.1])) == pytest.approx(0.5)


def test_judges_check_on_the_smoke_corpus(smoke_corpus):
    """The issue's bounds on the default corpus (EER <= 10 %, identical SIM >= 0.99, GT WER <=
    0.15, Griffin-Lim WER <= 0.25, wrong text and noise >= 0.9), loosened in proportion to
    the 4-voice, 24-utterance smoke sample. DNSMOS (on one utterance per voice) ranks the
    recordings above their Griffin-Lim resynthesis above white noise."""
    result = check_judges(smoke_corpus, per_speaker=6, quality_per_speaker=1)
    assert result["eer"] <= 0.15
    assert result["identical_sim"] >= 0.99
    assert result["gt_wer"] <= 0.2
    assert result["gl_wer"] <= 0.3
    assert result["wrong_text_wer"] >= 0.85
    assert result["noise_wer"] >= 0.85
    assert result["same_speaker_sim"] > result["different_speaker_sim"] + 0.1
    assert result["gt_dnsmos"] > result["gl_dnsmos"] > result["noise_dnsmos"]
    assert result["quality_utterances"] == 4


def test_pocketsphinx_hears_the_corpus_and_not_noise(smoke_corpus):
    corpus = Corpus.open(smoke_corpus)
    asr = PocketsphinxJsgf(smoke_corpus / "grammar.jsgf")
    utts = corpus.heldout[:6]
    waves = [read_audio(corpus.audio_path(u)) for u in utts]
    heard = pooled_wer(
        [utterance_wer(u.text, asr.transcribe(w, r)) for u, (w, r) in zip(utts, waves, strict=True)]
    )
    assert heard <= 0.25
    silence = asr.transcribe(np.zeros(16000, np.float32), 16000)
    assert utterance_wer(utts[0].text, silence).wer >= 0.9


def test_asr_without_a_grammar_or_model_names_the_way_out(tmp_path):
    with pytest.raises(JudgeUnavailable, match="grammar"):
        make_transcriber("pocketsphinx-jsgf", grammar=None)
    with pytest.raises(JudgeUnavailable, match=r"whisper: .*(faster-whisper|local directory)"):
        make_transcriber("whisper", source=str(tmp_path / "nowhere"))
    with pytest.raises(JudgeUnavailable, match=r"speechbrain ASR: set eval\.asr_judge_source"):
        make_transcriber("speechbrain", source=None)


def test_resemblyzer_same_audio_is_one_and_voices_differ(smoke_corpus):
    corpus = Corpus.open(smoke_corpus)
    judge = ResemblyzerEmbedder()
    by_speaker: dict[str, list] = {}
    for u in corpus.heldout:
        by_speaker.setdefault(u.speaker, []).append(u)
    a1, a2, b1 = (*by_speaker[sorted(by_speaker)[0]][:2], by_speaker[sorted(by_speaker)[1]][0])
    waves = [read_audio(corpus.audio_path(u))[0] for u in (a1, a1, a2, b1)]
    v = judge.embed(waves, 16000)
    assert cosine(v[0], v[1]) > 0.999
    assert cosine(v[0], v[2]) > cosine(v[0], v[3])
    silent = judge.embed([np.zeros(16000, np.float32)], 16000)
    assert not np.isfinite(silent).all()  # no speech: NaN row, not a crash


# --- speechbrain ECAPA from a local directory ----------------------------------------------


@pytest.mark.parametrize("prefix", ["", "module."])
def test_speechbrain_ecapa_local_dir_loads_exactly_the_saved_weights(tmp_path, prefix):
    saved = write_ecapa_dir(tmp_path / "ecapa", prefix)
    judge = SpeechbrainEcapaEmbedder(str(tmp_path / "ecapa"), tmp_path / "savedir")
    loaded = judge._model.mods.embedding_model.state_dict()
    assert set(loaded) == set(saved)
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    vectors = judge.embed(
        [np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)], 16000
    )
    assert vectors.shape == (1, 32) and np.isfinite(vectors).all()


def test_a_checkpoint_that_does_not_fit_is_refused(tmp_path):
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    write_ecapa_dir(tmp_path / "ecapa")
    other = ECAPA_TDNN(
        80, channels=[32, 32, 32, 32, 96], attention_channels=8, se_channels=8, lin_neurons=16
    )
    with pytest.raises(JudgeUnavailable, match="does not match the model"):
        verify_checkpoint_loaded(other, tmp_path / "ecapa" / "embedding_model.ckpt")


def test_missing_speechbrain_weights_name_the_backend_and_the_local_path_option(tmp_path):
    with pytest.raises(JudgeUnavailable, match=r"speechbrain-ecapa: .*local directory"):
        SpeechbrainEcapaEmbedder(str(tmp_path / "absent"), tmp_path / "savedir")


def test_judges_from_a_model_hub_must_be_pinned_to_a_revision():
    """A hub id without a revision would judge with whatever the hub serves that day."""
    with pytest.raises(JudgeUnavailable, match=r"eval\.speaker_judge_revision"):
        SpeechbrainEcapaEmbedder("speechbrain/spkrec-ecapa-voxceleb", "unused-savedir")
    with pytest.raises(JudgeUnavailable, match=r"eval\.asr_judge_revision"):
        make_transcriber("speechbrain", source="speechbrain/asr-crdnn-rnnlm-librispeech")


def test_resemblyzer_batches_partials_as_embed_utterance_would(smoke_corpus):
    """One LSTM call for many utterances' partials gives each utterance the embedding
    Resemblyzer's own `embed_utterance` gives it (up to float rounding); audio with no speech
    still gets a row of NaN."""
    from resemblyzer import preprocess_wav

    corpus = Corpus.open(smoke_corpus)
    waves = [read_audio(corpus.audio_path(u))[0] for u in corpus.heldout[:12]]
    judge = ResemblyzerEmbedder()
    batched = judge.embed([np.zeros(800, np.float32), *waves], 16000)
    assert np.isnan(batched[0]).all()
    for wave, vector in zip(waves, batched[1:], strict=True):
        one = judge._encoder.embed_utterance(preprocess_wav(wave, source_sr=16000))
        assert np.abs(vector - one / np.linalg.norm(one)).max() < 1e-5


def test_pocketsphinx_decodes_in_a_child_that_a_time_bound_replaces(smoke_corpus, monkeypatch):
    """A decode past its bound ends in DecodeBounded; the decoder process is replaced and the
    next utterance is transcribed exactly as before."""
    import eval.asr as asr
    from eval.errors import DecodeBounded

    judge = PocketsphinxJsgf(smoke_corpus / "grammar.jsgf")
    wave, rate = read_audio(
        Corpus.open(smoke_corpus).audio_path(Corpus.open(smoke_corpus).heldout[0])
    )
    heard = judge.transcribe(wave, rate)
    assert heard
    monkeypatch.setattr(asr, "POCKETSPHINX_SECONDS", 0.0)
    monkeypatch.setattr(asr, "POCKETSPHINX_SECONDS_PER_AUDIO_SECOND", 0.0)
    first = judge._decoder._process.pid
    with pytest.raises(DecodeBounded, match=r"decoding took over 0\.0 s for .* s of audio"):
        judge.transcribe(wave, rate)
    monkeypatch.undo()
    assert judge._decoder._process.pid != first
    assert judge.transcribe(wave, rate) == heard

"""Log-mel cache: computed once, aligned with phoneme durations, invalidated by parameters."""

from __future__ import annotations

import numpy as np
import pytest

from training.config import FeatureConfig
from training.corpus.audio import read_audio
from training.corpus.features import MelExtractor, frame_durations, load_features
from training.corpus.manifest import Corpus


def test_frame_durations_sum_to_frames_and_follow_boundaries():
    # 3 phonemes of 256, 512, 768 samples at hop 256 → 1, 2, 3 (+1 centre frame on the last).
    assert frame_durations([256, 512, 768], 7, 256) == [1, 2, 4]
    assert sum(frame_durations([5, 5, 3000], 12, 256)) == 12


def test_features_are_cached_and_match_a_fresh_extraction(smoke_corpus):
    corpus = Corpus.open(smoke_corpus)
    cfg = FeatureConfig()
    store = load_features(corpus, cfg, workers=2, progress=False)
    assert store.mels.shape[1] == cfg.n_mels
    assert len(store.offsets) == len(corpus.utterances) + 1
    i = 5
    wave, _ = read_audio(corpus.audio_path(corpus.utterances[i]))
    np.testing.assert_allclose(store.mel(i), MelExtractor(cfg)(wave).numpy(), atol=1e-5)
    durations = store.frame_durations(i)
    assert durations.sum() == store.mel(i).shape[0]
    assert len(durations) == len(corpus.utterances[i].phonemes)
    mtime = (store.path / "mels.npy").stat().st_mtime_ns
    again = load_features(corpus, cfg, progress=False)
    assert again.path == store.path and (store.path / "mels.npy").stat().st_mtime_ns == mtime
    assert store.path.name in corpus.card()["features"]


def test_changing_parameters_builds_a_new_cache_and_keeps_the_old(smoke_corpus):
    corpus = Corpus.open(smoke_corpus)
    base = load_features(corpus, FeatureConfig(), progress=False)
    other = load_features(corpus, FeatureConfig(n_mels=40), workers=1, progress=False)
    assert other.path != base.path and other.mels.shape[1] == 40
    assert (base.path / "mels.npy").exists()


def test_features_at_a_rate_the_corpus_does_not_have_are_refused(smoke_corpus):
    from training.corpus.manifest import CorpusError

    with pytest.raises(CorpusError, match=r"not at features.sample_rate=22050"):
        load_features(Corpus.open(smoke_corpus), FeatureConfig(sample_rate=22050), progress=False)

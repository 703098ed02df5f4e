"""eSpeak through ctypes: timings that add up, and reproducible audio."""

from __future__ import annotations

import numpy as np
import pytest

from training.corpus.espeak import PAUSE, Espeak, Voice


@pytest.fixture(scope="module")
def espeak() -> Espeak:
    engine = Espeak()
    yield engine
    engine.close()


def test_phoneme_durations_cover_the_audio_exactly(espeak):
    s = espeak.synthesize("The old man found a small red box.", Voice(variant="m3"))
    assert s.sample_rate == 22050
    assert len(s.phonemes) == len(s.durations) > 10
    assert sum(s.durations) == len(s.audio)
    assert all(d >= 0 for d in s.durations)
    assert s.phonemes[0].startswith(PAUSE)  # the leading silence is a pause token
    assert np.abs(s.audio.astype(np.int32)).max() > 1000  # it is speech, not silence


def test_reset_makes_audio_independent_of_history(espeak):
    text, voice = "The dog waited near the garden.", Voice(variant="f3", pitch=70)
    espeak.reset()
    first = espeak.synthesize(text, voice)
    espeak.synthesize("Something else entirely, to change the state.", Voice(variant="m1"))
    espeak.reset()
    again = espeak.synthesize(text, voice)
    assert np.array_equal(first.audio, again.audio)
    assert first.durations == again.durations


def test_voices_differ_and_unknown_voices_fail(espeak):
    a = espeak.synthesize("Hello there.", Voice(variant="m1", pitch=30)).audio
    b = espeak.synthesize("Hello there.", Voice(variant="f2", pitch=70)).audio
    assert len(a) != len(b) or not np.array_equal(a, b)
    with pytest.raises(ValueError, match="no voice"):
        espeak.synthesize("Hello.", Voice(language="xx-nonexistent"))


def test_phonemize_gives_the_same_tokens_as_synthesis(espeak):
    voice = Voice()
    assert (
        espeak.phonemize("A quiet garden.") == espeak.synthesize("A quiet garden.", voice).phonemes
    )

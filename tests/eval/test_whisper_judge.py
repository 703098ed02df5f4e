"""The whisper judge through a real faster-whisper loading a real (tiny, random) CTranslate2
model, and every way of not having one."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from eval.asr import FasterWhisper, make_transcriber
from eval.errors import DecodeBounded, JudgeUnavailable
from tests.eval.tiny_whisper import write_tiny_whisper

TEST_REVISION = "0123456789abcdef0123456789abcdef01234567"
"""A made-up commit for a snapshot the test writes itself (no hub is involved)."""


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_whisper(tmp_path_factory.mktemp("whisper") / "tiny")


def speech_like(seconds: float = 1.0, rate: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(0).normal(0, 0.02, t.shape)
    return (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + noise).astype(
        np.float32
    )


def test_a_local_ctranslate2_directory_loads_and_transcribes(tiny_whisper):
    judge = make_transcriber("whisper", source=str(tiny_whisper))
    assert isinstance(judge, FasterWhisper)
    text = judge.transcribe(speech_like(), 22050)  # resampled to 16 kHz inside
    assert isinstance(text, str)  # random weights: the words are garbage, the path is real
    assert judge.transcribe(speech_like(), 22050) == text  # beam search: deterministic
    version = judge.version()
    assert version.startswith("whisper: faster-whisper 1.2.1")
    assert str(tiny_whisper) in version  # which model judged, and where it ran
    assert version.endswith((", cpu int8)", ", cuda float16)"))


def test_a_pinned_name_loads_from_the_cache_offline(tiny_whisper, tmp_path, monkeypatch):
    """A name at a revision resolves in `cache_dir` (huggingface_hub's layout), never the cwd."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "judges"
    snapshot = cache / "models--Systran--faster-whisper-tiny.en" / "snapshots" / TEST_REVISION
    shutil.copytree(tiny_whisper, snapshot)
    judge = make_transcriber("whisper", source="tiny.en", revision=TEST_REVISION, cache_dir=cache)
    assert isinstance(judge.transcribe(speech_like(), 22050), str)
    assert f"tiny.en@{TEST_REVISION}" in judge.version()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["judges"]


def test_an_absent_directory_says_so(tmp_path):
    with pytest.raises(JudgeUnavailable, match=r"whisper: model directory .*nowhere does not"):
        make_transcriber("whisper", source=str(tmp_path / "nowhere"))


def test_no_source_and_an_unpinned_name_ask_for_a_revision(tmp_path):
    with pytest.raises(
        JudgeUnavailable, match=r"eval\.asr_judge_source .*large-v3 at [0-9a-f]{40}"
    ):
        make_transcriber("whisper", source=None, cache_dir=tmp_path)
    with pytest.raises(JudgeUnavailable, match=r"unpinned: set eval\.asr_judge_revision"):
        make_transcriber("whisper", source="large-v3", cache_dir=tmp_path)


def test_a_pinned_name_absent_offline_names_the_cache_and_the_way_out(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # otherwise huggingface_hub retries for ~25 s
    with pytest.raises(JudgeUnavailable) as err:
        make_transcriber("whisper", source="large-v3", revision=TEST_REVISION, cache_dir=tmp_path)
    message = str(err.value)
    assert f"not in the cache {tmp_path}" in message
    assert "huggingface-cli download Systran/faster-whisper-large-v3" in message
    assert "--local-dir" in message and "eval.asr_judge_source" in message


def test_an_unknown_name_lists_the_known_ones(tmp_path):
    with pytest.raises(JudgeUnavailable, match=r"whisper: Invalid model size 'huge-v9'.*large-v3"):
        make_transcriber("whisper", source="huge-v9", revision=TEST_REVISION, cache_dir=tmp_path)


def test_a_directory_that_is_not_a_model_is_refused(tmp_path):
    (tmp_path / "model").mkdir()
    with pytest.raises(JudgeUnavailable, match=r"does not load as a CTranslate2 Whisper model"):
        make_transcriber("whisper", source=str(tmp_path / "model"))


def test_unusable_cuda_falls_back_to_the_cpu_and_says_so(tiny_whisper):
    """No GPU here, so CUDA fails as it does where the CUDA 12 libraries are missing."""
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        pytest.skip("a usable GPU: nothing to fall back from")
    with pytest.warns(UserWarning, match="whisper: CUDA unusable"):
        judge = FasterWhisper(str(tiny_whisper), device="cuda")
    assert judge.version().endswith(", cpu int8)")
    assert isinstance(judge.transcribe(speech_like(), 22050), str)


class Segment:
    def __init__(self, text: str) -> None:
        self.text = text


def test_a_hallucinating_decode_is_bounded_by_words_and_by_time(monkeypatch):
    """Garbage audio must not cost minutes: more words than any speech of that length, or a
    decode past its time bound, stops with DecodeBounded (the utterance then scores WER 1)."""
    import eval.asr as asr

    assert asr.bounded_transcript([Segment(" hello there "), Segment("world")], 2.0) == (
        "hello there world"
    )
    endless = (Segment("la " * 5) for _ in range(10**6))
    with pytest.raises(DecodeBounded, match=r"words from 1\.0 s of audio"):
        asr.bounded_transcript(endless, 1.0)
    monkeypatch.setattr(asr, "DECODE_SECONDS", -1.0)
    monkeypatch.setattr(asr, "DECODE_SECONDS_PER_AUDIO_SECOND", 0.0)
    with pytest.raises(DecodeBounded, match="decoding took over"):
        asr.bounded_transcript([Segment("one")], 1.0)

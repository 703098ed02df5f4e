"""Nested budgets: prefixes, voices growing with the budget, and honest errors."""

from __future__ import annotations

import pytest

from training.config import DataBudget
from training.corpus.budgets import select_budget, speaker_schedule, speakers_allowed
from training.corpus.manifest import CorpusError, Utterance


def test_schedule_grows_voices_with_the_prefix_and_stays_balanced():
    total, n_speakers = 4096, 32
    order = speaker_schedule([total] * n_speakers, total, growth=0.5, minimum=4)
    for n in (64, 256, 1024, 4096):
        prefix = order[:n]
        voices = set(prefix)
        assert len(voices) == speakers_allowed(n, total, n_speakers, 0.5, 4)
        counts = [prefix.count(v) for v in voices]
        # Balanced over the voices that have joined: early joiners lead by a bounded margin.
        assert max(counts) <= 2 * min(counts) + 2
    assert len(set(order[:64])) < len(set(order[:1024])) < len(set(order))


def test_growth_zero_uses_every_voice_from_the_start():
    order = speaker_schedule([100] * 10, 100, growth=0.0, minimum=1)
    assert set(order[:10]) == set(range(10))


def test_schedule_respects_capacity():
    capacity = [1, 50, 2, 50]
    order = speaker_schedule(capacity, 103, growth=0.5, minimum=2)
    assert [order.count(i) for i in range(4)] == capacity
    with pytest.raises(ValueError, match=r"cannot schedule"):
        speaker_schedule([1, 1], 3, growth=0.5, minimum=1)


def utterance(i: int, seconds: float) -> Utterance:
    return Utterance(
        id=f"u{i}",
        speaker="s",
        split="train",
        text="x",
        phonemes=["x"],
        audio=f"a/{i}.flac",
        duration_s=seconds,
        sample_rate=16000,
        num_samples=int(seconds * 16000),
        order=i,
    )


def test_budgets_are_prefixes_in_utterances_and_hours():
    train = [utterance(i, 2.0) for i in range(100)]
    small = select_budget(train, DataBudget(utterances=10))
    large = select_budget(train, DataBudget(utterances=50))
    assert large[:10] == small
    by_hours = select_budget(train, DataBudget(hours=60 / 3600))  # 60 s = 30 clips of 2 s
    assert len(by_hours) == 30 and by_hours == train[:30]


def test_budget_larger_than_the_corpus_is_an_error():
    train = [utterance(i, 2.0) for i in range(10)]
    with pytest.raises(CorpusError, match=r"utterances=11 exceeds the 10 training"):
        select_budget(train, DataBudget(utterances=11))
    with pytest.raises(CorpusError, match=r"hours=1.0 exceeds"):
        select_budget(train, DataBudget(hours=1.0))

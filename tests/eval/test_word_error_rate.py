"""WER and its normalisation, against hand-computed answers."""

from __future__ import annotations

import pytest

from eval.word_error_rate import normalize, pooled_wer, utterance_wer


def test_normalisation_lowercases_strips_punctuation_keeps_apostrophes():
    assert normalize("Hello, World!  It's  JOHN'S 'quoted' text...") == (
        "hello world it's john's quoted text"
    )
    assert normalize("  well-known; e.g.  ") == "well known e g"


def test_hand_computed_wer():
    # ref  the cat sat on the mat       (6 words)
    # hyp  the cat sit on mat mat now
    # best alignment: sat→sit (S), the→mat (S), mat=mat, +now (I): 3 edits; deleting "the"
    # instead costs D + 2 I + S = 4.
    r = utterance_wer("The cat sat on the mat.", "the cat sit on mat mat now")
    assert (r.errors, r.words) == (3, 6)
    assert r.wer == pytest.approx(0.5)


def test_identical_and_empty_hypotheses():
    assert utterance_wer("Mary saw a dog.", "mary saw a dog").errors == 0
    empty = utterance_wer("Mary saw a dog.", "")
    assert (empty.errors, empty.words, empty.wer) == (4, 4, 1.0)


def test_wer_is_pooled_over_words_not_averaged_over_utterances():
    short = utterance_wer("yes", "no")  # 1 error / 1 word
    long = utterance_wer(
        "one two three four five six seven eight nine",
        "one two three four five six seven eight nine",
    )  # 0 / 9
    assert pooled_wer([short, long]) == pytest.approx(0.1)  # mean of rates would say 0.5


def test_empty_reference_is_an_error():
    with pytest.raises(ValueError, match="empty after normalisation"):
        utterance_wer("...", "hello")

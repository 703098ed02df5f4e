"""WER and its normalisation, against hand-computed answers."""

from __future__ import annotations

import pytest

from eval.word_error_rate import normalize, pooled_wer, utterance_wer


def test_normalisation_lowercases_and_strips_punctuation():
    assert normalize("Hello, World!  JOHN  'quoted' text...") == "hello world john quoted text"
    assert normalize("  well-known; e.g.  ") == "well known e g"
    assert normalize("It's [laughs] uh fine.") == "it is fine"  # Whisper's: asides, fillers


def test_titles_numbers_and_currency_are_spelled_one_way():
    """seed-tts-eval-style scoring with Whisper's normaliser: how a number or a title is
    written is not an error."""
    assert utterance_wer("Mr. Smith paid $20.", "mister smith paid twenty dollars").errors == 0
    assert utterance_wer("Dr. Jones saw seven cats", "doctor jones saw 7 cats").errors == 0


def test_british_and_american_spellings_are_one_word():
    assert normalize("colour") == normalize("color") == "color"
    assert utterance_wer("The colour of the harbour", "the color of the harbor").errors == 0


def test_hyphenated_words_are_split():
    assert normalize("a well-known sea-side town") == "a well known sea side town"
    assert utterance_wer("a well-known town", "a well known town").errors == 0


def test_real_errors_still_count():
    r = utterance_wer("Mr. Smith paid $20 for the colour", "mister smith paid $30 for a color")
    assert (r.errors, r.words) == (2, 7)  # $20 → $30, the → a
    assert utterance_wer("Seven red apples fell.", "eleven red apples fell").errors == 1


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
        "we sailed past the old mill to the harbour",
        "we sailed past the old mill to the harbour",
    )  # 0 / 9
    assert pooled_wer([short, long]) == pytest.approx(0.1)  # mean of rates would say 0.5


def test_empty_reference_is_an_error():
    with pytest.raises(ValueError, match="empty after normalisation"):
        utterance_wer("...", "hello")

"""Word error rate with jiwer, after seed-tts-eval's normalisation.

Normalisation: lower-case; punctuation removed except apostrophes inside words; whitespace
collapsed. WER is pooled: total edits over total reference words, not a mean of per-utterance
rates (short utterances would otherwise weigh as much as long ones).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import jiwer

__all__ = ["UtteranceWer", "normalize", "pooled_wer", "utterance_wer"]

_PUNCTUATION = re.compile("[" + re.escape(string.punctuation.replace("'", "")) + "]")
_LONE_APOSTROPHES = re.compile(r"(?<!\w)'|'(?!\w)")

_TRANSFORM = jiwer.Compose(
    [
        jiwer.ToLowerCase(),
        jiwer.RemoveMultipleSpaces(),
        jiwer.Strip(),
        jiwer.ReduceToListOfListOfWords(),
    ]
)


def normalize(text: str) -> str:
    """`"Hello, World!  It's"` → `"hello world it's"`."""
    text = _PUNCTUATION.sub(" ", text.lower())
    text = _LONE_APOSTROPHES.sub(" ", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class UtteranceWer:
    reference: str
    hypothesis: str
    errors: int
    """substitutions + deletions + insertions"""
    words: int
    """reference words"""

    @property
    def wer(self) -> float:
        return self.errors / self.words if self.words else float(self.errors > 0)


def utterance_wer(reference: str, hypothesis: str) -> UtteranceWer:
    """Edit counts for one utterance, both sides normalised."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        raise ValueError(f"reference text {reference!r} is empty after normalisation")
    if not hyp:  # jiwer refuses empty hypotheses: every reference word is a deletion
        return UtteranceWer(ref, hyp, len(ref.split()), len(ref.split()))
    out = jiwer.process_words(
        ref, hyp, reference_transform=_TRANSFORM, hypothesis_transform=_TRANSFORM
    )
    return UtteranceWer(
        ref,
        hyp,
        out.substitutions + out.deletions + out.insertions,
        out.substitutions + out.deletions + out.hits,
    )


def pooled_wer(records: list[UtteranceWer]) -> float:
    """Σ errors / Σ reference words."""
    words = sum(r.words for r in records)
    return sum(r.errors for r in records) / words if words else float("nan")

"""Word error rate with jiwer, after Whisper's English text normalisation.

Normalisation (every ASR judge, both reference and hypothesis): Whisper's
`EnglishTextNormalizer` (the PyPI package whisper-normalizer, a copy of openai-whisper's) —
lower-case; punctuation and bracketed asides removed; fillers ("uh", "hmm") dropped;
contractions expanded; titles spelled out ("mr" → "mister"); hyphens split; spoken numbers
and currency written as digits ("twenty dollars" → "$20", "seven" → "7"); British spellings
mapped to American ("colour" → "color"). Then tokens without a letter or digit are dropped
(Whisper's normaliser leaves a lone "." after a trailing "..."), so no punctuation is ever
counted as a word.

WER is pooled: total edits over total reference words, not a mean of per-utterance rates
(short utterances would otherwise weigh as much as long ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import jiwer

if TYPE_CHECKING:
    from whisper_normalizer.english import EnglishTextNormalizer

__all__ = ["UtteranceWer", "normalize", "pooled_wer", "utterance_wer"]

_TRANSFORM = jiwer.Compose(
    [
        jiwer.ToLowerCase(),
        jiwer.RemoveMultipleSpaces(),
        jiwer.Strip(),
        jiwer.ReduceToListOfListOfWords(),
    ]
)


@cache
def _english() -> EnglishTextNormalizer:
    """Built once, on first use (it reads a 56 kB spelling map)."""
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    """`"Mr. Smith paid $20, colour-blind!"` → `"mister smith paid $20 color blind"`."""
    words = _english()(text).split()
    return " ".join(w for w in words if any(c.isalnum() for c in w))


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

"""Errors of the evaluation package (importable without loading any judge)."""

from __future__ import annotations

__all__ = ["DecodeBounded", "JudgeUnavailable"]


class JudgeUnavailable(RuntimeError):
    """A judge's weights or package cannot be found; the message says how to provide them."""


class DecodeBounded(RuntimeError):
    """A transcription stopped at its bound (time, or words for the audio's length): garbage
    audio must not cost minutes of decoding. The utterance counts as WER 1, and its failure
    reason says "decode bounded" with why."""

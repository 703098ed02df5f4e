"""How corpora are built: the embedded synthetic corpus and real corpora prepared from disk.

Import these from `training.config` (which re-exports them). A trial names its corpus with
`training.config.CorpusRef`; these configs say how that corpus is made.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from training.config_io import Fraction, NonNegative, Positive, PositiveFloat, frozen_config

__all__ = ["RealCorpusConfig", "SyntheticCorpusConfig"]


@frozen_config
class SyntheticCorpusConfig:
    """The embedded eSpeak NG corpus: who speaks, how much, and the seed that fixes it all."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")] = "default"
    seed: NonNegative = 0
    train_speakers: Positive = 56
    """Distinct training voices (from the curated roster in `training.corpus.speakers`)."""
    heldout_speakers: Annotated[int, Field(ge=2)] = 8
    """Voices never seen in training; cloning quality is measured on them."""
    dev_speakers: NonNegative = 0
    """Voices held out from training and from evaluation: the `converged` protocol stops on
    their loss. Held-out, dev and training voices never share an eSpeak variant family."""
    dev_utterances_per_speaker: Annotated[int, Field(ge=3)] = 12
    train_utterances: Positive = 8192
    """Size of the training pool; every data budget is a prefix of it."""
    heldout_utterances_per_speaker: Annotated[int, Field(ge=3)] = 24
    """Prompt, enrolment and evaluation sentences per held-out voice (all held-out sentences)."""
    speaker_growth: Annotated[float, Field(ge=0, le=1)] = 0.5
    """A budget of n of the N pool utterances holds ~train_speakers·(n/N)^growth voices
    (0: every voice from the first utterance; 0.5: voices grow with sqrt of the budget)."""
    min_speakers_per_budget: Positive = 8
    rate_jitter: Annotated[float, Field(ge=0, lt=0.5)] = 0.08
    """Per-utterance speaking-rate variation, as a fraction of the voice's rate."""
    sample_rate: Positive = 16000

    def __post_init__(self) -> None:
        if self.min_speakers_per_budget > self.train_speakers:
            raise ValueError(
                f"min_speakers_per_budget ({self.min_speakers_per_budget}) must be <= "
                f"train_speakers ({self.train_speakers})"
            )
        if self.train_utterances < self.train_speakers:
            raise ValueError(
                f"train_utterances ({self.train_utterances}) must be >= train_speakers "
                f"({self.train_speakers}) so every voice speaks"
            )


@frozen_config
class RealCorpusConfig:
    """How to turn a real corpus on disk into a prepared voicescale corpus."""

    layout: Literal["libritts", "librispeech", "vctk", "manifest"]
    source: str
    """Directory of the corpus (or the JSONL/CSV file for layout `manifest`)."""
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")] = "real"
    seed: NonNegative = 0
    heldout_fraction: Fraction = 0.1
    """Share of speakers held out for evaluation (at least `min_heldout_speakers`)."""
    min_heldout_speakers: Positive = 2
    dev_speakers: NonNegative = 0
    """Speakers held out from training and from evaluation (for the `converged` protocol's
    stopping rule), cut after the held-out ones."""
    sample_rate: Positive = 16000
    min_source_sample_rate: Positive = 16000
    """Audio below this rate is skipped rather than upsampled."""
    max_duration_s: PositiveFloat = 30.0
    """Longer utterances are skipped (and counted)."""
    speaker_growth: Annotated[float, Field(ge=0, le=1)] = 0.5
    min_speakers_per_budget: Positive = 8
    workers: Positive = 2

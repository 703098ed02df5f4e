"""How checkpoints are judged: the speaker and ASR judges, the vocoder, and how much held-out
material. Part of the one typed configuration (`training.config` re-exports it)."""

from __future__ import annotations

from typing import Literal

from training.config_io import NonNegative, Positive, PositiveFloat, frozen_config

__all__ = ["AsrJudge", "EvalConfig"]

AsrJudge = Literal["auto", "pocketsphinx-jsgf", "pocketsphinx-lm", "whisper", "speechbrain"]


@frozen_config
class EvalConfig:
    """Which judges score cloning quality, and on how much held-out material."""

    speaker_judge: Literal["resemblyzer", "speechbrain-ecapa"] = "resemblyzer"
    speaker_judge_source: str | None = None
    """Hub id or local directory for speechbrain-ecapa (default: the hub's
    speechbrain/spkrec-ecapa-voxceleb at a pinned revision)."""
    speaker_judge_revision: str | None = None
    """The hub commit to load `speaker_judge_source` at; required for a hub id."""
    asr_judge: AsrJudge = "auto"
    """auto: pocketsphinx-jsgf on a corpus with a sentence grammar (the synthetic ones), else
    pocketsphinx-lm (open vocabulary, the en-us language model inside the pocketsphinx wheel).
    whisper (faster-whisper) and speechbrain are the hub judges."""
    asr_judge_source: str | None = None
    """whisper: a faster-whisper model name (e.g. large-v3) or a local CTranslate2 directory;
    speechbrain: a hub id or a local directory."""
    asr_judge_revision: str | None = None
    """The hub commit to load a hub `asr_judge_source` at; required for a hub id or name."""
    cache_dir: str | None = None
    """Where hub judges and vocoders are downloaded. None: `judges/` in the sweep's runs
    directory (`judges check`: beside the corpus); never the worker's working directory."""
    vocoder: Literal["griffin-lim", "hifigan"] = "griffin-lim"
    """griffin-lim: offline (torchaudio); hifigan: speechbrain's HiFi-GAN (`vocoder_source`)."""
    vocoder_source: str | None = None
    """HiFi-GAN hub id (e.g. speechbrain/tts-hifigan-libritts-16kHz) or a local directory."""
    vocoder_revision: str | None = None
    """The hub commit to load a hub `vocoder_source` at; required for a hub id."""
    sentences_per_speaker: Positive = 6
    """Held-out sentences synthesised per held-out voice (default corpus: 8 voices → 48)."""
    prompt_seconds: PositiveFloat = 3.0
    bootstrap: Positive = 1000
    audio_samples: NonNegative = 4
    """Generated clips kept per checkpoint for the report."""

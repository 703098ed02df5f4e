"""How checkpoints are judged: the speaker and ASR judges, the vocoder, and how much held-out
material. Part of the one typed configuration (`training.config` re-exports it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import SerializerFunctionWrapHandler, model_serializer

from training.config_io import NonNegative, Positive, PositiveFloat, RuleError, frozen_config

__all__ = ["AsrJudge", "EvalConfig", "QualityJudgeName"]

AsrJudge = Literal["auto", "pocketsphinx-jsgf", "pocketsphinx-lm", "whisper", "speechbrain"]
QualityJudgeName = Literal["dnsmos", "utmos"]
_QUALITY_DEFAULTS: dict[str, Any] = {
    "quality": ["dnsmos"],
    "quality_per_speaker": 2,
    "utmos_dir": None,
}


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
    quality: tuple[QualityJudgeName, ...] = ("dnsmos",)
    """Perceptual quality judges (MOS-like, 1-5), each its own metric: dnsmos (DNSMOS P.835
    OVRL, offline: its ONNX models are inside the speechmos wheel) and utmos (UTMOS22 strong
    from `utmos_dir`). Empty: no quality score (DNSMOS costs about 1.5 s of one CPU thread per
    2-3 s utterance: see `eval.quality`)."""
    quality_per_speaker: Positive | None = 2
    """The quality judges hear the first this many cloned utterances of each held-out voice
    (null: every one). DNSMOS is the evaluation's most expensive judge, so by default it hears
    2 of each voice's `sentences_per_speaker` (default sweep: 16 of 24 utterances)."""
    utmos_dir: str | None = None
    """A local directory holding `utmos.pt`, the TorchScript UTMOS judge (see
    `eval.quality.UtmosJudge` for how to make it); required when `quality` names utmos."""

    def __post_init__(self) -> None:
        if len(set(self.quality)) != len(self.quality):
            raise RuleError("quality", f"has repeated entries: {list(self.quality)}")
        if "utmos" in self.quality and not self.utmos_dir:
            raise RuleError(
                "utmos_dir",
                "required when quality names utmos: a local directory holding utmos.pt "
                "(UTMOS weights are not downloaded; see eval.quality.UtmosJudge)",
            )

    @model_serializer(mode="wrap")
    def _canonical(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The plain dict, less the quality fields while they hold their defaults: trials
        written before they existed keep their `config_hash` (results rows and golden files
        pin it, and a resumed sweep must recognise its trials); `from_dict` restores them."""
        data = handler(self)
        for key, default in _QUALITY_DEFAULTS.items():
            if data.get(key) == default:
                del data[key]
        return data

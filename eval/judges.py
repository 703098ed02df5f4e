"""The judges of one evaluation: a speaker-similarity judge, an ASR judge and the perceptual
quality judges (`eval.quality`), built once and shared by every checkpoint judged on the same
corpus with the same settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.asr import Transcriber, make_transcriber
from eval.quality import QualityJudge, make_quality_judges
from eval.speaker_similarity import SpeakerEmbedder, make_embedder
from training.config import EvalConfig

__all__ = ["Judges"]


@dataclass
class Judges:
    """The judges of one evaluation, built once and shared by every checkpoint."""

    embedder: SpeakerEmbedder
    transcriber: Transcriber
    quality: tuple[QualityJudge, ...] = ()
    """The perceptual quality judges `EvalConfig.quality` names (none: no quality metric)."""

    @classmethod
    def build(
        cls, cfg: EvalConfig, corpus_root: Path, cache_dir: str | Path | None = None
    ) -> Judges:
        """The judges `cfg` names, for the corpus at `corpus_root`.

        Hub judges are downloaded into (first that is set): `cfg.cache_dir` (the sweep sets it
        to `<runs>/judges` before trials start, so every trial and worker shares one copy),
        the `cache_dir` argument, else `judges/` beside the corpus (`<corpus_root>/../judges`,
        which is what `judges check` uses). Never the working directory. `asr_judge: auto`
        picks pocketsphinx-jsgf when the corpus has grammar.jsgf, else pocketsphinx-lm."""
        cache = cls.cache_dir_for(cfg, corpus_root, cache_dir)
        return cls(
            cls.speaker_judge(cfg, cache),
            cls.asr_judge(cfg, Path(corpus_root), cache),
            make_quality_judges(cfg.quality, cfg.utmos_dir),
        )

    @staticmethod
    def speaker_judge(cfg: EvalConfig, cache: Path) -> SpeakerEmbedder:
        """The speaker-similarity judge alone (hub downloads into `cache`)."""
        return make_embedder(
            cfg.speaker_judge,
            source=cfg.speaker_judge_source,
            revision=cfg.speaker_judge_revision,
            cache_dir=cache,
        )

    @staticmethod
    def asr_judge(cfg: EvalConfig, corpus_root: Path, cache: Path) -> Transcriber:
        """The ASR judge alone; `auto` resolves by whether the corpus has a grammar."""
        grammar = corpus_root / "grammar.jsgf"
        return make_transcriber(
            cfg.asr_judge,
            source=cfg.asr_judge_source,
            revision=cfg.asr_judge_revision,
            grammar=grammar if grammar.exists() else None,
            cache_dir=cache,
        )

    @staticmethod
    def cache_dir_for(
        cfg: EvalConfig | None, corpus_root: Path, cache_dir: str | Path | None = None
    ) -> Path:
        """`cfg.cache_dir`, else `cache_dir`, else `<corpus_root>/../judges` (absolute)."""
        chosen = (
            (cfg.cache_dir if cfg else None)
            or cache_dir
            or Path(corpus_root).resolve().parent / "judges"
        )
        return Path(chosen).resolve()

    @property
    def quality_metrics(self) -> tuple[str, ...]:
        """The metric names the quality judges give (e.g. ("dnsmos",))."""
        return tuple(judge.name for judge in self.quality)

    def score_quality(self, wave: np.ndarray, sample_rate: int) -> dict[str, float]:
        """Every quality judge's scores of one utterance, in one dict."""
        scores: dict[str, float] = {}
        for judge in self.quality:
            scores.update(judge.score(wave, sample_rate))
        return scores

    def versions(self) -> dict[str, str]:
        """Each judge's name and version (the quality judges under their metric's name): what
        results record, and part of the ceilings' cache key."""
        versions = {"speaker": self.embedder.version(), "asr": self.transcriber.version()}
        return versions | {judge.name: judge.version() for judge in self.quality}

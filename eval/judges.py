"""The judges of one evaluation: a speaker-similarity judge and an ASR judge, built once and
shared by every checkpoint judged on the same corpus with the same settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eval.asr import Transcriber, make_transcriber
from eval.speaker_similarity import SpeakerEmbedder, make_embedder
from training.config import EvalConfig

__all__ = ["Judges"]


@dataclass
class Judges:
    """The judges of one evaluation, built once and shared by every checkpoint."""

    embedder: SpeakerEmbedder
    transcriber: Transcriber

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
        return cls(cls.speaker_judge(cfg, cache), cls.asr_judge(cfg, Path(corpus_root), cache))

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

    def versions(self) -> dict[str, str]:
        return {"speaker": self.embedder.version(), "asr": self.transcriber.version()}

"""ASR judges: audio → transcript, independent of the models under test.

Backends (`EvalConfig.asr_judge`):
    pocketsphinx-jsgf  offline default: pocketsphinx 5 (en-us acoustic model inside the PyPI
                       wheel) decoding with a JSGF grammar of the corpus's sentence language
    whisper            faster-whisper from a local CTranslate2 model directory (optional extra)
    speechbrain        a speechbrain `EncoderDecoderASR` from a hub id or a local directory

eSpeak writes exact digital silence, which breaks pocketsphinx's voice-activity and feature
normalisation (WER 0.56 → 0.06 on a probe once fixed): audio is padded with 0.3 s each side and
gets faint seeded noise (−60 dBFS) before decoding.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Protocol

import numpy as np

from eval.errors import JudgeUnavailable
from eval.hub import pinned_hub_fetch
from training.corpus.audio import resample

__all__ = ["JudgeUnavailable", "PocketsphinxJsgf", "Transcriber", "make_transcriber"]

SAMPLE_RATE = 16000


class Transcriber(Protocol):
    name: str

    def transcribe(self, wave: np.ndarray, sample_rate: int) -> str:
        """Transcript of one utterance (lower-case words)."""
        ...

    def version(self) -> str: ...


class PocketsphinxJsgf:
    """pocketsphinx 5 with a finite-state grammar: it can only hear sentences of the grammar,
    which is what makes its default en-us model usable on eSpeak-like speech."""

    name = "pocketsphinx-jsgf"

    def __init__(
        self,
        grammar: str | Path,
        *,
        pad_seconds: float = 0.3,
        noise_dbfs: float = -60.0,
        seed: int = 0,
    ) -> None:
        import pocketsphinx

        grammar = Path(grammar)
        if not grammar.is_file():
            raise JudgeUnavailable(
                f"pocketsphinx-jsgf: grammar file {grammar} not found (the "
                "synthetic corpus writes grammar.jsgf next to its manifest)"
            )
        model = Path(pocketsphinx.get_model_path()) / "en-us"
        self._decoder = pocketsphinx.Decoder(
            hmm=str(model / "en-us"),
            dict=str(model / "cmudict-en-us.dict"),
            jsgf=str(grammar),
            loglevel="FATAL",
        )
        self._pad, self._noise, self._seed = pad_seconds, 10 ** (noise_dbfs / 20), seed

    def transcribe(self, wave: np.ndarray, sample_rate: int) -> str:
        audio = resample(np.asarray(wave, dtype=np.float32), sample_rate, SAMPLE_RATE)
        pad = np.zeros(int(self._pad * SAMPLE_RATE), np.float32)
        audio = np.concatenate([pad, audio, pad])
        # Seeded by content length: the same audio always gets the same noise.
        rng = np.random.default_rng([self._seed, len(audio)])
        audio = audio + rng.normal(0.0, self._noise, len(audio)).astype(np.float32)
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        self._decoder.start_utt()
        self._decoder.process_raw(pcm, full_utt=True)
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr if hypothesis is not None else ""

    def version(self) -> str:
        return f"pocketsphinx {metadata.version('pocketsphinx')} (en-us, JSGF)"


class FasterWhisper:
    """Whisper through faster-whisper, from a local CTranslate2 model directory."""

    name = "whisper"

    def __init__(self, source: str | None) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise JudgeUnavailable(
                "whisper: the optional package faster-whisper is not "
                "installed (pip install faster-whisper)"
            ) from None
        if not source or not Path(source).is_dir():
            raise JudgeUnavailable(
                f"whisper: eval.asr_judge_source must be a local directory "
                f"holding a CTranslate2 Whisper model, got {source!r}"
            )
        self._model = WhisperModel(source, device="auto", compute_type="default")
        self._source = source

    def transcribe(self, wave: np.ndarray, sample_rate: int) -> str:
        audio = resample(np.asarray(wave, dtype=np.float32), sample_rate, SAMPLE_RATE)
        segments, _ = self._model.transcribe(audio, language="en", beam_size=5)
        return " ".join(s.text.strip() for s in segments)

    def version(self) -> str:
        return f"faster-whisper {metadata.version('faster-whisper')} ({self._source})"


class SpeechbrainAsr:
    """A speechbrain `EncoderDecoderASR` (hub id or local directory)."""

    name = "speechbrain"

    def __init__(self, source: str | None, savedir: str, revision: str | None = None) -> None:
        if not source:
            raise JudgeUnavailable(
                "speechbrain ASR: set eval.asr_judge_source to a hub id "
                "(e.g. speechbrain/asr-crdnn-rnnlm-librispeech, with eval.asr_judge_revision) "
                "or a local directory with hyperparams.yaml and its checkpoints"
            )
        import torch
        from speechbrain.inference.ASR import EncoderDecoderASR

        fetch = pinned_hub_fetch("speechbrain ASR", source, revision, "eval.asr_judge_revision")
        try:
            self._model = EncoderDecoderASR.from_hparams(
                source=source,
                savedir=str(Path(savedir) / (revision or "local")[:12]),
                **({"fetch_config": fetch} if fetch else {}),
            )
        except Exception as err:
            raise JudgeUnavailable(
                f"speechbrain ASR: cannot load {source!r} ({err}); offline, "
                "give a local directory as eval.asr_judge_source"
            ) from None
        self._torch = torch
        self._source = f"{source}@{revision}" if fetch else source

    def transcribe(self, wave: np.ndarray, sample_rate: int) -> str:
        audio = resample(np.asarray(wave, dtype=np.float32), sample_rate, SAMPLE_RATE)
        batch = self._torch.from_numpy(audio)[None]
        words, _ = self._model.transcribe_batch(batch, self._torch.tensor([1.0]))
        return words[0]

    def version(self) -> str:
        return f"speechbrain {metadata.version('speechbrain')} ({self._source})"


def make_transcriber(
    kind: str,
    *,
    source: str | None = None,
    revision: str | None = None,
    grammar: str | Path | None = None,
    savedir: str = "data/judges",
) -> Transcriber:
    """The ASR judge named by `EvalConfig.asr_judge`."""
    if kind == "pocketsphinx-jsgf":
        if grammar is None:
            raise JudgeUnavailable(
                "pocketsphinx-jsgf needs the corpus grammar (grammar.jsgf); "
                "real corpora have none: use asr_judge whisper or speechbrain"
            )
        return PocketsphinxJsgf(grammar)
    if kind == "whisper":
        return FasterWhisper(source)
    if kind == "speechbrain":
        return SpeechbrainAsr(source, savedir, revision)
    raise ValueError(f"unknown ASR judge {kind!r}")

"""ASR judges: audio → transcript, independent of the models under test.

Backends (`EvalConfig.asr_judge`):
    auto               pocketsphinx-jsgf on a corpus with a sentence grammar (grammar.jsgf,
                       the synthetic corpora), else pocketsphinx-lm; `version()` names the one
                       that ran, so results say which judge they used
    pocketsphinx-jsgf  pocketsphinx 5 (en-us acoustic model inside the PyPI wheel) decoding
                       with a JSGF grammar of the corpus's sentence language
    pocketsphinx-lm    the same decoder, open vocabulary: the wheel's en-us trigram LM and
                       CMU dictionary, no grammar (offline, any English corpus)
    whisper            faster-whisper: a local CTranslate2 directory, or a model name / hub id
                       at a pinned revision, downloaded into the judges' cache directory
    speechbrain        a speechbrain `EncoderDecoderASR` from a hub id or a local directory

eSpeak writes exact digital silence, which breaks pocketsphinx's voice-activity and feature
normalisation (WER 0.56 → 0.06 on a probe once fixed): audio is padded with 0.3 s each side and
gets faint seeded noise (−60 dBFS) before decoding, for both pocketsphinx judges.
"""

from __future__ import annotations

import os
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from eval.decoder_process import DecoderProcess
from eval.errors import DecodeBounded, JudgeUnavailable
from eval.hub import pinned_hub_fetch
from training.corpus.audio import resample

__all__ = [
    "ASR_JUDGES",
    "FasterWhisper",
    "JudgeUnavailable",
    "PocketsphinxJsgf",
    "PocketsphinxLm",
    "Transcriber",
    "bounded_transcript",
    "make_transcriber",
    "resolve_asr_judge",
]

SAMPLE_RATE = 16000
MAX_WORDS_PER_SECOND = 6.0
"""Fast read speech is 3–4 words per second; more is a hallucinating decoder."""
DECODE_SECONDS = 10.0
DECODE_SECONDS_PER_AUDIO_SECOND = 2.0
"""Whisper's time bound: 10 s + 2 s per second of audio (large-v3 on a CPU decodes real speech
at roughly real time; on a GPU far faster)."""
POCKETSPHINX_SECONDS = 5.0
POCKETSPHINX_SECONDS_PER_AUDIO_SECOND = 3.0
"""pocketsphinx's time bound: 5 s + 3 × the (padded) audio's length — 16 s for a 3.6 s
sentence. Measured on the default corpus (2-core machine) with the lattice pass, which the
JSGF judge no longer runs: real and vocoded speech decoded at ≤ 0.13 × real time, the garbage
of a barely trained model at up to 2 × (7.4 s for one sentence). The bound only stops
runaway decodes: a tight one (0.5 s + 0.5 × the length) cut the garbage's cost by a third
but made its WER depend on how loaded the machine was, and a trial's result must not.
See `eval.decoder_process`."""
WHISPER_LARGE_V3 = ("large-v3", "edaa852ec7e145841d8ffdb056a99866b5f0a478")
"""seed-tts-eval's Whisper, and the Systran/faster-whisper-large-v3 commit that several public
projects pin (not checked against the hub from here: hubs are unreachable in this project)."""
ASR_JUDGES = ("auto", "pocketsphinx-jsgf", "pocketsphinx-lm", "whisper", "speechbrain")


class Transcriber(Protocol):
    name: str

    def transcribe(self, wave: np.ndarray, sample_rate: int) -> str:
        """Transcript of one utterance (lower-case words)."""
        ...

    def version(self) -> str: ...


def _en_us_model() -> Path:
    import pocketsphinx

    return Path(pocketsphinx.get_model_path()) / "en-us"


class _Pocketsphinx:
    """pocketsphinx 5 decoding padded, faintly noised 16 kHz PCM; subclasses pick the search
    (grammar or language model)."""

    name = "pocketsphinx"
    _search = ""

    def __init__(
        self, *, pad_seconds: float, noise_dbfs: float, seed: int, **search: str | bool
    ) -> None:
        model = _en_us_model()
        self._decoder = DecoderProcess(
            hmm=str(model / "en-us"), dict=str(model / "cmudict-en-us.dict"), **search
        )
        self._pad, self._noise, self._seed = pad_seconds, 10 ** (noise_dbfs / 20), seed

    def _pcm(self, wave: np.ndarray, sample_rate: int) -> bytes:
        """16 kHz int16 audio with `pad_seconds` of faint noise each side (see module doc)."""
        audio = resample(np.asarray(wave, dtype=np.float32), sample_rate, SAMPLE_RATE)
        pad = np.zeros(int(self._pad * SAMPLE_RATE), np.float32)
        audio = np.concatenate([pad, audio, pad])
        # Seeded by content length: the same audio always gets the same noise.
        rng = np.random.default_rng([self._seed, len(audio)])
        audio = audio + rng.normal(0.0, self._noise, len(audio)).astype(np.float32)
        return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()

    def transcribe(self, wave: np.ndarray, sample_rate: int) -> str:
        """The words heard; `DecodeBounded` when decoding outlasts `POCKETSPHINX_SECONDS` +
        `POCKETSPHINX_SECONDS_PER_AUDIO_SECOND` × the padded audio's length."""
        pcm = self._pcm(wave, sample_rate)
        seconds = len(pcm) / 2 / SAMPLE_RATE
        limit = POCKETSPHINX_SECONDS + POCKETSPHINX_SECONDS_PER_AUDIO_SECOND * seconds
        try:
            hypothesis = self._decoder.decode(pcm, limit)
        except TimeoutError as err:
            raise DecodeBounded(f"{err} for {seconds:.1f} s of audio") from None
        if hypothesis is None:
            return ""
        # The LM search marks fillers and alternative pronunciations: "<sil>", "[noise]",
        # "word(2)"; keep the words only.
        words = (w.split("(")[0] for w in hypothesis.split())
        return " ".join(w for w in words if not w.startswith(("<", "[")))

    def version(self) -> str:
        return (
            f"{self.name}: pocketsphinx {metadata.version('pocketsphinx')} (en-us, {self._search})"
        )


class PocketsphinxJsgf(_Pocketsphinx):
    """pocketsphinx 5 with a finite-state grammar: it can only hear sentences of the grammar,
    which is what makes its default en-us model usable on eSpeak-like speech."""

    name = "pocketsphinx-jsgf"
    _search = "JSGF, first-pass Viterbi"

    def __init__(
        self,
        grammar: str | Path,
        *,
        pad_seconds: float = 0.3,
        noise_dbfs: float = -60.0,
        seed: int = 0,
    ) -> None:
        grammar = Path(grammar)
        if not grammar.is_file():
            raise JudgeUnavailable(
                f"pocketsphinx-jsgf: grammar file {grammar} not found (the "
                "synthetic corpus writes grammar.jsgf next to its manifest)"
            )
        # No lattice best-path pass after the grammar search (pocketsphinx's `bestpath`, on by
        # default). On the garbage of a barely trained model the grammar lattice explodes and
        # that pass took 80 % of the decode: 24 sentences of s-u64 41 s → 7.6 s, of real speech
        # 7.6 s → 4.8 s (2-core AMD EPYC). The Viterbi pass alone heard the same sentences
        # about as well: ground-truth WER 0.078 → 0.073, l-u4096 0.015 → 0.010, and garbage
        # stays garbage (s-u64 0.966 → 0.971, m-u64 0.668 → 0.688); the version string says
        # which search ran, so caches and results made with the lattice pass do not mix.
        super().__init__(
            pad_seconds=pad_seconds,
            noise_dbfs=noise_dbfs,
            seed=seed,
            jsgf=str(grammar),
            bestpath=False,
        )


class PocketsphinxLm(_Pocketsphinx):
    """pocketsphinx 5 with the wheel's en-us trigram LM: open vocabulary, offline, for real
    corpora (ground-truth WER ≈ 0.2 on read audiobook speech; poor on eSpeak audio)."""

    name = "pocketsphinx-lm"
    _search = "en-us.lm.bin"

    def __init__(
        self, *, pad_seconds: float = 0.3, noise_dbfs: float = -60.0, seed: int = 0
    ) -> None:
        lm = _en_us_model() / "en-us.lm.bin"
        if not lm.is_file():
            raise JudgeUnavailable(
                f"pocketsphinx-lm: language model {lm} not found (it ships inside the "
                "pocketsphinx wheel pinned in requirements.lock; rebuild the venv)"
            )
        super().__init__(pad_seconds=pad_seconds, noise_dbfs=noise_dbfs, seed=seed, lm=str(lm))


class FasterWhisper:
    """Whisper through faster-whisper: a local CTranslate2 directory, or a model name / hub id
    (e.g. large-v3, Systran/faster-whisper-large-v3) at a pinned revision, downloaded into
    `cache_dir` (huggingface_hub's cache layout). CUDA when available, else CPU int8."""

    name = "whisper"

    def __init__(
        self,
        source: str | None,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        device: str | None = None,
    ) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise JudgeUnavailable(
                "whisper: the package faster-whisper is not installed (it is pinned in "
                "requirements.lock; rebuild the venv with `make venv`)"
            ) from None
        if not source:
            name, rev = WHISPER_LARGE_V3
            raise JudgeUnavailable(
                "whisper: set eval.asr_judge_source to a local directory holding a CTranslate2 "
                f"Whisper model, or a faster-whisper model name with eval.asr_judge_revision "
                f"(e.g. {name} at {rev})"
            )
        path = (
            Path(source)
            if Path(source).is_dir()
            else _whisper_snapshot(source, revision, cache_dir)
        )
        self._model, self._device = _load_whisper(WhisperModel, path, device or _cuda_or_cpu())
        self._source = str(path) if Path(source).is_dir() else f"{source}@{revision} ({path})"

    def transcribe(self, wave: np.ndarray, sample_rate: int) -> str:
        audio = resample(np.asarray(wave, dtype=np.float32), sample_rate, SAMPLE_RATE)
        # temperature 0 only: faster-whisper's default falls back to *sampling* at rising
        # temperatures when a decode looks poor (broken TTS output does), which would make
        # the same audio score differently on every run.
        segments, _ = self._model.transcribe(audio, language="en", beam_size=5, temperature=0.0)
        return bounded_transcript(segments, len(audio) / SAMPLE_RATE)

    def version(self) -> str:
        return (
            f"whisper: faster-whisper {metadata.version('faster-whisper')} "
            f"({self._source}, {self._device})"
        )


def bounded_transcript(segments: Any, audio_seconds: float) -> str:
    """Join a lazy decoder's segments, stopping with `DecodeBounded` once the words outrun any
    speech (`MAX_WORDS_PER_SECOND`) or decoding outlasts `DECODE_SECONDS` + the audio's length
    × `DECODE_SECONDS_PER_AUDIO_SECOND`: a hallucinating decode of garbage audio (a barely
    trained model's output) is cut short instead of costing minutes."""
    max_words = int(MAX_WORDS_PER_SECOND * audio_seconds) + 10
    limit = DECODE_SECONDS + DECODE_SECONDS_PER_AUDIO_SECOND * audio_seconds
    started, words = time.perf_counter(), []
    for segment in segments:
        words += segment.text.split()
        if len(words) > max_words:
            raise DecodeBounded(f"{len(words)} words from {audio_seconds:.1f} s of audio")
        if time.perf_counter() - started > limit:
            raise DecodeBounded(f"decoding took over {limit:.0f} s")
    return " ".join(words)


def _load_whisper(whisper_model: type, path: Path, device: str) -> tuple[Any, str]:
    """(model, "device compute-type"). On CUDA, a one-second warm-up decode proves the CUDA
    libraries load: the ctranslate2 wheel links CUDA 12 cuBLAS/cuDNN, which a CUDA 13 torch
    install does not provide; then the judge falls back to the CPU, saying so, and
    `version()` records where it ran."""
    compute = "float16" if device == "cuda" else "int8"  # faster-whisper's usual settings
    try:
        model = whisper_model(str(path), device=device, compute_type=compute)
        if device == "cuda":
            list(model.transcribe(np.zeros(SAMPLE_RATE, np.float32), language="en")[0])
    except (RuntimeError, ValueError, OSError) as err:
        if device == "cuda":
            warnings.warn(
                f"whisper: CUDA unusable ({err}); judging on the CPU (slow for large models)",
                stacklevel=3,
            )
            return _load_whisper(whisper_model, path, "cpu")
        raise JudgeUnavailable(
            f"whisper: {path} does not load as a CTranslate2 Whisper model ({err})"
        ) from None
    return model, f"{device} {compute}"


def _cuda_or_cpu() -> str:
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def _whisper_snapshot(name: str, revision: str | None, cache_dir: str | Path | None) -> Path:
    """The local snapshot of model `name` at `revision` in `cache_dir`, downloaded if absent
    and the hub is reachable (never when HF_HUB_OFFLINE is set)."""
    from faster_whisper.utils import download_model

    example = f"{WHISPER_LARGE_V3[0]} at {WHISPER_LARGE_V3[1]}"
    if Path(name).is_absolute() or name.startswith((".", "~")):
        raise JudgeUnavailable(
            f"whisper: model directory {name} does not exist (eval.asr_judge_source: a local "
            "CTranslate2 Whisper directory, or a faster-whisper model name such as "
            f"{example} with eval.asr_judge_revision)"
        )
    if not revision:
        raise JudgeUnavailable(
            f"whisper: {name!r} is not a local directory, so it would come from the model hub "
            f"unpinned: set eval.asr_judge_revision to the commit hash to use (e.g. {example}), "
            "or give a local CTranslate2 directory"
        )
    cache = _required_cache(cache_dir, "whisper")
    how = (
        "give eval.asr_judge_source a local directory, e.g. after `huggingface-cli download "
        "Systran/faster-whisper-large-v3 --revision REV --local-dir DIR` on a machine online"
    )
    try:
        return Path(
            download_model(name, local_files_only=True, cache_dir=str(cache), revision=revision)
        )
    except ValueError as err:  # not one of faster-whisper's names, and not a hub id
        raise JudgeUnavailable(f"whisper: {err}; or {how}") from None
    except OSError:
        pass  # not in the cache yet
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise JudgeUnavailable(
            f"whisper: {name}@{revision} is not in the cache {cache} and HF_HUB_OFFLINE is set: "
            f"{how}"
        )
    try:
        return Path(download_model(name, cache_dir=str(cache), revision=revision))
    except Exception as err:  # any hub or network failure: the way out is the same
        raise JudgeUnavailable(
            f"whisper: {name}@{revision} is not in the cache {cache} and cannot be downloaded "
            f"({type(err).__name__}); {how}"
        ) from None


class SpeechbrainAsr:
    """A speechbrain `EncoderDecoderASR` (hub id or local directory)."""

    name = "speechbrain"

    def __init__(
        self, source: str | None, savedir: str | Path | None, revision: str | None = None
    ) -> None:
        if not source:
            raise JudgeUnavailable(
                "speechbrain ASR: set eval.asr_judge_source to a hub id "
                "(e.g. speechbrain/asr-crdnn-rnnlm-librispeech, with eval.asr_judge_revision) "
                "or a local directory with hyperparams.yaml and its checkpoints"
            )
        import torch
        from speechbrain.inference.ASR import EncoderDecoderASR

        fetch = pinned_hub_fetch("speechbrain ASR", source, revision, "eval.asr_judge_revision")
        savedir = _required_cache(savedir, "speechbrain ASR")
        try:
            self._model = EncoderDecoderASR.from_hparams(
                source=source,
                savedir=str(Path(savedir) / (revision or "local")[:12]),
                **({"fetch_config": fetch} if fetch else {}),
            )
        except Exception as err:
            raise JudgeUnavailable(
                f"speechbrain ASR: cannot load {source!r} into {savedir} ({err}); offline, "
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


def resolve_asr_judge(kind: str, grammar: str | Path | None) -> str:
    """`auto` → pocketsphinx-jsgf where the corpus has a grammar, else pocketsphinx-lm."""
    if kind not in ASR_JUDGES:
        raise ValueError(
            f"eval.asr_judge: unknown ASR judge {kind!r}, expected one of {ASR_JUDGES}"
        )
    if kind == "auto":
        return "pocketsphinx-jsgf" if grammar is not None else "pocketsphinx-lm"
    return kind


def make_transcriber(
    kind: str,
    *,
    source: str | None = None,
    revision: str | None = None,
    grammar: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> Transcriber:
    """The ASR judge named by `EvalConfig.asr_judge` (`auto` resolved with `grammar`).

    `cache_dir` is where hub judges (whisper names, speechbrain hub ids) are downloaded; it is
    required for them, so nothing is ever written relative to the working directory."""
    kind = resolve_asr_judge(kind, grammar)
    if kind == "pocketsphinx-jsgf":
        if grammar is None:
            raise JudgeUnavailable(
                "pocketsphinx-jsgf needs the corpus grammar (grammar.jsgf); real corpora "
                "have none: use asr_judge auto or pocketsphinx-lm (offline), whisper or "
                "speechbrain"
            )
        return PocketsphinxJsgf(grammar)
    if kind == "pocketsphinx-lm":
        return PocketsphinxLm()
    if kind == "whisper":
        return FasterWhisper(source, revision=revision, cache_dir=cache_dir)
    return SpeechbrainAsr(
        source, Path(cache_dir) / "speechbrain-asr" if cache_dir else None, revision
    )


def _required_cache(cache_dir: str | Path | None, judge: str) -> Path:
    if cache_dir is None:
        raise JudgeUnavailable(
            f"{judge}: no cache directory to download into (set eval.cache_dir, or pass "
            "cache_dir= to make_transcriber)"
        )
    return Path(cache_dir)

"""eSpeak NG through ctypes: audio plus eSpeak's own phonemes and their timings.

The library and its voice data ship in the PyPI wheel `espeakng-loader`. eSpeak keeps global
state, so use one `Espeak` per process (worker processes each make their own).

Timings come from PHONEME synthesis events: each marks the *start* sample of a phoneme; a
phoneme lasts until the next one starts, and the last one until the end of the audio. The short
leading silence before the first event becomes a pause token (`_`), so durations always sum to
the number of samples.
"""

from __future__ import annotations

import _ctypes
import ctypes
import itertools
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["PAUSE", "Espeak", "Synthesis", "Voice", "espeak_version"]

PAUSE = "_"

# espeak_AUDIO_OUTPUT / options / event types / parameters (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_BUFFER_MS = 1000  # audio handed to the callback per call (the 200 ms default: ~40 calls/utt)


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """`espeak_EVENT` (40 bytes on x86_64)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class Voice:
    """An eSpeak voice setting: language + variant select the voice, the rest shape it."""

    language: str = "en-us"
    variant: str | None = None
    pitch: int = 50
    """0-100, eSpeak's base pitch."""
    range: int = 50
    """0-100, pitch variation."""
    rate: int = 175
    """Words per minute."""

    @property
    def espeak_name(self) -> str:
        return f"{self.language}+{self.variant}" if self.variant else self.language


@dataclass(frozen=True)
class Synthesis:
    """One synthesised utterance at eSpeak's native rate."""

    audio: np.ndarray
    """int16 samples."""
    sample_rate: int
    phonemes: list[str]
    """eSpeak phoneme mnemonics, stress marks attached (e.g. `'I`, `,aI`, `_:` for pauses)."""
    durations: list[int]
    """Samples per phoneme; sums to len(audio)."""


def espeak_version() -> str:
    """Version string of the loaded libespeak-ng."""
    lib = _load_library()
    lib.espeak_Info.restype = ctypes.c_char_p
    path = ctypes.c_char_p()
    return lib.espeak_Info(ctypes.byref(path)).decode()


_LOCK = threading.Lock()


def _load_library() -> ctypes.CDLL:
    import espeakng_loader

    return ctypes.CDLL(espeakng_loader.get_library_path())


class Espeak:
    """An eSpeak NG synthesiser that records phoneme events.

    eSpeak carries synthesis state from one utterance to the next (pitch phase, filter memory),
    so an utterance's exact samples depend on what was spoken before it. `reset()` starts from
    a fresh library instance: it loads a private copy of the shared library, so the state is
    fresh even if this process (or its parent, before a fork) used eSpeak already. Callers that
    need byte-identical audio reset at fixed points (the corpus builder: every chunk).
    """

    def __init__(self) -> None:
        import espeakng_loader

        self._data_parent = str(Path(espeakng_loader.get_data_path()).parent).encode()
        self._private_dir = Path(tempfile.mkdtemp(prefix="voicescale-espeak-"))
        self._private_lib = self._private_dir / "libespeak-ng.so"
        shutil.copyfile(espeakng_loader.get_library_path(), self._private_lib)
        self._callback = _SynthCallback(self._on_audio)  # keep a reference: C holds a pointer
        self._lib: ctypes.CDLL | None = None
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, str]] = []
        self._voice: Voice | None = None
        self.sample_rate = 0
        self.reset()

    def reset(self) -> None:
        """Discard all synthesis state: unload and reload the library, initialise it again."""
        self._unload()
        lib = ctypes.CDLL(str(self._private_lib))
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, self._data_parent, _INITIALIZE_PHONEME_EVENTS
        )
        if rate <= 0:
            raise RuntimeError(
                f"espeak_Initialize failed (returned {rate}) with data in "
                f"{self._data_parent.decode()}"
            )
        lib.espeak_SetSynthCallback(self._callback)
        # Breathy variants add noise from a generator eSpeak seeds from the clock at start-up
        # (and libc's rand(), whose state is process-wide): fix both.
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed(0)
        ctypes.CDLL(None).srand(0)
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self._lib, self.sample_rate, self._voice = lib, rate, None

    def close(self) -> None:
        self._unload()
        shutil.rmtree(self._private_dir, ignore_errors=True)

    def _unload(self) -> None:
        if self._lib is not None:
            self._lib.espeak_Terminate()
            _ctypes.dlclose(self._lib._handle)
            self._lib = None

    def __del__(self) -> None:
        self.close()

    def _on_audio(self, wav, n_samples, events) -> int:
        if n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                self._events.append((ev.type, ev.sample, ev.id.string.decode("ascii", "replace")))
            i += 1
        return 0

    def _set_voice(self, voice: Voice) -> None:
        """Select `voice`. Rate, pitch and range must be set after the voice itself; a change
        of rate alone skips reloading the voice (the corpus jitters rate per utterance)."""
        current = self._voice
        if current is None or (voice.espeak_name, voice.pitch, voice.range) != (
            current.espeak_name,
            current.pitch,
            current.range,
        ):
            if self._lib.espeak_SetVoiceByName(voice.espeak_name.encode()) != 0:
                raise ValueError(f"eSpeak has no voice {voice.espeak_name!r}")
            self._lib.espeak_SetParameter(_PARAM_PITCH, voice.pitch, 0)
            self._lib.espeak_SetParameter(_PARAM_RANGE, voice.range, 0)
            current = None
        if current is None or voice.rate != current.rate:
            self._lib.espeak_SetParameter(_PARAM_RATE, voice.rate, 0)
        self._voice = voice

    def _speak(self, text: str) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
        self._chunks, self._events = [], []
        data = text.encode("utf-8") + b"\0"
        err = self._lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with code {err} for {text!r}")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio, self._events

    def synthesize(self, text: str, voice: Voice) -> Synthesis:
        """Speak `text` with `voice`; return int16 audio, phonemes and per-phoneme durations."""
        with _LOCK:
            self._set_voice(voice)
            audio, events = self._speak(text)
            # eSpeak holds back the last ~60 ms until the next call; an empty call flushes it.
            tail, _ = self._speak("")
        phonemes, durations = _phoneme_durations(events, len(audio))
        if durations:
            durations[-1] += len(tail)
        return Synthesis(np.concatenate([audio, tail]), self.sample_rate, phonemes, durations)

    def phonemize(self, text: str, voice: Voice | None = None) -> list[str]:
        """eSpeak's phonemes for `text` (the same tokens the synthetic corpus records)."""
        return self.synthesize(text, voice or Voice()).phonemes


def _phoneme_durations(
    events: list[tuple[int, int, str]], n_samples: int
) -> tuple[list[str], list[int]]:
    starts = [(sample, name) for _, sample, name in events]
    if not starts or n_samples == 0:
        return [], []
    names = [name for _, name in starts]
    bounds = [min(max(sample, 0), n_samples) for sample, _ in starts]
    if bounds[0] > 0:  # leading silence before the first event
        if names[0].startswith(PAUSE):
            bounds[0] = 0
        else:
            names.insert(0, PAUSE)
            bounds.insert(0, 0)
    bounds.append(n_samples)
    durations = [b - a for a, b in itertools.pairwise(bounds)]
    return names, durations

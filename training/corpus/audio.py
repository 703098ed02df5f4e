"""Audio I/O with soundfile (torchaudio 2.11 load/save need FFmpeg); resampling with torchaudio."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from training.corpus.manifest import CorpusError

__all__ = ["read_audio", "resample", "to_int16", "write_flac"]


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the file's sample rate.

    Raises `CorpusError` naming the file when it is missing, unreadable or empty.
    """
    if not path.is_file():
        raise CorpusError(f"{path}: audio file is missing")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise CorpusError(f"{path}: unreadable or corrupt audio ({err})") from None
    if data.shape[0] == 0:
        raise CorpusError(f"{path}: audio has zero length")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(mono).all():
        raise CorpusError(f"{path}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(mono), int(rate)


def resample(wave: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling (torchaudio's windowed sinc); a no-op when the rates match."""
    if orig_rate == new_rate:
        return wave.astype(np.float32, copy=False)
    tensor = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    with torch.no_grad():
        return _resampler(orig_rate, new_rate)(tensor).numpy()


@functools.lru_cache(maxsize=8)
def _resampler(orig_rate: int, new_rate: int) -> torchaudio.transforms.Resample:
    # The transform computes its sinc kernel once; the functional form recomputes it per call
    # (5x slower on 2-s clips).
    return torchaudio.transforms.Resample(orig_rate, new_rate)


def to_int16(wave: np.ndarray) -> np.ndarray:
    """Float samples to 16-bit PCM with clipping (deterministic rounding)."""
    return np.clip(np.rint(wave * 32767.0), -32768, 32767).astype(np.int16)


def write_flac(path: Path, pcm16: np.ndarray, rate: int) -> None:
    """Write 16-bit mono FLAC, creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), pcm16, rate, format="FLAC", subtype="PCM_16")

"""Real-corpus directory layouts (LibriTTS, LibriSpeech, VCTK) filled with generated speech.

The speech is the synthetic corpus's eSpeak audio, written at each corpus's native rate with
its transcript files and *no* phoneme timings — what a real download gives the suite.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from training.corpus.audio import read_audio, resample
from training.corpus.manifest import Corpus


@dataclass(frozen=True)
class Clip:
    speaker: int
    index: int
    wave: np.ndarray
    rate: int
    text: str


def clips(corpus: Corpus, speakers: int, per_speaker: int) -> list[Clip]:
    """`per_speaker` utterances from each of the first `speakers` voices that have enough."""
    by_speaker: dict[str, list] = {}
    for u in sorted(corpus.utterances, key=lambda u: u.id):
        by_speaker.setdefault(u.speaker, []).append(u)
    chosen = [s for s in sorted(by_speaker) if len(by_speaker[s]) >= per_speaker][:speakers]
    if len(chosen) < speakers:
        raise ValueError(f"{corpus.root}: fewer than {speakers} voices with {per_speaker} clips")
    out = []
    for s, name in enumerate(chosen):
        for i, u in enumerate(by_speaker[name][:per_speaker]):
            wave, rate = read_audio(corpus.audio_path(u))
            out.append(Clip(s, i, wave, rate, u.text))
    return out


def _write(path: Path, clip: Clip, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), resample(clip.wave, clip.rate, rate), rate)


def write_libritts(clips: list[Clip], root: Path) -> Path:
    """`<speaker>/<chapter>/<spk>_<chapter>_<utt>_000000.wav` + `.normalized.txt`, 24 kHz."""
    base = root / "LibriTTS_R" / "train-clean-100"
    for c in clips:
        speaker, chapter = 1000 + c.speaker, 2000 + c.speaker
        stem = f"{speaker}_{chapter}_{c.index:06d}_000000"
        folder = base / str(speaker) / str(chapter)
        _write(folder / f"{stem}.wav", c, 24000)
        (folder / f"{stem}.normalized.txt").write_text(c.text + "\n")
    return base


def write_librispeech(clips: list[Clip], root: Path) -> Path:
    """`<speaker>/<chapter>/<spk>-<chapter>-<utt>.flac` + one `.trans.txt` per chapter, 16 kHz,
    upper-case transcripts as LibriSpeech has them."""
    chapters: dict[Path, list[str]] = {}
    for c in clips:
        speaker = 3000 + c.speaker
        folder = root / str(speaker) / "10"
        utt = f"{speaker}-10-{c.index:04d}"
        _write(folder / f"{utt}.flac", c, 16000)
        chapters.setdefault(folder / f"{speaker}-10.trans.txt", []).append(
            f"{utt} {c.text.upper()}"
        )
    for path, lines in chapters.items():
        path.write_text("\n".join(lines) + "\n")
    return root


def write_vctk(clips: list[Clip], root: Path) -> Path:
    """`wav48_silence_trimmed/<spk>/<spk>_<utt>_mic1.flac` + `txt/<spk>/<spk>_<utt>.txt`, 48 kHz."""
    for c in clips:
        speaker = f"p{225 + c.speaker}"
        utt = f"{speaker}_{c.index + 1:03d}"
        _write(root / "wav48_silence_trimmed" / speaker / f"{utt}_mic1.flac", c, 48000)
        (root / "txt" / speaker).mkdir(parents=True, exist_ok=True)
        (root / "txt" / speaker / f"{utt}.txt").write_text(c.text + "\n")
    return root

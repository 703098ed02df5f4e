"""A LibriTTS-R tree of ordinary English sentences (not the synthetic grammar's) in eSpeak
voices, and its prepared corpus (`prepare_corpus`: no grammar.jsgf, as for a real download),
for tests of judges that must hear open-vocabulary speech. No smoke corpus needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.corpus.layouts import Clip, write_libritts
from training.config import RealCorpusConfig
from training.corpus.espeak import Espeak, Voice
from training.corpus.manifest import Corpus
from training.corpus.real import prepare_corpus

__all__ = ["SENTENCES", "VOICES", "make_spoken_libritts", "prepare_spoken_libritts"]

SENTENCES = [
    "Mr. Brown walked to the market this morning.",
    "The children played in the garden after lunch.",
    "She opened the window and looked at the sea.",
    "We bought three loaves of bread for dinner.",
]
"""Ordinary English, a title and a number included: what an open-vocabulary judge must hear."""
VOICES = [
    Voice(variant="m1", pitch=35, rate=150),
    Voice(variant="f3", pitch=75, rate=150),
    Voice(variant="m3", pitch=50, rate=150),
    Voice(variant="f2", pitch=65, rate=150),
]


def make_spoken_libritts(root: Path, voices: int = 4, per_speaker: int = 3) -> Path:
    """`layouts.write_libritts` of eSpeak clips of `SENTENCES`; returns the subset directory
    (what `RealCorpusConfig.source` points at)."""
    engine = Espeak()
    try:
        spoken = []
        for s, voice in enumerate(VOICES[:voices]):
            for u in range(per_speaker):
                text = SENTENCES[(s + u) % len(SENTENCES)]
                synthesis = engine.synthesize(text, voice)
                wave = synthesis.audio.astype(np.float32) / 32768
                spoken.append(Clip(s, u, wave, synthesis.sample_rate, text))
    finally:
        engine.close()
    return write_libritts(spoken, root)


def prepare_spoken_libritts(
    root: Path, voices: int = 4, per_speaker: int = 3, heldout_fraction: float = 0.5
) -> Corpus:
    """`make_spoken_libritts` under `root/src`, prepared into `root/corpus`."""
    cfg = RealCorpusConfig(
        layout="libritts",
        source=str(make_spoken_libritts(root / "src", voices, per_speaker)),
        workers=1,
        heldout_fraction=heldout_fraction,
        min_heldout_speakers=1,
        min_speakers_per_budget=1,
    )
    prepare_corpus(cfg, root / "corpus", progress=False)
    return Corpus.open(root / "corpus")

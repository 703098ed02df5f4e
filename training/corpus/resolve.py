"""Find (or build) the corpus a config refers to, before any training starts."""

from __future__ import annotations

from pathlib import Path

from training.config import CorpusRef, FeatureConfig
from training.corpus.features import load_features
from training.corpus.manifest import Corpus
from training.corpus.synthetic import build_synthetic_corpus, load_synthetic_preset

__all__ = ["resolve_corpus"]


def resolve_corpus(
    ref: CorpusRef, features: FeatureConfig, *, workers: int = 2, progress: bool = False
) -> Path:
    """The prepared corpus directory for `ref`, with its feature cache built.

    A synthetic preset is built on first use (a cache hit afterwards); a path must already hold
    a prepared corpus (`voicescale corpus prepare`).
    """
    if ref.synthetic is not None:
        root = build_synthetic_corpus(
            load_synthetic_preset(ref.synthetic), workers=workers, progress=progress
        ).root
    else:
        root = Path(ref.path)
    load_features(Corpus.open(root), features, workers=workers, progress=progress)
    return root

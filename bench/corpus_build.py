"""Benchmark: end-to-end synthetic corpus build (eSpeak → 16 kHz FLAC + manifest + card) and
the log-mel cache, on the default preset. Prints figures; asserts nothing.

    python bench/corpus_build.py [--preset default] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from training.config import FeatureConfig
from training.corpus.features import load_features
from training.corpus.manifest import Corpus
from training.corpus.synthetic import build_synthetic_corpus, load_synthetic_preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    cfg = load_synthetic_preset(args.preset)
    with tempfile.TemporaryDirectory(prefix="voicescale-bench-") as tmp:
        out = Path(tmp) / "corpus"
        report = build_synthetic_corpus(cfg, out, workers=args.workers, progress=False)
        start = time.perf_counter()
        corpus = Corpus.open(out)
        load_features(corpus, FeatureConfig(), workers=args.workers, progress=False)
        feature_seconds = time.perf_counter() - start
        hours = sum(u.duration_s for u in corpus.utterances) / 3600
        size_mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    print(f"machine: {os.cpu_count()} cpus; preset {args.preset}; {args.workers} workers")
    print(
        f"corpus build: {report.utterances} utterances, {hours:.2f} h of audio in "
        f"{report.seconds:.1f} s = {report.utterances_per_second:.0f} utt/s end to end"
    )
    print(
        f"log-mel cache: {feature_seconds:.1f} s = "
        f"{report.utterances / feature_seconds:.0f} utt/s; corpus on disk {size_mb:.0f} MB"
    )


if __name__ == "__main__":
    main()

"""`voicescale judges check`: are the judges fit to judge? Known answers on held-out voices.

eer             speaker-verification equal error rate over all same/different-speaker pairs
identical_sim   cosine of an utterance's embedding with itself, recomputed (→ 1)
gt_wer          WER on the real recordings (a floor the models cannot beat)
gl_wer          WER on real mels through the evaluation vocoder (`EvalConfig.vocoder`,
                Griffin-Lim by default: the vocoder's own cost)
wrong_text_wer  WER of real transcripts scored against another sentence (→ ~1)
noise_wer       WER of white noise scored against the sentences (→ 1)
gt_dnsmos       DNSMOS OVRL of the real recordings (the smoke corpus's eSpeak voices: about
                2.4; real read speech: about 3)
gl_dnsmos       DNSMOS OVRL of the same real mels through the evaluation vocoder (below gt_dnsmos)
noise_dnsmos    DNSMOS OVRL of white noise as loud as each recording (→ 1, the scale's floor)

(gt_/gl_/noise_utmos likewise when `EvalConfig.quality` names utmos.) The quality judges hear
the first `quality_per_speaker` utterances of each voice only: DNSMOS costs about 1.5 s of a CPU
thread per eSpeak-length clip (`eval.quality`), three clips per utterance.

With the default `EvalConfig` it runs offline on any prepared corpus: `asr_judge: auto` is
pocketsphinx-jsgf on a synthetic corpus (it has grammar.jsgf) and pocketsphinx-lm on a real
one; `judges["asr"]` in the result names the judge that ran.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eval.errors import DecodeBounded
from eval.evaluate_checkpoint import Judges
from eval.speaker_similarity import cosine
from eval.word_error_rate import pooled_wer, utterance_wer
from training.config import EvalConfig, FeatureConfig
from training.corpus.audio import read_audio
from training.corpus.features import load_features
from training.corpus.manifest import Corpus, Utterance
from training.vocoder import vocoder_for

__all__ = ["check_judges", "equal_error_rate"]


def equal_error_rate(same: np.ndarray, different: np.ndarray) -> float:
    """EER of a score threshold separating same-speaker from different-speaker pairs."""
    thresholds = np.unique(np.concatenate([same, different]))
    false_reject = np.array([(same < t).mean() for t in thresholds])
    false_accept = np.array([(different >= t).mean() for t in thresholds])
    i = int(np.argmin(np.abs(false_reject - false_accept)))
    return float((false_reject[i] + false_accept[i]) / 2)


def _heldout_sample(corpus: Corpus, per_speaker: int) -> list[Utterance]:
    by_speaker: dict[str, list[Utterance]] = {}
    for u in sorted(corpus.heldout, key=lambda u: u.id):
        by_speaker.setdefault(u.speaker, []).append(u)
    return [u for utts in by_speaker.values() for u in utts[:per_speaker]]


def check_judges(
    corpus_root: str | Path,
    cfg: EvalConfig | None = None,
    features: FeatureConfig | None = None,
    per_speaker: int = 12,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    quality_per_speaker: int = 2,
) -> dict[str, Any]:
    """Run every check on up to `per_speaker` held-out utterances of each held-out voice (the
    quality judges: on up to `quality_per_speaker` of them).

    Hub judges and vocoders are downloaded into `cfg.cache_dir`, else `cache_dir`, else
    `judges/` beside the corpus (see `Judges.build`)."""
    started = time.perf_counter()
    cfg, features = cfg or EvalConfig(), features or FeatureConfig()
    corpus = Corpus.open(corpus_root)
    cache = Judges.cache_dir_for(cfg, Path(corpus_root), cache_dir)
    judges = Judges.build(cfg, Path(corpus_root), cache)
    utts = _heldout_sample(corpus, per_speaker)
    audio = [read_audio(corpus.audio_path(u)) for u in utts]
    rate = audio[0][1]
    waves = [w for w, _ in audio]

    vectors = judges.embedder.embed(waves, rate)
    speakers = np.array([u.speaker for u in utts])
    scores = vectors @ vectors.T
    upper = np.triu_indices(len(utts), 1)
    same = speakers[upper[0]] == speakers[upper[1]]
    again = judges.embedder.embed(waves[:8], rate)
    identical = [cosine(a, b) for a, b in zip(vectors[:8], again, strict=True)]

    def wer_of(transcripts: list[str], texts: list[str]) -> float:
        return pooled_wer([utterance_wer(t, h) for t, h in zip(texts, transcripts, strict=True)])

    def heard(wave: np.ndarray, sample_rate: int) -> str:
        try:
            return judges.transcriber.transcribe(wave, sample_rate)
        except DecodeBounded:  # as in evaluation: every word missed
            return ""

    texts = [u.text for u in utts]
    real = [heard(w, rate) for w in waves]
    store = load_features(corpus, features, workers=1, progress=False)
    index = {u.id: i for i, u in enumerate(corpus.utterances)}
    vocoder = vocoder_for(features, cfg, cache)
    gl_waves = [vocoder(torch.from_numpy(np.array(store.mel(index[u.id])))).numpy() for u in utts]
    vocoded = [heard(w, features.sample_rate) for w in gl_waves]
    rng = np.random.default_rng(seed)
    noise_waves = [rng.normal(0, np.sqrt(np.mean(w**2)), len(w)).astype(np.float32) for w in waves]
    noise = [heard(w, rate) for w in noise_waves]
    shifted = texts[1:] + texts[:1]  # every transcript against another sentence
    heard_by_quality = _first_per_speaker(utts, quality_per_speaker)
    quality = {
        **_mean_quality(judges, "gt", [waves[i] for i in heard_by_quality], rate),
        **_mean_quality(
            judges, "gl", [gl_waves[i] for i in heard_by_quality], features.sample_rate
        ),
        **_mean_quality(judges, "noise", [noise_waves[i] for i in heard_by_quality], rate),
    }
    return {
        "eer": equal_error_rate(scores[upper][same], scores[upper][~same]),
        "identical_sim": float(np.mean(identical)),
        "gt_wer": wer_of(real, texts),
        "gl_wer": wer_of(vocoded, texts),
        "wrong_text_wer": wer_of(real, shifted),
        "noise_wer": wer_of(noise, texts),
        "same_speaker_sim": float(scores[upper][same].mean()),
        "different_speaker_sim": float(scores[upper][~same].mean()),
        **quality,
        "quality_utterances": len(heard_by_quality) if judges.quality else 0,
        "utterances": len(utts),
        "speakers": len(set(speakers)),
        "judges": judges.versions(),
        "cache_dir": str(cache),
        "corpus": str(corpus_root),
        "seconds": time.perf_counter() - started,
    }


def _first_per_speaker(utts: list[Utterance], count: int) -> list[int]:
    """Indices of each voice's first `count` utterances in `utts`."""
    seen: dict[str, int] = {}
    chosen = []
    for i, u in enumerate(utts):
        if seen.get(u.speaker, 0) < count:
            seen[u.speaker] = seen.get(u.speaker, 0) + 1
            chosen.append(i)
    return chosen


def _mean_quality(
    judges: Judges, condition: str, waves: list[np.ndarray], sample_rate: int
) -> dict[str, float]:
    """`<condition>_<metric>`: each quality judge's main score, mean over `waves`."""
    if not waves:
        return {}
    scored = [judges.score_quality(w, sample_rate) for w in waves]
    return {
        f"{condition}_{metric}": float(np.mean([s[metric] for s in scored]))
        for metric in judges.quality_metrics
    }

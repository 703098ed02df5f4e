"""Cloning quality of one exported checkpoint (neural or baseline), judged independently.

For each held-out speaker: the prompt utterance (its first `prompt_seconds`) is the voice to
clone; the next `sentences_per_speaker` utterances are the texts to speak; the remaining ones
form the speaker's enrolment — the real audio SIM compares against (never the prompt, never
the target itself). Each generated utterance is vocoded, transcribed and embedded:

    sim       cosine(generated, enrolment centroid), mean over utterances
    wer       pooled WER of the transcripts vs the input text (Σ errors / Σ words)
    val_loss  teacher-forced log-mel L1 of the same utterances (Σ L1 / Σ mel cells)
    dnsmos    perceptual quality, DNSMOS P.835 OVRL (1-5), mean over utterances; likewise
              utmos — whichever `EvalConfig.quality` names (`eval.quality`)

Each comes with a 95 % percentile interval (`sim_ci`, `wer_ci`, `val_loss_ci`, `dnsmos_ci`) from
a speaker-clustered bootstrap (`CI_METHOD`): resample the held-out voices with replacement, then
each drawn voice's utterances with replacement. A voice's utterances share its prompt and its
enrolment centroid, so they are not independent draws: resampling utterances alone would
treat 8 voices × 3 sentences as 24 independent samples, and its intervals are too narrow.
The statistics share one set of seeded replicates, so the same records always give the
same intervals.

Ceilings measured with the same judges — the real recordings, and the real mel through the
vocoder — come with every result (computed once per corpus and judge, then cached).

Broken output (empty, silent, NaN or absurdly long audio) never crashes an evaluation: the
utterance scores WER 1, SIM 0 and MOS 1 and is counted in `failed_utterances`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from filelock import FileLock

from eval.errors import DecodeBounded
from eval.judges import Judges
from eval.quality import MOS_FLOOR, QUALITY_METRICS
from eval.result import EvalResult
from eval.speaker_similarity import SpeakerEmbedder, cosine
from eval.word_error_rate import utterance_wer
from training.bootstrap import CI_METHOD, clustered_resamples
from training.config import EvalConfig, FeatureConfig, to_dict
from training.corpus.audio import read_audio
from training.corpus.features import FeatureStore, load_features
from training.corpus.manifest import Corpus, CorpusError, Utterance
from training.data import heldout_roles, reference_frames
from training.inference import Synthesizer
from training.vocoder import Vocoder, vocoder_for

__all__ = [
    "EvalItem",
    "HeldOutSet",
    "Judges",
    "check_generated_audio",
    "check_predicted_mel",
    "evaluate_checkpoint",
    "evaluation_plan",
]

MAX_SECONDS = 30.0
"""Generated audio longer than this (or 4x the real utterance) counts as failed."""
MIN_SECONDS = 0.1
"""Generated audio shorter than this counts as failed (nothing to transcribe or embed)."""


@dataclass(frozen=True)
class EvalItem:
    speaker: str
    prompt: Utterance
    target: Utterance
    scored_for_quality: bool = True
    """Among the first `eval.quality_per_speaker` of its voice: the quality judges hear it."""


def evaluation_plan(
    corpus: Corpus, cfg: EvalConfig
) -> tuple[list[EvalItem], dict[str, list[Utterance]]]:
    """(items to synthesise, enrolment utterances per speaker)."""
    items, enrolment = [], {}
    for speaker, (prompt, targets) in heldout_roles(corpus.heldout).items():
        chosen, rest = targets[: cfg.sentences_per_speaker], targets[cfg.sentences_per_speaker :]
        if not rest:
            raise CorpusError(
                f"{corpus.root}: held-out speaker {speaker} has {len(targets) + 1} utterances; "
                f"eval.sentences_per_speaker={cfg.sentences_per_speaker} leaves none for "
                "enrolment (SIM needs real audio other than the prompt and the targets)"
            )
        quality = cfg.quality_per_speaker or len(chosen)
        items += [EvalItem(speaker, prompt, t, i < quality) for i, t in enumerate(chosen)]
        enrolment[speaker] = rest
    return items, enrolment


def _too_long(seconds: float, reference_seconds: float) -> bool:
    return seconds > max(MAX_SECONDS, 4 * reference_seconds)


def check_predicted_mel(
    mel: np.ndarray, features: FeatureConfig, reference_seconds: float
) -> str | None:
    """Why a predicted log-mel cannot be vocoded into a judgeable utterance, or None. Checked
    before the vocoder, so a model that predicts minutes of audio costs no vocoding time."""
    if mel.ndim != 2 or mel.shape[0] == 0:
        return f"empty mel (shape {list(mel.shape)})"
    if not np.isfinite(mel).all():
        return "NaN or infinite mel"
    seconds = mel.shape[0] * features.hop_length / features.sample_rate
    if _too_long(seconds, reference_seconds):
        return f"absurdly long mel ({seconds:.1f} s for a {reference_seconds:.1f} s sentence)"
    return None


def check_generated_audio(
    wave: np.ndarray, sample_rate: int, reference_seconds: float
) -> str | None:
    """Why generated audio is unusable, or None if it is fine."""
    if wave.size == 0:
        return "empty audio"
    if not np.isfinite(wave).all():
        return "NaN or infinite samples"
    seconds = len(wave) / sample_rate
    if seconds < MIN_SECONDS:
        return f"too short audio ({seconds * 1000:.0f} ms for a {reference_seconds:.1f} s sentence)"
    if _too_long(seconds, reference_seconds):
        return f"absurdly long audio ({seconds:.1f} s for a {reference_seconds:.1f} s sentence)"
    if np.sqrt(np.mean(np.square(wave, dtype=np.float64))) < 1e-4:
        return "silent audio"
    return None


def _centroids(
    embedder: SpeakerEmbedder, corpus: Corpus, enrolment: dict[str, list[Utterance]]
) -> dict[str, np.ndarray]:
    out = {}
    for speaker, utts in enrolment.items():
        waves = [read_audio(corpus.audio_path(u)) for u in utts]
        vectors = embedder.embed([w for w, _ in waves], waves[0][1])
        vectors = vectors[np.isfinite(vectors).all(1)]
        out[speaker] = vectors.mean(0)
    return out


def _judge(
    wave: np.ndarray, rate: int, item: EvalItem, judges: Judges, centroid: np.ndarray
) -> dict[str, Any]:
    """WER, SIM, quality scores and transcript of one (generated or real) utterance; failures
    score worst. A decode stopped at its bound (`DecodeBounded`) scores WER 1 and says so,
    while its SIM and quality are measured as usual: those judges heard the audio fine."""
    problem = check_generated_audio(wave, rate, item.target.duration_s)
    bounded = None
    if problem is None:
        try:  # a judge tripping over strange audio fails that utterance, not the trial
            vector = judges.embedder.embed([wave], rate)[0]
            quality = judges.score_quality(wave, rate) if item.scored_for_quality else {}
            try:
                transcript = judges.transcriber.transcribe(wave, rate)
            except DecodeBounded as err:
                transcript, bounded = "", f"decode bounded ({err})"
        except Exception as err:
            problem = f"judge error: {type(err).__name__}: {err}"
        else:
            if not np.isfinite(vector).all():
                problem = "no speech found by the speaker judge"
    if problem is not None:
        return _failed(item, problem, _quality_metrics(item, judges))
    counts = utterance_wer(item.target.text, transcript)  # "" when bounded: WER 1
    return {
        "transcript": transcript,
        "errors": counts.errors,
        "words": counts.words,
        "wer": counts.wer,
        "sim": cosine(vector, centroid),
        **quality,
        "failed": bounded,
    }


def _failed(item: EvalItem, problem: str, quality: tuple[str, ...] = ()) -> dict[str, Any]:
    """The record of an utterance that could not be judged: WER 1 (every word missed), SIM 0
    and the lowest MOS for each `quality` metric, counted in `failed_utterances` with the
    reason."""
    counts = utterance_wer(item.target.text, "")
    return {
        "transcript": "",
        "errors": counts.errors,
        "words": counts.words,
        "wer": 1.0,
        "sim": 0.0,
        **dict.fromkeys(quality, MOS_FLOOR),
        "failed": problem,
    }


def _quality_metrics(item: EvalItem, judges: Judges) -> tuple[str, ...]:
    return judges.quality_metrics if item.scored_for_quality else ()


def _aggregate(records: list[dict[str, Any]], resamples: int, prefix: str = "") -> dict[str, Any]:
    """Point estimates and speaker-clustered intervals of per-utterance records (each names
    its `speaker`): mean SIM, pooled WER and, when measured, mean quality scores (dnsmos,
    utmos) and val_loss = Σ L1 / Σ cells (an utterance without a finite L1 counts as
    infinite). One set of replicates serves all."""
    replicates = clustered_resamples([r["speaker"] for r in records], resamples)
    errors = np.array([r["errors"] for r in records], dtype=float)
    words = np.array([r["words"] for r in records], dtype=float)
    sims = np.array([r["sim"] for r in records], dtype=float)
    out = {
        f"{prefix}sim": float(sims.mean()),
        f"{prefix}sim_ci": replicates.ratio_interval(sims, np.ones_like(sims)),
        f"{prefix}wer": float(errors.sum() / words.sum()),
        f"{prefix}wer_ci": replicates.ratio_interval(errors, words),
    }
    for metric in QUALITY_METRICS:
        # Scored on the first `quality_per_speaker` utterances of each voice: resampled on
        # their own, still voice by voice.
        scored = [r for r in records if metric in r]
        if not scored:
            continue
        scores = np.array([r[metric] for r in scored], dtype=float)
        own = clustered_resamples([r["speaker"] for r in scored], resamples)
        out[f"{prefix}{metric}"] = float(scores.mean())
        out[f"{prefix}{metric}_ci"] = own.ratio_interval(scores, np.ones_like(scores))
    if "l1_sum" in records[0]:
        l1 = np.array([math.inf if r["l1_sum"] is None else r["l1_sum"] for r in records])
        cells = np.array([r["l1_cells"] for r in records], dtype=float)
        out["val_loss"] = float(l1.sum() / cells.sum())
        out["val_loss_ci"] = replicates.ratio_interval(l1, cells)
    return out


def reference_scores(
    corpus: Corpus,
    cfg: EvalConfig,
    features: FeatureConfig,
    judges: Judges,
    items: list[EvalItem],
    enrolment: dict[str, list[Utterance]],
    store: FeatureStore,
    index: dict[str, int],
    vocoder: Vocoder,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """What every checkpoint of a corpus shares: each speaker's enrolment centroid, and the
    ceilings — the judges' scores on the real recordings and on the real mel through the
    vocoder. Computed once, cached in `<corpus>/eval_cache/` keyed by the evaluation
    settings, the judges' versions and the interval method."""
    key = hashlib.sha256(
        json.dumps(
            {
                "eval": to_dict(cfg),
                "features": to_dict(features),
                "judges": judges.versions(),
                "ci": CI_METHOD,  # ceilings cached with utterance-level intervals are stale
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:12]

    def compute() -> dict[str, Any]:
        centroids = _centroids(judges.embedder, corpus, enrolment)
        real, vocoded = [], []
        for item in items:
            wave, rate = read_audio(corpus.audio_path(item.target))
            judged = _judge(wave, rate, item, judges, centroids[item.speaker])
            real.append({"speaker": item.speaker, **judged})
            mel = torch.from_numpy(np.array(store.mel(index[item.target.id])))
            wave = vocoder(mel).numpy()
            judged = _judge(wave, features.sample_rate, item, judges, centroids[item.speaker])
            vocoded.append({"speaker": item.speaker, **judged})
        ceilings = {
            **_aggregate(real, cfg.bootstrap, "ground_truth_"),
            **_aggregate(vocoded, cfg.bootstrap, "vocoded_ground_truth_"),
        }
        return {"centroids": {s: v.tolist() for s, v in centroids.items()}, "ceilings": ceilings}

    cache = corpus.root / "eval_cache" / f"reference-{key}.json"
    if not cache.exists():  # a read-only corpus with its cache filled needs no lock file
        cache.parent.mkdir(exist_ok=True)
        # Trials finishing together would each compute the ceilings: the first computes, the
        # others wait for its file.
        with FileLock(str(cache.with_suffix(".lock"))):
            if not cache.exists():
                tmp = cache.with_suffix(".tmp")
                tmp.write_text(json.dumps(compute(), indent=2))
                tmp.replace(cache)
    saved = json.loads(cache.read_text())
    return {s: np.array(v) for s, v in saved["centroids"].items()}, saved["ceilings"]


@dataclass
class HeldOutSet:
    """Everything that judging a checkpoint on one corpus needs besides the checkpoint: the
    held-out utterances and their cached log-mels, the judges, the vocoder, each speaker's
    enrolment centroid and the ceilings. Built once per (corpus, features, evaluation
    settings) and reused for every checkpoint — a long-lived judge keeps it in memory
    (`cluster.judge_service`), so the corpus, the judges and the ceilings are loaded once per
    judge process, not once per trial."""

    corpus: Corpus
    cfg: EvalConfig
    features: FeatureConfig
    store: FeatureStore
    index: dict[str, int]
    items: list[EvalItem]
    enrolment: dict[str, list[Utterance]]
    judges: Judges
    vocoder: Vocoder
    centroids: dict[str, np.ndarray]
    ceilings: dict[str, Any]
    reference_seconds: float
    """Time spent on the centroids and ceilings when this set was built (0 once cached)."""

    @classmethod
    def build(
        cls,
        corpus_root: str | Path,
        cfg: EvalConfig,
        features: FeatureConfig,
        *,
        judges: Judges | None = None,
        vocoder: Vocoder | None = None,
    ) -> HeldOutSet:
        """Open the corpus and its features, build the judges and vocoder `cfg` names unless
        given, and load (or compute once and cache) the centroids and ceilings."""
        corpus_root = Path(corpus_root)
        corpus = Corpus.open(corpus_root, check_files=False)
        store = load_features(corpus, features, workers=1, progress=False)
        index = {u.id: i for i, u in enumerate(corpus.utterances)}
        judges = judges or Judges.build(cfg, corpus_root)
        if vocoder is None:
            vocoder = vocoder_for(features, cfg, Judges.cache_dir_for(cfg, corpus_root))
        items, enrolment = evaluation_plan(corpus, cfg)
        started = time.perf_counter()
        centroids, ceilings = reference_scores(
            corpus, cfg, features, judges, items, enrolment, store, index, vocoder
        )
        return cls(
            corpus, cfg, features, store, index, items, enrolment, judges, vocoder,
            centroids, ceilings, time.perf_counter() - started,
        )  # fmt: skip


def evaluate_checkpoint(
    export_dir: str | Path,
    corpus_root: str | Path,
    out_dir: str | Path,
    *,
    cfg: EvalConfig | None = None,
    judges: Judges | None = None,
    synthesizer: Synthesizer | None = None,
    heldout: HeldOutSet | None = None,
) -> EvalResult:
    """Evaluate one export; write per_utterance.jsonl, metrics.json and samples/ to `out_dir`.

    Returns an `EvalResult`: sim, wer, val_loss and the quality scores (dnsmos, utmos: those
    `cfg.quality` names) with CIs, failed_utterances, ceilings, timings.
    `synthesizer` replaces the one loaded from `export_dir` (tests of degenerate models);
    `heldout` is a `HeldOutSet` built earlier for this corpus, settings and features (else it
    is built here, with `judges` when given).
    Whatever the model outputs, this returns: an utterance that cannot be synthesised,
    vocoded or judged is a counted failure (`failed_utterances`, WER 1, SIM 0)."""
    started = time.perf_counter()
    export_dir, corpus_root, out_dir = Path(export_dir), Path(corpus_root), Path(out_dir)
    if synthesizer is None:
        cache = Judges.cache_dir_for(cfg, corpus_root)
        vocoder = heldout.vocoder if heldout is not None else None
        synthesizer = Synthesizer.load(export_dir, vocoder, cfg=cfg, cache_dir=cache)
    cfg = cfg or synthesizer.trial.eval
    features = synthesizer.features
    if heldout is None or heldout.features != features or heldout.cfg != cfg:
        heldout = HeldOutSet.build(
            corpus_root, cfg, features, judges=judges, vocoder=synthesizer.vocoder
        )
    reference_seconds = heldout.reference_seconds
    heldout.reference_seconds = 0.0  # paid once, by the first checkpoint judged with it
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    records = [
        _judge_item(synthesizer, heldout, item, n, out_dir) for n, item in enumerate(heldout.items)
    ]
    with (out_dir / "per_utterance.jsonl").open("w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    result = EvalResult(
        **_aggregate(records, cfg.bootstrap),
        utterances=len(records),
        failed_utterances=sum(r["failed"] is not None for r in records),
        failure_reasons=_failure_reasons(records),
        ceilings=heldout.ceilings,
        judges=heldout.judges.versions(),
        eval_config=to_dict(cfg),
        eval_seconds=time.perf_counter() - started,
        reference_seconds=reference_seconds,
    )
    (out_dir / "metrics.json").write_text(json.dumps(result.to_json(), indent=2))
    return result


def _judge_item(
    synthesizer: Synthesizer, heldout: HeldOutSet, item: EvalItem, n: int, out_dir: Path
) -> dict[str, Any]:
    """Synthesise one held-out sentence in its speaker's voice and judge it."""
    features, store, index = heldout.features, heldout.store, heldout.index
    ref_frames = reference_frames(
        heldout.cfg.prompt_seconds, features.sample_rate, features.hop_length
    )
    ids = synthesizer.vocab.encode(item.target.phonemes)
    ref = np.array(store.mel(index[item.prompt.id])[:ref_frames])
    target_mel = np.array(store.mel(index[item.target.id]))
    durations = store.frame_durations(index[item.target.id])
    record: dict[str, Any] = {
        "speaker": item.speaker,
        "id": item.target.id,
        "prompt": item.prompt.id,
        "text": item.target.text,
        "reference_seconds": item.target.duration_s,
    }
    if durations is not None:  # teacher-forced reconstruction: the held-out loss
        record.update(_reconstruction_l1(synthesizer, ids, ref, durations, target_mel))
    wave, problem = _generate(synthesizer, synthesizer.vocoder, ids, ref, item, features)
    if problem is None:
        centroid = heldout.centroids[item.speaker]
        record.update(_judge(wave, features.sample_rate, item, heldout.judges, centroid))
    else:
        record.update(_failed(item, problem, _quality_metrics(item, heldout.judges)))
    record["generated_seconds"] = len(wave) / features.sample_rate
    if n < heldout.cfg.audio_samples and record["failed"] is None:
        path = out_dir / "samples" / f"{item.target.id}.wav"
        sf.write(str(path), np.clip(wave, -1, 1), features.sample_rate)
        record["audio"] = str(path.relative_to(out_dir))
    return record


def _reconstruction_l1(
    synthesizer: Synthesizer,
    ids: np.ndarray,
    ref: np.ndarray,
    durations: np.ndarray,
    target_mel: np.ndarray,
) -> dict[str, Any]:
    """Teacher-forced L1 against the real mel. A prediction of the wrong shape or with
    non-finite values is the model's result (`l1_sum` None: an infinite loss), not an
    evaluation error."""
    cells = int(target_mel.size)
    try:
        forced = synthesizer.predict_mel(ids, ref, durations.astype(np.int64))
        l1 = float(np.abs(forced - target_mel).sum()) if forced.shape == target_mel.shape else None
    except Exception:
        l1 = None
    return {"l1_sum": l1 if l1 is not None and math.isfinite(l1) else None, "l1_cells": cells}


def _generate(
    synthesizer: Synthesizer,
    vocoder: Vocoder,
    ids: np.ndarray,
    ref: np.ndarray,
    item: EvalItem,
    features: FeatureConfig,
) -> tuple[np.ndarray, str | None]:
    """Free-running synthesis (predicted durations) → waveform, or why there is none."""
    empty = np.zeros(0, np.float32)
    try:
        mel = np.asarray(synthesizer.predict_mel(ids, ref))
    except Exception as err:  # e.g. an inference crash on an absurd prediction
        return empty, f"synthesis error: {type(err).__name__}: {err}"
    problem = check_predicted_mel(mel, features, item.target.duration_s)
    if problem is not None:
        return empty, problem
    try:
        wave = vocoder(torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32))).numpy()
    except Exception as err:
        return empty, f"vocoder error: {type(err).__name__}: {err}"
    return wave, check_generated_audio(wave, features.sample_rate, item.target.duration_s)


def _failure_reasons(records: list[dict[str, Any]]) -> dict[str, int]:
    """How many utterances failed, by the first words of their reason."""
    reasons: dict[str, int] = {}
    for record in records:
        if record["failed"] is not None:
            kind = record["failed"].split(" (")[0].split(":")[0]
            reasons[kind] = reasons.get(kind, 0) + 1
    return reasons

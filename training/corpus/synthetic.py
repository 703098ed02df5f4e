"""Build the embedded synthetic multi-speaker corpus with eSpeak NG.

`plan_corpus` decides everything from the config and seed (who says what, in which order);
`build_synthetic_corpus` synthesises the plan in worker processes, resamples to 16 kHz, writes
FLAC, the manifest and the corpus card. Same config and seed → byte-identical manifest and audio.
A directory whose card carries the same key is a cache hit; a different key is refused, never
overwritten.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.config import SyntheticCorpusConfig, load_config, repo_configs_dir, to_dict
from training.corpus.audio import resample, to_int16, write_flac
from training.corpus.budgets import speaker_schedule
from training.corpus.card import corpus_card, write_card
from training.corpus.espeak import Espeak, espeak_version
from training.corpus.grammar import SentenceGrammar, display_text
from training.corpus.manifest import CARD_FILE, MANIFEST_FILE, CorpusError, Utterance, write_jsonl
from training.corpus.speakers import ROSTER, RosterVoice, split_roster
from training.corpus.workers import single_thread_pool

__all__ = [
    "BuildReport",
    "PlannedUtterance",
    "build_synthetic_corpus",
    "corpus_key",
    "data_root",
    "default_corpus_dir",
    "load_synthetic_preset",
    "plan_corpus",
]

# Bump when the generator's output changes for an unchanged config (invalidates cached corpora).
GENERATOR_VERSION = 2
_CHUNK = 64


def load_synthetic_preset(name: str) -> SyntheticCorpusConfig:
    """`configs/corpus/<name>.yaml` as a typed config."""
    path = repo_configs_dir() / "corpus" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise CorpusError(f"no synthetic corpus preset {name!r} ({path}); known: {known}")
    return load_config(SyntheticCorpusConfig, path)


def data_root() -> Path:
    """Where corpora live: $VOICESCALE_DATA, else `data/` in the repository."""
    env = os.environ.get("VOICESCALE_DATA")
    return Path(env) if env else repo_configs_dir().parent / "data"


def corpus_key(cfg: SyntheticCorpusConfig) -> str:
    """Digest of everything that determines the corpus bytes."""
    blob = json.dumps(
        {
            "config": to_dict(cfg),
            "generator": GENERATOR_VERSION,
            "espeak": espeak_version(),
            "roster": [asdict(v) for v in ROSTER],
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_corpus_dir(cfg: SyntheticCorpusConfig) -> Path:
    return data_root() / "corpora" / f"synthetic-{cfg.name}-{corpus_key(cfg)[:8]}"


@dataclass(frozen=True)
class PlannedUtterance:
    id: str
    speaker: RosterVoice
    split: str
    order: int | None
    sentence: str
    rate: int


def plan_corpus(cfg: SyntheticCorpusConfig) -> list[PlannedUtterance]:
    """Every utterance of the corpus: training rows in budget order, then held-out rows, then
    dev rows (if any). Sentences never repeat across the three."""
    rng = random.Random(cfg.seed)
    train_voices, heldout_voices, dev_voices = split_roster(
        ROSTER, cfg.train_speakers, cfg.heldout_speakers, cfg.seed, cfg.dev_speakers
    )
    grammar = SentenceGrammar()
    per_speaker = cfg.heldout_utterances_per_speaker
    heldout_sentences = grammar.distinct_sentences(len(heldout_voices) * per_speaker, rng)
    train_sentences = grammar.distinct_sentences(
        cfg.train_utterances, rng, exclude=set(heldout_sentences)
    )
    per_dev = cfg.dev_utterances_per_speaker
    dev_sentences = grammar.distinct_sentences(
        len(dev_voices) * per_dev, rng, exclude=set(heldout_sentences) | set(train_sentences)
    )
    schedule = speaker_schedule(
        [cfg.train_utterances] * len(train_voices),
        cfg.train_utterances,
        cfg.speaker_growth,
        cfg.min_speakers_per_budget,
    )

    def jittered(voice: RosterVoice) -> int:
        return round(voice.rate * (1 + rng.uniform(-cfg.rate_jitter, cfg.rate_jitter)))

    plan = []
    for order, (speaker_index, sentence) in enumerate(zip(schedule, train_sentences, strict=True)):
        voice = train_voices[speaker_index]
        plan.append(
            PlannedUtterance(
                f"t{order:06d}-{voice.id}", voice, "train", order, sentence, jittered(voice)
            )
        )
    for s, voice in enumerate(heldout_voices):
        for k in range(per_speaker):
            sentence = heldout_sentences[s * per_speaker + k]
            plan.append(
                PlannedUtterance(
                    f"h{s:02d}{k:03d}-{voice.id}", voice, "heldout", None, sentence, jittered(voice)
                )
            )
    for s, voice in enumerate(dev_voices):
        for k in range(per_dev):
            sentence = dev_sentences[s * per_dev + k]
            plan.append(
                PlannedUtterance(
                    f"d{s:02d}{k:03d}-{voice.id}", voice, "dev", None, sentence, jittered(voice)
                )
            )
    return plan


@dataclass(frozen=True)
class BuildReport:
    root: Path
    cache_hit: bool
    seconds: float
    utterances: int

    @property
    def utterances_per_second(self) -> float:
        return self.utterances / self.seconds if self.seconds > 0 else float("inf")


def build_synthetic_corpus(
    cfg: SyntheticCorpusConfig, out: Path | None = None, *, workers: int = 2, progress: bool = True
) -> BuildReport:
    """Build the corpus into `out` (default: under `data_root()`), or reuse it if already built."""
    key = corpus_key(cfg)
    out = Path(out) if out is not None else default_corpus_dir(cfg)
    if (out / CARD_FILE).exists():
        card = json.loads((out / CARD_FILE).read_text(encoding="utf-8"))
        if card.get("key") == key and (out / MANIFEST_FILE).exists():
            return BuildReport(out, True, 0.0, card["splits"]["all"]["utterances"])
        raise CorpusError(
            f"{out}: holds a corpus built with different parameters "
            f"(key {card.get('key')}, wanted {key}); it is left untouched — "
            "choose another --out"
        )
    if out.exists() and any(out.iterdir()):
        raise CorpusError(
            f"{out}: exists and is not a corpus built by voicescale; refusing to write into it"
        )
    start = time.perf_counter()
    plan = plan_corpus(cfg)
    tmp = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # our own leftover from a crashed build
    tmp.mkdir(parents=True)
    utterances = _synthesize(plan, tmp, cfg.sample_rate, workers=workers, progress=progress)
    write_jsonl(tmp / MANIFEST_FILE, utterances)
    write_jsonl(tmp / "skipped.jsonl", [])
    card = corpus_card(
        utterances,
        kind="synthetic",
        key=key,
        config=to_dict(cfg),
        speakers={v.id: asdict(v) for v in {p.speaker for p in plan}},
        skipped=0,
    )
    write_card(tmp / CARD_FILE, card)
    (tmp / "grammar.jsgf").write_text(SentenceGrammar().to_jsgf(), encoding="utf-8")
    if out.exists():
        out.rmdir()  # empty (checked above)
    tmp.rename(out)
    return BuildReport(out, False, time.perf_counter() - start, len(utterances))


def _synthesize(
    plan: list[PlannedUtterance], root: Path, sample_rate: int, *, workers: int, progress: bool
) -> list[Utterance]:
    chunks = [plan[i : i + _CHUNK] for i in range(0, len(plan), _CHUNK)]
    bar = tqdm(total=len(plan), desc="synthesising", unit="utt", disable=not progress)
    out: list[Utterance] = []
    job = functools.partial(_synthesize_chunk, root=str(root), sample_rate=sample_rate)
    # Always in worker processes, even for one worker: they run torch on one thread, which
    # keeps the resampled samples (and so the files) independent of the caller's settings.
    with single_thread_pool(workers) as pool:
        for rows in pool.map(job, chunks):
            out.extend(rows)
            bar.update(len(rows))
    bar.close()
    return out


@functools.cache
def _espeak() -> Espeak:
    """One synthesiser per process (eSpeak keeps global state)."""
    return Espeak()


def _synthesize_chunk(
    chunk: list[PlannedUtterance], *, root: str, sample_rate: int
) -> list[Utterance]:
    # eSpeak's output depends on what it spoke before; a fresh instance per fixed-size chunk
    # makes every file depend only on the plan, whichever worker runs the chunk.
    _espeak().reset()
    return [_synthesize_one(p, Path(root), sample_rate) for p in chunk]


def _synthesize_one(p: PlannedUtterance, root: Path, sample_rate: int) -> Utterance:
    text = display_text(p.sentence)
    synth = _espeak().synthesize(text, p.speaker.voice(rate=p.rate))
    if len(synth.audio) == 0 or not synth.phonemes:
        raise CorpusError(f"eSpeak produced no audio for {p.id} ({text!r}, voice {p.speaker})")
    wave = resample(synth.audio.astype(np.float32) / 32768.0, synth.sample_rate, sample_rate)
    pcm = to_int16(wave)
    durations = _rescale_durations(synth.durations, len(pcm), synth.sample_rate, sample_rate)
    audio = f"audio/{p.speaker.id}/{p.id}.flac"
    write_flac(root / audio, pcm, sample_rate)
    return Utterance(
        id=p.id,
        speaker=p.speaker.id,
        split=p.split,
        text=text,
        phonemes=synth.phonemes,
        audio=audio,
        duration_s=round(len(pcm) / sample_rate, 6),
        sample_rate=sample_rate,
        num_samples=len(pcm),
        durations=durations,
        order=p.order,
        source={"voice": asdict(p.speaker.voice(rate=p.rate))},
    )


def _rescale_durations(durations: list[int], n_out: int, rate_in: int, rate_out: int) -> list[int]:
    """Durations at `rate_in` → at `rate_out`, summing exactly to `n_out` samples."""
    starts = np.concatenate([[0], np.cumsum(durations)[:-1]]) * (rate_out / rate_in)
    bounds = np.minimum(np.rint(starts).astype(np.int64), n_out)
    return (np.append(bounds[1:], n_out) - bounds).tolist()

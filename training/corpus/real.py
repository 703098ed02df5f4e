"""Real corpora → the same prepared-corpus format as the synthetic one.

Layouts read from a local directory (nothing is downloaded):
    libritts     <speaker>/<chapter>/<utt>.wav + <utt>.normalized.txt   (LibriTTS and LibriTTS-R)
    librispeech  <speaker>/<chapter>/<utt>.flac + <speaker>-<chapter>.trans.txt
    vctk         wav48*/<speaker>/<utt>[_mic1|_mic2].(wav|flac) + txt/<speaker>/<utt>.txt
    manifest     a JSONL or CSV file with columns audio, text, speaker (optional: id,
                 sample_rate); audio paths are relative to the file's directory

Audio is resampled to 16 kHz with torchaudio and written as FLAC; phonemes come from the same
eSpeak front end as the synthetic corpus (real speech has no phoneme timings: `durations` is
null). Speakers are split deterministically (by seed) into training and held-out voices, and
the training order nests budgets exactly as for the synthetic corpus.

Bad input, by case:
    unreadable/corrupt audio, zero-length audio, a rate below `min_source_sample_rate`, a rate
    that differs from the one a manifest declares, a missing audio file, an empty or non-UTF-8
    transcript, text eSpeak finds no phonemes in, audio over `max_duration_s`
        → skipped: counted, and listed with the reason in `skipped.jsonl`
    an audio path that is absolute or leaves the source root, a duplicate utterance id,
    a manifest file that is malformed (no header, missing column, bad JSON)
        → error naming the file/line: the input itself is ambiguous or unsafe
"""

from __future__ import annotations

import csv
import functools
import hashlib
import itertools
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from training.config import RealCorpusConfig, to_dict
from training.corpus.audio import read_audio, resample, to_int16, write_flac
from training.corpus.budgets import speaker_schedule
from training.corpus.card import corpus_card, write_card
from training.corpus.espeak import Espeak
from training.corpus.manifest import (
    CARD_FILE,
    MANIFEST_FILE,
    SKIPPED_FILE,
    CorpusError,
    Utterance,
    safe_relative_path,
    write_jsonl,
)
from training.corpus.workers import single_thread_pool

__all__ = ["PrepareReport", "SourceItem", "enumerate_source", "prepare_corpus", "split_speakers"]

_CHUNK = 32
PREPARER_VERSION = 1


@dataclass(frozen=True)
class SourceItem:
    """One utterance found in the source corpus, before its audio is read."""

    id: str
    speaker: str
    audio: Path
    text: str | None
    problem: str | None = None
    """Why this item cannot be used (found while listing), or None."""
    declared_rate: int | None = None


@dataclass(frozen=True)
class _Outcome:
    item: SourceItem
    utterance: Utterance | None
    reason: str | None


@dataclass(frozen=True)
class PrepareReport:
    root: Path
    cache_hit: bool
    utterances: int
    skipped: int
    seconds: float


# ---------------------------------------------------------------------------------------------
# Listing the source


def enumerate_source(layout: str, source: Path) -> list[SourceItem]:
    """All utterances of `source` in `layout`, sorted by id; raises on duplicate ids."""
    if not source.exists():
        raise CorpusError(f"{source}: corpus source does not exist")
    lister = {
        "libritts": _list_libritts,
        "librispeech": _list_librispeech,
        "vctk": _list_vctk,
        "manifest": _list_manifest,
    }[layout]
    items = sorted(lister(source), key=lambda i: i.id)
    for a, b in itertools.pairwise(items):
        if a.id == b.id:
            raise CorpusError(
                f"{source}: duplicate utterance id {a.id!r} ({a.audio} and {b.audio})"
            )
    if not items:
        raise CorpusError(f"{source}: no utterances found for layout {layout!r}")
    return items


def _read_text(path: Path) -> tuple[str | None, str | None]:
    """(text, problem) of a transcript file."""
    if not path.is_file():
        return None, f"transcript {path.name} is missing"
    try:
        text = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        return None, f"transcript {path.name} is not valid UTF-8"
    return (text, None) if text else (None, f"transcript {path.name} is empty")


def _list_libritts(root: Path) -> Iterator[SourceItem]:
    for wav in root.rglob("*.wav"):
        text, problem = _read_text(wav.with_suffix(".normalized.txt"))
        yield SourceItem(wav.stem, wav.parent.parent.name, wav, text, problem)


def _list_librispeech(root: Path) -> Iterator[SourceItem]:
    for trans in root.rglob("*.trans.txt"):
        try:
            lines = trans.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            # Cannot tell the lines apart reliably: every flac of this chapter is skipped.
            for flac in sorted(trans.parent.glob("*.flac")):
                yield SourceItem(
                    flac.stem,
                    flac.stem.split("-")[0],
                    flac,
                    None,
                    f"transcript {trans.name} is not valid UTF-8",
                )
            continue
        for line in lines:
            utt_id, _, text = line.strip().partition(" ")
            if not utt_id:
                continue
            text = text.strip()
            yield SourceItem(
                utt_id,
                utt_id.split("-")[0],
                trans.parent / f"{utt_id}.flac",
                text or None,
                None if text else f"empty transcript in {trans.name}",
            )


_VCTK_NAME = re.compile(r"^(?P<id>(?P<speaker>[sp]\d+)_\d+)(?:_mic(?P<mic>[12]))?$")


def _list_vctk(root: Path) -> Iterator[SourceItem]:
    chosen: dict[str, Path] = {}
    for wav_dir in sorted(root.glob("wav48*")):
        for audio in sorted([*wav_dir.rglob("*.wav"), *wav_dir.rglob("*.flac")]):
            match = _VCTK_NAME.match(audio.stem)
            if not match:
                continue
            # VCTK 0.92 has two microphones per utterance; use mic1 unless only mic2 exists.
            if match["id"] not in chosen or match["mic"] == "1":
                chosen[match["id"]] = audio
    for utt_id, audio in chosen.items():
        speaker = _VCTK_NAME.match(audio.stem)["speaker"]
        text, problem = _read_text(root / "txt" / speaker / f"{utt_id}.txt")
        yield SourceItem(utt_id, speaker, audio, text, problem)


def _list_manifest(path: Path) -> Iterator[SourceItem]:
    root = path.parent
    for where, row in _manifest_rows(path):
        for column in ("audio", "text", "speaker"):
            if column not in row or row[column] is None:
                raise CorpusError(f"{where}: missing column {column!r}")
        relative = safe_relative_path(row["audio"], where)
        text = str(row["text"]).strip()
        declared = row.get("sample_rate")
        if declared not in (None, ""):
            try:
                declared = int(declared)
            except (TypeError, ValueError):
                raise CorpusError(
                    f"{where}: sample_rate must be an integer, got {declared!r}"
                ) from None
        yield SourceItem(
            id=str(row.get("id") or Path(relative).stem),
            speaker=str(row["speaker"]),
            audio=root / relative,
            text=text or None,
            problem=None if text else "empty transcript",
            declared_rate=declared or None,
        )


def _manifest_rows(path: Path) -> Iterator[tuple[str, dict]]:
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(f"{path}: manifest is not valid UTF-8 ({err.reason})") from None
    if path.suffix == ".csv":
        reader = csv.DictReader(content.splitlines())
        if not reader.fieldnames:
            raise CorpusError(f"{path}: CSV manifest has no header row")
        for number, row in enumerate(reader, start=2):
            yield f"{path}:{number}", row
        return
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise CorpusError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise CorpusError(f"{path}:{number}: expected a JSON object")
        yield f"{path}:{number}", row


# ---------------------------------------------------------------------------------------------
# Splitting and ordering


def split_speakers(
    speakers: list[str], cfg: RealCorpusConfig
) -> tuple[list[str], list[str], list[str]]:
    """(training, held-out, dev) speakers: a seeded, deterministic shuffle, then cuts."""
    ranked = sorted(
        set(speakers), key=lambda s: hashlib.sha256(f"{cfg.seed}:{s}".encode()).hexdigest()
    )
    n_heldout = max(cfg.min_heldout_speakers, round(cfg.heldout_fraction * len(ranked)))
    n_out = n_heldout + cfg.dev_speakers
    if n_out >= len(ranked):
        raise CorpusError(
            f"the corpus has {len(ranked)} usable speakers; holding out "
            f"{n_heldout} (+ {cfg.dev_speakers} dev) would leave none to train on "
            f"(heldout_fraction={cfg.heldout_fraction}, min_heldout_speakers="
            f"{cfg.min_heldout_speakers}, dev_speakers={cfg.dev_speakers})"
        )
    return ranked[n_out:], ranked[:n_heldout], ranked[n_heldout:n_out]


def _training_order(
    utts: list[Utterance], speakers: list[str], cfg: RealCorpusConfig
) -> list[Utterance]:
    by_speaker: dict[str, list[Utterance]] = {s: [] for s in speakers}
    for u in utts:
        by_speaker[u.speaker].append(u)
    for s in speakers:  # seeded order within a speaker, so a budget mixes chapters
        by_speaker[s].sort(key=lambda u: hashlib.sha256(f"{cfg.seed}:{u.id}".encode()).hexdigest())
    schedule = speaker_schedule(
        [len(by_speaker[s]) for s in speakers],
        len(utts),
        cfg.speaker_growth,
        cfg.min_speakers_per_budget,
    )
    taken = dict.fromkeys(speakers, 0)
    ordered = []
    for order, index in enumerate(schedule):
        speaker = speakers[index]
        ordered.append(_with_order(by_speaker[speaker][taken[speaker]], order))
        taken[speaker] += 1
    return ordered


def _with_order(u: Utterance, order: int | None) -> Utterance:
    return Utterance(**{**asdict(u), "order": order})


# ---------------------------------------------------------------------------------------------
# Preparing


def prepare_corpus(cfg: RealCorpusConfig, out: Path, *, progress: bool = True) -> PrepareReport:
    """Read, resample, phonemise and split a real corpus into `out` (see module docstring)."""
    start = time.perf_counter()
    source = Path(cfg.source)
    items = enumerate_source(cfg.layout, source)
    key = _prepare_key(cfg, items)
    out = Path(out)
    if (out / CARD_FILE).exists():
        card = json.loads((out / CARD_FILE).read_text(encoding="utf-8"))
        if card.get("key") == key:
            return PrepareReport(
                out, True, card["splits"]["all"]["utterances"], card["skipped"], 0.0
            )
        raise CorpusError(
            f"{out}: holds a corpus prepared from other inputs or settings "
            f"(key {card.get('key')}, wanted {key}); it is left untouched — "
            "choose another --out"
        )
    if out.exists() and any(out.iterdir()):
        raise CorpusError(
            f"{out}: exists and is not a corpus prepared by voicescale; refusing to write into it"
        )
    tmp = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    outcomes = _process_all(items, tmp, cfg, progress=progress)
    kept = [o.utterance for o in outcomes if o.utterance is not None]
    skipped = [
        {"id": o.item.id, "source": str(o.item.audio), "reason": o.reason}
        for o in outcomes
        if o.utterance is None
    ]
    if not kept:
        raise CorpusError(
            f"{source}: every utterance was skipped (first reason: "
            f"{skipped[0]['reason']}); see the list above"
        )
    train_speakers, heldout_speakers, dev_speakers = split_speakers([u.speaker for u in kept], cfg)
    train = _training_order(
        [u for u in kept if u.speaker in set(train_speakers)], train_speakers, cfg
    )
    dev = [Utterance(**{**asdict(u), "split": "dev"}) for u in kept if u.speaker in dev_speakers]
    heldout = [
        Utterance(**{**asdict(u), "split": "heldout"})
        for u in kept
        if u.speaker in set(heldout_speakers)
    ]
    utterances = train + dev + heldout
    write_jsonl(tmp / MANIFEST_FILE, utterances)
    write_jsonl(tmp / SKIPPED_FILE, skipped)
    card = corpus_card(
        utterances,
        kind=f"real:{cfg.layout}",
        key=key,
        config=to_dict(cfg),
        speakers={},
        skipped=len(skipped),
    )
    card["skipped_reasons"] = _reason_counts(skipped)
    write_card(tmp / CARD_FILE, card)
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return PrepareReport(out, False, len(utterances), len(skipped), time.perf_counter() - start)


def _reason_counts(skipped: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in skipped:
        kind = re.sub(r"\S+\.(txt|wav|flac)\b", "<file>", row["reason"])
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def _prepare_key(cfg: RealCorpusConfig, items: list[SourceItem]) -> str:
    config = to_dict(cfg)
    if not config["dev_speakers"]:  # added later: corpora prepared without it keep their key
        del config["dev_speakers"]
    h = hashlib.sha256(
        json.dumps({"config": config, "version": PREPARER_VERSION}, sort_keys=True).encode()
    )
    for item in items:
        stat = item.audio.stat() if item.audio.is_file() else None
        h.update(
            json.dumps(
                [
                    item.id,
                    item.speaker,
                    str(item.audio),
                    item.text,
                    item.problem,
                    stat and (stat.st_size, stat.st_mtime_ns),
                ]
            ).encode()
        )
    return h.hexdigest()[:16]


def _process_all(
    items: list[SourceItem], root: Path, cfg: RealCorpusConfig, *, progress: bool
) -> list[_Outcome]:
    chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    job = functools.partial(_process_chunk, root=str(root), cfg=cfg)
    bar = tqdm(total=len(items), desc="preparing", unit="utt", disable=not progress)
    outcomes: list[_Outcome] = []
    with single_thread_pool(cfg.workers) as pool:
        for chunk_outcomes in pool.map(job, chunks):
            outcomes.extend(chunk_outcomes)
            bar.update(len(chunk_outcomes))
    bar.close()
    return outcomes


@functools.cache
def _espeak() -> Espeak:
    return Espeak()


def _process_chunk(chunk: list[SourceItem], *, root: str, cfg: RealCorpusConfig) -> list[_Outcome]:
    return [_process_one(item, Path(root), cfg) for item in chunk]


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _file_name(text: str) -> str:
    safe = _UNSAFE.sub("_", text)
    if safe == text and safe not in ("", ".", ".."):
        return safe
    return f"{safe.strip('.')}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def _process_one(item: SourceItem, root: Path, cfg: RealCorpusConfig) -> _Outcome:
    def skip(reason: str) -> _Outcome:
        return _Outcome(item, None, reason)

    if item.problem:
        return skip(item.problem)
    try:
        wave, rate = read_audio(item.audio)
    except CorpusError as err:
        return skip(str(err).removeprefix(f"{item.audio}: "))
    if item.declared_rate is not None and item.declared_rate != rate:
        return skip(f"manifest declares {item.declared_rate} Hz, the file is {rate} Hz")
    if rate < cfg.min_source_sample_rate:
        return skip(
            f"sample rate {rate} Hz is below min_source_sample_rate {cfg.min_source_sample_rate} Hz"
        )
    if len(wave) / rate > cfg.max_duration_s:
        return skip(
            f"{len(wave) / rate:.1f} s is longer than max_duration_s {cfg.max_duration_s:g} s"
        )
    phonemes = _espeak().phonemize(item.text)
    if not any(p.strip("_:") for p in phonemes):
        return skip("eSpeak finds no phonemes in the transcript")
    pcm = to_int16(resample(wave, rate, cfg.sample_rate))
    audio = f"audio/{_file_name(item.speaker)}/{_file_name(item.id)}.flac"
    write_flac(root / audio, pcm, cfg.sample_rate)
    return _Outcome(
        item,
        Utterance(
            id=item.id,
            speaker=item.speaker,
            split="train",
            text=item.text,
            phonemes=phonemes,
            audio=audio,
            duration_s=round(len(pcm) / cfg.sample_rate, 6),
            sample_rate=cfg.sample_rate,
            num_samples=len(pcm),
            durations=None,
            order=None,
            source={"file": str(item.audio), "sample_rate": rate},
        ),
        None,
    )

"""The embedded synthetic corpus: determinism, nesting, disjoint splits, caching, refusal."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import soundfile as sf

from training.config import SyntheticCorpusConfig, replace
from training.corpus.manifest import MANIFEST_FILE, Corpus, CorpusError
from training.corpus.speakers import ROSTER, split_roster, voice_family
from training.corpus.synthetic import (
    build_synthetic_corpus,
    load_synthetic_preset,
    plan_corpus,
)


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of the manifest and every audio file (the card is allowed to differ)."""
    files = [root / MANIFEST_FILE, *sorted((root / "audio").rglob("*.flac"))]
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_default_preset_plans_enough_distinct_voices():
    cfg = load_synthetic_preset("default")
    plan = plan_corpus(cfg)
    train = {p.speaker for p in plan if p.split == "train"}
    heldout = {p.speaker for p in plan if p.split == "heldout"}
    assert len(train) + len(heldout) >= 32 and len(heldout) >= 8
    assert not {v.variant for v in train} & {v.variant for v in heldout}, (
        "held-out voices must not share an eSpeak variant with training voices"
    )
    assert sum(p.split == "train" for p in plan) == cfg.train_utterances


def test_plan_is_deterministic_and_seed_dependent():
    cfg = load_synthetic_preset("smoke")
    assert plan_corpus(cfg) == plan_corpus(cfg)
    assert plan_corpus(cfg) != plan_corpus(replace(cfg, seed=1))


def test_same_seed_gives_byte_identical_corpus(smoke_corpus, tmp_path):
    # The session corpus was built with 2 workers; rebuild with 1: same bytes.
    again = build_synthetic_corpus(
        load_synthetic_preset("smoke"), tmp_path / "again", workers=1, progress=False
    )
    assert not again.cache_hit
    assert tree_digest(again.root) == tree_digest(smoke_corpus)


def test_rebuild_is_a_cache_hit(smoke_corpus):
    before = (smoke_corpus / MANIFEST_FILE).stat().st_mtime_ns
    report = build_synthetic_corpus(load_synthetic_preset("smoke"), smoke_corpus, progress=False)
    assert report.cache_hit and report.seconds == 0.0
    assert (smoke_corpus / MANIFEST_FILE).stat().st_mtime_ns == before


def test_different_parameters_never_overwrite_a_built_corpus(smoke_corpus):
    digest = tree_digest(smoke_corpus)
    other = replace(load_synthetic_preset("smoke"), seed=7)
    with pytest.raises(CorpusError, match=r"different parameters .* left untouched"):
        build_synthetic_corpus(other, smoke_corpus, progress=False)
    assert tree_digest(smoke_corpus) == digest


def test_refuses_to_write_into_a_foreign_directory(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(CorpusError, match=r"not a corpus built by voicescale"):
        build_synthetic_corpus(load_synthetic_preset("smoke"), tmp_path, progress=False)
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_speakers_families_and_sentences_are_disjoint(smoke_corpus):
    """Held-out and dev voices are new speakers: no training voice is an edit of their eSpeak
    voice file (robosoft8 vs robosoft3, m2 vs m1), and no sentence is shared."""
    corpus = Corpus.open(smoke_corpus)
    splits = {"train": corpus.train, "heldout": corpus.heldout, "dev": corpus.dev}
    families = {
        name: {voice_family(u.source["voice"]["variant"]) for u in utts}
        for name, utts in splits.items()
    }
    texts = {name: {u.text for u in utts} for name, utts in splits.items()}
    for a, b in (("train", "heldout"), ("train", "dev"), ("heldout", "dev")):
        assert not families[a] & families[b], (a, b)
        assert not texts[a] & texts[b], (a, b)
    assert len(texts["train"]) == len(corpus.train)  # no sentence repeats in training
    cfg = load_synthetic_preset("smoke")
    assert len({u.speaker for u in corpus.heldout}) == cfg.heldout_speakers
    assert len({u.speaker for u in corpus.dev}) == cfg.dev_speakers
    assert len({u.speaker for u in corpus.train}) == cfg.train_speakers


def test_voice_families_group_edited_variants():
    assert voice_family("robosoft8") == voice_family("robosoft") == "robosoft"
    assert voice_family("m2") == voice_family("m7") and voice_family("anikaRobot") == "anika"
    assert voice_family("klatt") != voice_family("steph")


def test_every_family_stays_on_one_side_of_the_split():
    train, heldout, dev = split_roster(ROSTER, 40, 8, seed=3, n_dev=4)
    sides = [{voice_family(v.variant) for v in side} for side in (train, heldout, dev)]
    assert not sides[0] & sides[1] and not sides[0] & sides[2] and not sides[1] & sides[2]
    assert len(heldout) == 8 and len(dev) == 4 and len(train) == 40


def test_budgets_nest_and_voices_grow(smoke_corpus):
    corpus = Corpus.open(smoke_corpus)
    train = corpus.train
    assert [u.order for u in train] == list(range(len(train)))
    voices = [len({u.speaker for u in train[:n]}) for n in (32, 128, len(train))]
    assert voices == sorted(voices) and voices[0] < voices[-1]
    card = corpus.card()
    hours = [b["hours"] for b in card["budgets"]]
    assert hours == sorted(hours) and card["budgets"][-1]["utterances"] == len(train)


def test_manifest_rows_describe_real_16k_audio(smoke_corpus):
    corpus = Corpus.open(smoke_corpus)
    for utt in corpus.utterances[:: max(1, len(corpus.utterances) // 20)]:
        info = sf.info(str(corpus.audio_path(utt)))
        assert info.samplerate == 16000 and info.channels == 1
        assert info.frames == utt.num_samples
        assert abs(utt.duration_s - utt.num_samples / 16000) < 1e-5
        assert utt.durations and sum(utt.durations) == utt.num_samples
        assert len(utt.durations) == len(utt.phonemes)
        assert utt.source["voice"]["variant"]


def test_card_records_speakers_hours_seed_and_tools(smoke_corpus):
    card = json.loads((smoke_corpus / "corpus_card.json").read_text())
    assert card["config"]["seed"] == 0 and card["kind"] == "synthetic"
    assert card["splits"]["train"]["hours"] > 0 and card["splits"]["heldout"]["speakers"] == 4
    assert card["tools"]["espeak-ng"].startswith("1.")
    assert all(entry["source"] for entry in card["speakers"].values())
    assert (smoke_corpus / "grammar.jsgf").read_text().startswith("#JSGF")


def test_roster_ids_are_unique():
    ids = [v.id for v in ROSTER]
    assert len(ids) == len(set(ids))


def test_too_many_speakers_for_the_roster_is_a_clear_error():
    cfg = SyntheticCorpusConfig(
        train_speakers=len(ROSTER), heldout_speakers=8, train_utterances=len(ROSTER)
    )
    with pytest.raises(ValueError, match=r"not enough for"):
        plan_corpus(cfg)

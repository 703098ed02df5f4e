"""Real-corpus layouts → prepared corpora, and every bad-input case (skip or error)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.config import RealCorpusConfig
from training.corpus.manifest import SKIPPED_FILE, Corpus, CorpusError
from training.corpus.real import prepare_corpus

TEXTS = [
    "The quiet garden waited.",
    "A small boat sailed home.",
    "Seven red apples fell.",
    "We walked past the old mill.",
]


def tone(rate: int, seconds: float = 0.6, seed: int = 0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.01, t.shape)
    return (0.3 * np.sin(2 * np.pi * (180 + 40 * seed) * t) + noise).astype(np.float32)


def write_audio(path: Path, rate: int, seed: int = 0, seconds: float = 0.6) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(rate, seconds, seed), rate)


def prepare(layout: str, source: Path, out: Path, **overrides) -> Corpus:
    cfg = RealCorpusConfig(
        layout=layout, source=str(source), workers=1, min_speakers_per_budget=1, **overrides
    )
    prepare_corpus(cfg, out, progress=False)
    return Corpus.open(out)


def skipped(out: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in (out / SKIPPED_FILE).read_text().splitlines()]
    return {row["id"]: row["reason"] for row in rows}


def make_libritts(root: Path, speakers: int = 4, per_speaker: int = 3) -> Path:
    base = root / "LibriTTS_R" / "train-clean-100"
    for s in range(speakers):
        for u in range(per_speaker):
            stem = f"{100 + s}_{200 + s}_{u:06d}_000000"
            folder = base / str(100 + s) / str(200 + s)
            write_audio(folder / f"{stem}.wav", 24000, seed=s)
            (folder / f"{stem}.normalized.txt").write_text(TEXTS[(s + u) % len(TEXTS)])
    return base


def make_librispeech(root: Path, speakers: int = 4, per_speaker: int = 3) -> Path:
    for s in range(speakers):
        folder = root / str(300 + s) / "10"
        lines = []
        for u in range(per_speaker):
            utt = f"{300 + s}-10-{u:04d}"
            write_audio(folder / f"{utt}.flac", 16000, seed=s)
            lines.append(f"{utt} {TEXTS[(s + u) % len(TEXTS)].upper().rstrip('.')}")
        (folder / f"{300 + s}-10.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def make_vctk(root: Path, speakers: int = 4, per_speaker: int = 3) -> Path:
    for s in range(speakers):
        spk = f"p{225 + s}"
        for u in range(1, per_speaker + 1):
            for mic in (1, 2):
                write_audio(
                    root / "wav48_silence_trimmed" / spk / f"{spk}_{u:03d}_mic{mic}.flac",
                    48000,
                    seed=s + 10 * mic,
                )
            (root / "txt" / spk).mkdir(parents=True, exist_ok=True)
            (root / "txt" / spk / f"{spk}_{u:03d}.txt").write_text(TEXTS[u % len(TEXTS)] + "\n")
    return root


def make_manifest_rows(root: Path, speakers: int = 4, per_speaker: int = 3) -> list[dict]:
    rows = []
    for s in range(speakers):
        for u in range(per_speaker):
            name = f"clips/spk{s}/c{u}.wav"
            write_audio(root / name, 22050, seed=s)
            rows.append(
                {"id": f"spk{s}-{u}", "audio": name, "speaker": f"spk{s}", "text": TEXTS[u]}
            )
    return rows


def write_jsonl_manifest(root: Path, rows: list[dict]) -> Path:
    path = root / "list.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------------------------------------
# Layouts


def check_prepared(corpus: Corpus, expected: int, heldout_speakers: int) -> None:
    assert len(corpus.utterances) == expected
    assert len({u.speaker for u in corpus.heldout}) == heldout_speakers
    assert not {u.speaker for u in corpus.train} & {u.speaker for u in corpus.heldout}
    for utt in corpus.utterances:
        info = sf.info(str(corpus.audio_path(utt)))
        assert info.samplerate == 16000 == utt.sample_rate
        assert info.frames == utt.num_samples
        assert abs(utt.duration_s - 0.6) < 0.01  # resampled, length preserved
        assert utt.phonemes and utt.durations is None


def test_libritts_layout(tmp_path):
    corpus = prepare(
        "libritts",
        make_libritts(tmp_path / "src"),
        tmp_path / "out",
        heldout_fraction=0.25,
        min_heldout_speakers=1,
    )
    check_prepared(corpus, 12, heldout_speakers=1)
    assert corpus.card()["kind"] == "real:libritts"


def test_librispeech_layout(tmp_path):
    corpus = prepare(
        "librispeech", make_librispeech(tmp_path / "src"), tmp_path / "out", heldout_fraction=0.5
    )
    check_prepared(corpus, 12, heldout_speakers=2)
    assert corpus.utterances[0].text.isupper()


def test_vctk_layout_uses_one_microphone(tmp_path):
    corpus = prepare("vctk", make_vctk(tmp_path / "src"), tmp_path / "out")
    check_prepared(corpus, 12, heldout_speakers=2)
    assert all(u.source["file"].endswith("_mic1.flac") for u in corpus.utterances)


def test_jsonl_and_csv_manifests(tmp_path):
    rows = make_manifest_rows(tmp_path / "src")
    corpus = prepare("manifest", write_jsonl_manifest(tmp_path / "src", rows), tmp_path / "a")
    check_prepared(corpus, 12, heldout_speakers=2)
    csv_path = tmp_path / "src" / "list.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "audio", "speaker", "text"])
        writer.writeheader()
        writer.writerows(rows)
    again = prepare("manifest", csv_path, tmp_path / "b")
    assert [u.id for u in again.utterances] == [u.id for u in corpus.utterances]


def test_split_and_order_are_deterministic_by_seed(tmp_path):
    source = make_librispeech(tmp_path / "src", speakers=8)
    a = prepare("librispeech", source, tmp_path / "a", seed=0)
    b = prepare("librispeech", source, tmp_path / "b", seed=0)
    c = prepare("librispeech", source, tmp_path / "c", seed=5)
    assert [u.id for u in a.utterances] == [u.id for u in b.utterances]
    assert [u.id for u in a.utterances] != [u.id for u in c.utterances]
    assert [u.order for u in a.train] == list(range(len(a.train)))


def test_second_prepare_is_a_cache_hit(tmp_path):
    source = make_librispeech(tmp_path / "src")
    cfg = RealCorpusConfig(layout="librispeech", source=str(source), workers=1)
    first = prepare_corpus(cfg, tmp_path / "out", progress=False)
    second = prepare_corpus(cfg, tmp_path / "out", progress=False)
    assert not first.cache_hit and second.cache_hit and second.utterances == first.utterances


# ---------------------------------------------------------------------------------------------
# Bad input: skipped (counted, listed with reasons) ...


def test_bad_audio_and_transcripts_are_skipped_and_listed(tmp_path):
    src = tmp_path / "src"
    rows = make_manifest_rows(src)
    (src / "clips/corrupt.wav").write_bytes(b"RIFF\x00\x00garbage, not audio at all")
    sf.write(str(src / "clips/empty.wav"), np.zeros(0, np.float32), 16000)
    write_audio(src / "clips/narrowband.wav", 8000)
    write_audio(src / "clips/declared.wav", 16000)
    write_audio(src / "clips/long.wav", 16000, seconds=3.0)
    rows += [
        {"id": "corrupt", "audio": "clips/corrupt.wav", "speaker": "spk0", "text": "Hi there."},
        {"id": "empty", "audio": "clips/empty.wav", "speaker": "spk0", "text": "Hi there."},
        {"id": "narrow", "audio": "clips/narrowband.wav", "speaker": "spk1", "text": "Hi."},
        {
            "id": "declared",
            "audio": "clips/declared.wav",
            "speaker": "spk1",
            "text": "Hi.",
            "sample_rate": 22050,
        },
        {"id": "missing", "audio": "clips/not_there.wav", "speaker": "spk2", "text": "Hi."},
        {"id": "blank", "audio": "clips/spk0/c0.wav", "speaker": "spk0", "text": "   "},
        {"id": "long", "audio": "clips/long.wav", "speaker": "spk3", "text": "Hello."},
        {"id": "symbols", "audio": "clips/spk0/c1.wav", "speaker": "spk0", "text": "..."},
    ]
    out = tmp_path / "out"
    corpus = prepare("manifest", write_jsonl_manifest(src, rows), out, max_duration_s=2.0)
    assert len(corpus.utterances) == 12
    reasons = skipped(out)
    assert set(reasons) == {
        "corrupt",
        "empty",
        "narrow",
        "declared",
        "missing",
        "blank",
        "long",
        "symbols",
    }
    assert "unreadable or corrupt" in reasons["corrupt"]
    assert "zero length" in reasons["empty"]
    assert "8000 Hz is below min_source_sample_rate" in reasons["narrow"]
    assert "declares 22050 Hz, the file is 16000 Hz" in reasons["declared"]
    assert "missing" in reasons["missing"]
    assert "empty transcript" in reasons["blank"]
    assert "longer than max_duration_s" in reasons["long"]
    assert "no phonemes" in reasons["symbols"]
    assert corpus.card()["skipped"] == 8


def test_non_utf8_and_empty_transcripts_in_folder_layouts(tmp_path):
    base = make_libritts(tmp_path / "lt")
    folder = base / "100" / "200"
    (folder / "100_200_000000_000000.normalized.txt").write_bytes("caf\xe9".encode("latin-1"))
    (folder / "100_200_000001_000000.normalized.txt").write_text("")
    (folder / "100_200_000002_000000.normalized.txt").unlink()
    prepare("libritts", base, tmp_path / "out")
    reasons = skipped(tmp_path / "out")
    assert "not valid UTF-8" in reasons["100_200_000000_000000"]
    assert "is empty" in reasons["100_200_000001_000000"]
    assert "is missing" in reasons["100_200_000002_000000"]

    ls = make_librispeech(tmp_path / "ls")
    (ls / "300" / "10" / "300-10.trans.txt").write_bytes(b"300-10-0000 CAF\xe9\n")
    (ls / "301" / "10" / "301-10-0001.flac").unlink()
    prepare("librispeech", ls, tmp_path / "out2")
    reasons = skipped(tmp_path / "out2")
    assert {k for k, v in reasons.items() if "not valid UTF-8" in v} == {
        "300-10-0000",
        "300-10-0001",
        "300-10-0002",
    }
    assert "missing" in reasons["301-10-0001"]


# ... or errors naming the file, when the input is unsafe or ambiguous


@pytest.mark.parametrize(
    ("audio", "problem"),
    [
        ("../escape.wav", "escapes the corpus root"),
        ("/etc/hosts", "is absolute"),
    ],
)
def test_manifest_paths_outside_the_root_are_errors(tmp_path, audio, problem):
    src = tmp_path / "src"
    rows = make_manifest_rows(src)
    rows.append({"id": "bad", "audio": audio, "speaker": "spk0", "text": "Hi."})
    path = write_jsonl_manifest(src, rows)
    with pytest.raises(CorpusError, match=rf"list.jsonl:13: audio path .* {problem}"):
        prepare("manifest", path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_duplicate_ids_are_errors(tmp_path):
    src = tmp_path / "src"
    rows = make_manifest_rows(src)
    rows.append({**rows[0]})
    with pytest.raises(CorpusError, match=r"duplicate utterance id 'spk0-0'"):
        prepare("manifest", write_jsonl_manifest(src, rows), tmp_path / "out")


def test_malformed_manifests_are_errors(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jsonl").write_text('{"audio": "x.wav", "speaker": "s"}\n')
    with pytest.raises(CorpusError, match=r"a.jsonl:1: missing column 'text'"):
        prepare("manifest", src / "a.jsonl", tmp_path / "out")
    (src / "b.csv").write_text("")
    with pytest.raises(CorpusError, match=r"no header row"):
        prepare("manifest", src / "b.csv", tmp_path / "out")
    with pytest.raises(CorpusError, match=r"does not exist"):
        prepare("libritts", src / "nowhere", tmp_path / "out")


def test_too_few_speakers_to_hold_out_is_an_error(tmp_path):
    source = make_librispeech(tmp_path / "src", speakers=2)
    with pytest.raises(CorpusError, match=r"has 2 usable speakers; holding out 2"):
        prepare("librispeech", source, tmp_path / "out")


def test_nothing_already_built_is_deleted(tmp_path):
    source = make_librispeech(tmp_path / "src")
    out = tmp_path / "out"
    prepare("librispeech", source, out)
    manifest = (out / "manifest.jsonl").read_bytes()
    with pytest.raises(CorpusError, match=r"other inputs or settings .* left untouched"):
        prepare("librispeech", source, out, seed=9)
    assert (out / "manifest.jsonl").read_bytes() == manifest
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(CorpusError, match=r"refusing to write into it"):
        prepare("librispeech", source, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"

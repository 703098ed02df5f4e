"""Opening a prepared corpus is strict: damage is an error naming the manifest line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from training.corpus.manifest import MANIFEST_FILE, Corpus, CorpusError


@pytest.fixture
def corpus_copy(smoke_corpus, tmp_path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(smoke_corpus, root, ignore=shutil.ignore_patterns("features"))
    return root


def rewrite_row(root: Path, line: int, **changes) -> None:
    path = root / MANIFEST_FILE
    rows = path.read_text().splitlines()
    row = json.loads(rows[line - 1])
    row.update(changes)
    rows[line - 1] = json.dumps(row)
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize(
    ("audio", "problem"),
    [
        ("../outside.flac", "escapes the corpus root"),
        ("audio/../../outside.flac", "escapes the corpus root"),
        ("/etc/passwd", "is absolute"),
    ],
)
def test_paths_leaving_the_corpus_root_are_errors(corpus_copy, audio, problem):
    rewrite_row(corpus_copy, 3, audio=audio)
    with pytest.raises(CorpusError, match=rf"manifest.jsonl:3: audio path .* {problem}"):
        Corpus.open(corpus_copy)


def test_duplicate_ids_name_both_lines(corpus_copy):
    first = json.loads((corpus_copy / MANIFEST_FILE).read_text().splitlines()[0])["id"]
    rewrite_row(corpus_copy, 4, id=first)
    with pytest.raises(CorpusError, match=r"manifest.jsonl:4: duplicate utterance id .* line 1"):
        Corpus.open(corpus_copy)


def test_missing_audio_file_is_an_error(corpus_copy):
    utt = Corpus.open(corpus_copy).utterances[6]
    (corpus_copy / utt.audio).unlink()
    with pytest.raises(CorpusError, match=r"manifest.jsonl:7: audio file .* is missing"):
        Corpus.open(corpus_copy)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"text": "  "}, "empty text"),
        ({"num_samples": "many"}, "field .num_samples. has the wrong type"),
        ({"split": "test"}, "split must be"),
        ({"colour": "blue"}, "unknown field"),
        ({"durations": [1, 2]}, "durations must give one count per phoneme"),
    ],
)
def test_malformed_rows_are_errors(corpus_copy, changes, problem):
    rewrite_row(corpus_copy, 2, **changes)
    with pytest.raises(CorpusError, match=rf"manifest.jsonl:2: {problem}"):
        Corpus.open(corpus_copy)


def test_invalid_json_and_missing_manifest(corpus_copy, tmp_path):
    path = corpus_copy / MANIFEST_FILE
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(CorpusError, match="not valid JSON"):
        Corpus.open(corpus_copy)
    with pytest.raises(CorpusError, match="no manifest here"):
        Corpus.open(tmp_path / "nothing")

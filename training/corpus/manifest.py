"""The corpus manifest: one JSON line per utterance, the same for synthetic and real corpora.

A prepared corpus directory holds:
    manifest.jsonl     utterances: training rows first, in budget order, then held-out rows
    corpus_card.json   what the corpus is (speakers, hours, budgets, seed, tool versions)
    skipped.jsonl      inputs left out while preparing it, each with its reason
    audio/             16 kHz mono FLAC, paths in the manifest are relative to the corpus root
    features/<hash>/   cached log-mels (see `features.py`)

Opening a corpus is strict: a row that is malformed, a duplicate id, an audio path that leaves
the corpus root, or an audio file that is missing are errors naming the manifest line — a
prepared corpus with those is damaged, and training on part of it would silently change the
x-axis of every curve.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

__all__ = [
    "CARD_FILE",
    "MANIFEST_FILE",
    "SKIPPED_FILE",
    "Corpus",
    "CorpusError",
    "Utterance",
    "read_manifest",
    "safe_relative_path",
    "write_jsonl",
]

MANIFEST_FILE = "manifest.jsonl"
CARD_FILE = "corpus_card.json"
SKIPPED_FILE = "skipped.jsonl"

Split = Literal["train", "dev", "heldout"]
"""train: the budget order; dev: voices held out from training *and* evaluation (for
stopping rules and tuning); heldout: the voices cloning quality is measured on."""


class CorpusError(ValueError):
    """A corpus or one of its inputs is malformed; the message names the file and the problem."""


@dataclass(frozen=True)
class Utterance:
    """One manifest row."""

    id: str
    speaker: str
    split: Split
    text: str
    phonemes: list[str]
    audio: str
    """Path of the audio file relative to the corpus root (POSIX separators)."""
    duration_s: float
    sample_rate: int
    num_samples: int
    durations: list[int] | None = None
    """Samples per phoneme when the source knows them (eSpeak events); None for real speech."""
    order: int | None = None
    """Position in the training order; a budget of n utterances is rows with order < n."""
    source: dict[str, Any] = field(default_factory=dict)
    """Where it came from: voice settings, original file, ..."""

    def to_json(self) -> str:
        # A shallow dict: dataclasses.asdict deep-copies every list (seconds per 10k rows).
        row = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return json.dumps(row, ensure_ascii=False, sort_keys=True)


def safe_relative_path(raw: object, where: str) -> PurePosixPath:
    """Validate a manifest audio path: relative, inside the corpus root, no `..` segments."""
    if not isinstance(raw, str) or not raw:
        raise CorpusError(f"{where}: audio path must be a non-empty string, got {raw!r}")
    path = PurePosixPath(raw.replace("\\", "/"))
    if path.is_absolute() or raw.startswith(("/", "\\")) or (len(raw) > 1 and raw[1] == ":"):
        raise CorpusError(
            f"{where}: audio path {raw!r} is absolute; manifest paths must be "
            "relative to the corpus root"
        )
    if ".." in path.parts:
        raise CorpusError(
            f"{where}: audio path {raw!r} escapes the corpus root ('..' is not allowed)"
        )
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]] | list[Utterance]) -> None:
    """Write rows as JSON lines (atomically: a half-written file never replaces a good one)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(
                row.to_json()
                if isinstance(row, Utterance)
                else json.dumps(row, ensure_ascii=False, sort_keys=True)
            )
            f.write("\n")
    tmp.replace(path)


def read_manifest(path: Path) -> list[Utterance]:
    """Parse and check a manifest; raise `CorpusError` naming the line of the first problem."""
    utterances: list[Utterance] = []
    first_line_of: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CorpusError(
            f"{path}: no manifest here (is this a prepared corpus directory?)"
        ) from None
    except UnicodeDecodeError as err:
        raise CorpusError(f"{path}: manifest is not valid UTF-8 ({err.reason})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        utt = _parse_row(line, where)
        if utt.id in first_line_of:
            raise CorpusError(
                f"{where}: duplicate utterance id {utt.id!r} "
                f"(first on line {first_line_of[utt.id]})"
            )
        first_line_of[utt.id] = number
        utterances.append(utt)
    return utterances


_REQUIRED = {
    "id": str,
    "speaker": str,
    "split": str,
    "text": str,
    "phonemes": list,
    "audio": str,
    "duration_s": (int, float),
    "sample_rate": int,
    "num_samples": int,
}


def _parse_row(line: str, where: str) -> Utterance:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise CorpusError(f"{where}: not valid JSON ({err.msg})") from None
    if not isinstance(row, dict):
        raise CorpusError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key, kind in _REQUIRED.items():
        if key not in row:
            raise CorpusError(f"{where}: missing field {key!r}")
        if not isinstance(row[key], kind) or isinstance(row[key], bool):
            raise CorpusError(
                f"{where}: field {key!r} has the wrong type ({type(row[key]).__name__})"
            )
    unknown = set(row) - {f for f in Utterance.__dataclass_fields__}
    if unknown:
        raise CorpusError(f"{where}: unknown field(s) {sorted(unknown)}")
    if row["split"] not in ("train", "dev", "heldout"):
        raise CorpusError(
            f"{where}: split must be 'train', 'dev' or 'heldout', got {row['split']!r}"
        )
    if not row["text"].strip():
        raise CorpusError(f"{where}: empty text")
    if row["num_samples"] <= 0 or not math.isfinite(row["duration_s"]):
        raise CorpusError(f"{where}: audio must be non-empty (num_samples={row['num_samples']})")
    durations = row.get("durations")
    if durations is not None and (
        len(durations) != len(row["phonemes"]) or sum(durations) != row["num_samples"]
    ):
        raise CorpusError(
            f"{where}: durations must give one count per phoneme and sum to num_samples"
        )
    safe_relative_path(row["audio"], where)
    return Utterance(**row)


@dataclass
class Corpus:
    """A prepared corpus on disk: its manifest, opened and checked."""

    root: Path
    utterances: list[Utterance]

    @classmethod
    def open(cls, root: str | Path, *, check_files: bool = True) -> Corpus:
        """Read `root/manifest.jsonl`; with `check_files`, every audio file must exist."""
        root = Path(root)
        utterances = read_manifest(root / MANIFEST_FILE)
        if not utterances:
            raise CorpusError(f"{root / MANIFEST_FILE}: manifest has no utterances")
        orders = [u.order for u in utterances if u.split == "train"]
        if orders != list(range(len(orders))):
            raise CorpusError(
                f"{root / MANIFEST_FILE}: training rows must come first with "
                "order 0, 1, 2, ... (the budget order)"
            )
        if check_files:
            for number, utt in enumerate(utterances, start=1):
                if not (root / utt.audio).is_file():
                    raise CorpusError(
                        f"{root / MANIFEST_FILE}:{number}: audio file {utt.audio!r} is missing"
                    )
        return cls(root, utterances)

    @property
    def train(self) -> list[Utterance]:
        """Training utterances in budget order."""
        return [u for u in self.utterances if u.split == "train"]

    @property
    def heldout(self) -> list[Utterance]:
        return [u for u in self.utterances if u.split == "heldout"]

    @property
    def dev(self) -> list[Utterance]:
        """Voices neither trained on nor evaluated (empty for corpora prepared without)."""
        return [u for u in self.utterances if u.split == "dev"]

    def card(self) -> dict[str, Any]:
        return json.loads((self.root / CARD_FILE).read_text(encoding="utf-8"))

    def audio_path(self, utt: Utterance) -> Path:
        return self.root / utt.audio

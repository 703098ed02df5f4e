"""What a trial trains and validates on: the budget's utterances, as phoneme ids + log-mels.

Held-out roles (shared with evaluation): each held-out speaker's first utterance (by id) is
its *prompt* — the reference audio a cloning model hears — and the others are *targets*. The
validation loss reconstructs targets from their text and the speaker's prompt. During training
the reference is a random crop of a different utterance of the same speaker.

Batches are a pure function of (seed, step): a resumed trial sees exactly the batches an
uninterrupted one would.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.config import TrialConfig
from training.corpus.budgets import select_budget
from training.corpus.features import FeatureStore, load_features
from training.corpus.manifest import Corpus, Utterance
from training.model import PAD, UNK

__all__ = [
    "Batch",
    "Example",
    "TrialData",
    "Vocabulary",
    "batch_indices",
    "collate",
    "heldout_roles",
    "reference_frames",
]


@dataclass(frozen=True)
class Vocabulary:
    """Phoneme symbols; id 0 is padding, 1 is unknown."""

    symbols: tuple[str, ...]

    @classmethod
    def from_corpus(cls, corpus: Corpus) -> Vocabulary:
        inventory = sorted({p for u in corpus.utterances for p in u.phonemes})
        return cls(("<pad>", "<unk>", *inventory))

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.symbols)}

    def encode(self, phonemes: list[str]) -> np.ndarray:
        return np.array([self._index.get(p, UNK) for p in phonemes], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.symbols)


@dataclass
class Example:
    phonemes: np.ndarray
    """int64 [N] phoneme ids."""
    mel: np.ndarray
    """float32 [T, n_mels] log-mel."""
    durations: np.ndarray | None
    """int64 [N] frames per phoneme (corpus timings), or None."""
    speaker: str
    id: str


@dataclass
class Batch:
    phonemes: torch.Tensor
    phoneme_lens: torch.Tensor
    mel: torch.Tensor
    mel_lens: torch.Tensor
    ref_mel: torch.Tensor
    ref_lens: torch.Tensor
    durations: torch.Tensor | None

    def to(self, device: torch.device | str) -> Batch:
        moved = {
            k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()
        }
        return Batch(**moved)


def heldout_roles(heldout: list[Utterance]) -> dict[str, tuple[Utterance, list[Utterance]]]:
    """speaker → (prompt utterance, target utterances), deterministic by utterance id."""
    by_speaker: dict[str, list[Utterance]] = {}
    for utt in sorted(heldout, key=lambda u: u.id):
        by_speaker.setdefault(utt.speaker, []).append(utt)
    return {s: (utts[0], utts[1:]) for s, utts in sorted(by_speaker.items()) if len(utts) > 1}


def reference_frames(prompt_seconds: float, sample_rate: int, hop_length: int) -> int:
    return max(8, round(prompt_seconds * sample_rate / hop_length))


def batch_indices(
    n_examples: int, lengths: np.ndarray, batch_size: int, seed: int, step: int
) -> list[int]:
    """The global batch of optimiser step `step`: length-bucketed, a function of (seed, step).

    Each epoch is a seeded permutation cut into groups of 32 batches; a group is sorted by
    length (so padding is small) and cut into batches, whose order is then shuffled.
    """
    batch_size = min(batch_size, n_examples)
    per_epoch = n_examples // batch_size
    epoch, position = divmod(step, per_epoch)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n_examples)
    group = batch_size * 32
    batches = []
    for start in range(0, per_epoch * batch_size, group):
        chunk = order[start : min(start + group, per_epoch * batch_size)]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    batch_order = rng.permutation(len(batches))
    return batches[batch_order[position]].tolist()


def _pad(arrays: list[np.ndarray], value: float = 0.0) -> torch.Tensor:
    longest = max(a.shape[0] for a in arrays)
    out = np.full((len(arrays), longest, *arrays[0].shape[1:]), value, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0]] = a
    return torch.from_numpy(out)


def collate(examples: list[Example], references: list[np.ndarray]) -> Batch:
    """Pad a list of examples and their reference mels into tensors."""
    has_durations = all(e.durations is not None for e in examples)
    return Batch(
        phonemes=_pad([e.phonemes for e in examples], PAD),
        phoneme_lens=torch.tensor([len(e.phonemes) for e in examples]),
        mel=_pad([e.mel for e in examples]),
        mel_lens=torch.tensor([len(e.mel) for e in examples]),
        ref_mel=_pad(references),
        ref_lens=torch.tensor([len(r) for r in references]),
        durations=_pad([e.durations for e in examples], 0) if has_durations else None,
    )


class TrialData:
    """A trial's training examples (the budget prefix) and its validation set."""

    def __init__(
        self,
        train: list[Example],
        val: list[Example],
        val_refs: list[np.ndarray],
        vocab: Vocabulary,
        n_mels: int,
        ref_frames: int,
        hours: float = 0.0,
        dev: list[Example] | None = None,
        dev_refs: list[np.ndarray] | None = None,
    ) -> None:
        self.train, self.val, self.val_refs = train, val, val_refs
        self.dev, self.dev_refs = dev or [], dev_refs or []
        """Dev voices (neither trained on nor evaluated): what the `converged` protocol stops
        on. Empty when the corpus has no dev split."""
        self.vocab, self.n_mels, self.ref_frames = vocab, n_mels, ref_frames
        self.hours = hours
        """Audio in the training budget (from the manifest's durations)."""
        self.has_durations = all(e.durations is not None for e in train + val + self.dev)
        """Phoneme timings known for every utterance (else the model learns an alignment)."""
        self.lengths = np.array([len(e.mel) for e in train])
        self._by_speaker: dict[str, list[int]] = {}
        for i, e in enumerate(train):
            self._by_speaker.setdefault(e.speaker, []).append(i)

    @classmethod
    def load(
        cls, trial: TrialConfig, corpus_root: str | Path, *, val_per_speaker: int = 8
    ) -> TrialData:
        corpus = Corpus.open(corpus_root, check_files=False)
        store = load_features(corpus, trial.data.features, workers=1, progress=False)
        index = {u.id: i for i, u in enumerate(corpus.utterances)}
        vocab = Vocabulary.from_corpus(corpus)

        def example(u: Utterance) -> Example:
            return _example(u, index[u.id], store, vocab)

        budget = select_budget(corpus.train, trial.data.budget)
        train = [example(u) for u in budget]
        ref_frames = reference_frames(
            trial.eval.prompt_seconds,
            trial.data.features.sample_rate,
            trial.data.features.hop_length,
        )

        def cloned(voices: list[Utterance]) -> tuple[list[Example], list[np.ndarray]]:
            """Each voice's targets, with its prompt's opening as the reference."""
            examples, refs = [], []
            for prompt, targets in heldout_roles(voices).values():
                ref = np.array(store.mel(index[prompt.id])[:ref_frames])
                for u in targets[:val_per_speaker]:
                    examples.append(example(u))
                    refs.append(ref)
            return examples, refs

        val, val_refs = cloned(corpus.heldout)
        dev, dev_refs = cloned(corpus.dev)
        hours = sum(u.duration_s for u in budget) / 3600
        n_mels = trial.data.features.n_mels
        return cls(train, val, val_refs, vocab, n_mels, ref_frames, hours, dev, dev_refs)

    @property
    def train_speakers(self) -> int:
        """Distinct voices in the training budget."""
        return len(self._by_speaker)

    def reference_for(self, i: int, rng: np.random.Generator) -> np.ndarray:
        """A random crop of another utterance by the same speaker as training example `i`."""
        same = self._by_speaker[self.train[i].speaker]
        others = [j for j in same if j != i] or same
        mel = self.train[others[rng.integers(len(others))]].mel
        if len(mel) <= self.ref_frames:
            return mel
        start = rng.integers(len(mel) - self.ref_frames + 1)
        return mel[start : start + self.ref_frames]

    def mean_mel(self) -> np.ndarray:
        """Per-channel mean log-mel over the training frames (float32, [n_mels])."""
        total = np.zeros(self.n_mels, np.float64)
        frames = 0
        for example in self.train:
            total += np.asarray(example.mel, np.float64).sum(0)
            frames += len(example.mel)
        return (total / max(frames, 1)).astype(np.float32)

    def frames_per_phoneme(self) -> float:
        """Mean frames per phoneme over the training utterances (no timings needed)."""
        frames = sum(len(e.mel) for e in self.train)
        return frames / max(sum(len(e.phonemes) for e in self.train), 1)

    def train_batch(self, indices: list[int], seed: int, step: int) -> Batch:
        rng = np.random.default_rng([seed, step, 1])
        return collate(
            [self.train[i] for i in indices], [self.reference_for(i, rng) for i in indices]
        )

    def val_batches(
        self, batch_size: int, shard: int = 0, shards: int = 1, *, split: str = "heldout"
    ) -> list[Batch]:
        """Validation in fixed batches; `shard` of `shards` for data-parallel evaluation.
        `split`: "heldout" (the evaluated voices) or "dev"."""
        examples, refs = (self.dev, self.dev_refs) if split == "dev" else (self.val, self.val_refs)
        mine = list(range(shard, len(examples), shards))
        return [
            collate(
                [examples[i] for i in mine[s : s + batch_size]],
                [refs[i] for i in mine[s : s + batch_size]],
            )
            for s in range(0, len(mine), batch_size)
        ]


def _example(u: Utterance, i: int, store: FeatureStore, vocab: Vocabulary) -> Example:
    durations = store.frame_durations(i)
    return Example(
        phonemes=vocab.encode(u.phonemes),
        mel=np.array(store.mel(i)),  # materialise: memmap slices re-read on every access
        durations=None if durations is None else durations.astype(np.int64),
        speaker=u.speaker,
        id=u.id,
    )

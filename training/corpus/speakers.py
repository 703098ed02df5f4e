"""The speaker roster of the synthetic corpus: eSpeak voices that a speaker encoder tells apart
and an ASR model understands.

Identity comes mainly from the eSpeak *variant*; pitch moves a speaker-embedding only in large
steps, so a variant contributes a second speaker only at a pitch far from the first. Accent,
range and rate add within-speaker variety. The roster below was measured (see `ROSTER_NOTES`),
not guessed: unvoiced and hard-to-recognise variants are left out, and voices too close to
another voice for the speaker encoder are not kept.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from training.corpus.espeak import Voice

__all__ = ["ROSTER", "ROSTER_NOTES", "RosterVoice", "split_roster", "voice_family"]


@dataclass(frozen=True)
class RosterVoice:
    """A roster speaker: a base eSpeak voice and a stable id."""

    variant: str
    pitch: int
    range: int = 50
    rate: int = 165
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


ROSTER_NOTES = """Measured 2026-11-24 (resemblyzer embeddings, pocketsphinx-JSGF WER, 2 cores):
all 104 eSpeak variants at pitch 50, survivors (WER <= 0.3) also at pitch 25 and 75: 270
candidate voices. Dropped: 18 variants whose WER exceeded 0.3 (Alicia, zac, kaukovalta, ian,
shelby, Lee, travis, boris, Andy, Andrea, Tweaky, marcelo, AnxiousAndy, RicishayMax, Mario,
iven3, david, rob) and the unvoiced ones (whisper, whisperf, caleb). A greedy pick kept voices
whose centroid cosine to every other kept voice is <= 0.85, then voices with WER > 0.15 were
removed: 67 voices from 55 variants. On fresh sentences the pair-verification EER among them
is ~0.75 % and closed-set identification 100 %; mean WER 0.02. Accents (en-gb-x-rp, en) keep
WER low but do not make new voices to the encoder, so the roster is en-us only. The comment
on each voice: cosine to its nearest neighbour in the roster, and its WER."""

# Most distinct first.
ROSTER: tuple[RosterVoice, ...] = (
    RosterVoice("sandro", 75),  # nearest 0.755, WER 0.00
    RosterVoice("klatt", 75),  # nearest 0.762, WER 0.00
    RosterVoice("Demonic", 75),  # nearest 0.765, WER 0.03
    RosterVoice("Jacky", 75),  # nearest 0.767, WER 0.07
    RosterVoice("antonio", 25),  # nearest 0.779, WER 0.08
    RosterVoice("Storm", 25),  # nearest 0.782, WER 0.02
    RosterVoice("grandma", 25),  # nearest 0.793, WER 0.01
    RosterVoice("f4", 25),  # nearest 0.795, WER 0.00
    RosterVoice("iven4", 75),  # nearest 0.798, WER 0.01
    RosterVoice("UniRobot", 75),  # nearest 0.801, WER 0.03
    RosterVoice("steph3", 50),  # nearest 0.809, WER 0.01
    RosterVoice("klatt3", 75),  # nearest 0.814, WER 0.02
    RosterVoice("robosoft8", 75),  # nearest 0.814, WER 0.00
    RosterVoice("iven", 75),  # nearest 0.815, WER 0.00
    RosterVoice("steph", 25),  # nearest 0.818, WER 0.00
    RosterVoice("Hugo", 50),  # nearest 0.819, WER 0.00
    RosterVoice("anika", 75),  # nearest 0.819, WER 0.00
    RosterVoice("anikaRobot", 25),  # nearest 0.820, WER 0.01
    RosterVoice("anikaRobot", 50),  # nearest 0.820, WER 0.00
    RosterVoice("quincy", 75),  # nearest 0.821, WER 0.10
    RosterVoice("Nguyen", 75),  # nearest 0.822, WER 0.00
    RosterVoice("pablo", 25),  # nearest 0.823, WER 0.01
    RosterVoice("pablo", 75),  # nearest 0.823, WER 0.02
    RosterVoice("belinda", 50),  # nearest 0.823, WER 0.03
    RosterVoice("ed", 75),  # nearest 0.827, WER 0.02
    RosterVoice("pedro", 50),  # nearest 0.828, WER 0.01
    RosterVoice("edward", 75),  # nearest 0.834, WER 0.00
    RosterVoice("robosoft", 75),  # nearest 0.835, WER 0.01
    RosterVoice("robosoft", 25),  # nearest 0.835, WER 0.01
    RosterVoice("steph3", 75),  # nearest 0.836, WER 0.02
    RosterVoice("steph", 75),  # nearest 0.836, WER 0.00
    RosterVoice("Reed", 25),  # nearest 0.837, WER 0.00
    RosterVoice("f1", 50),  # nearest 0.838, WER 0.00
    RosterVoice("f2", 75),  # nearest 0.838, WER 0.00
    RosterVoice("robosoft6", 75),  # nearest 0.839, WER 0.00
    RosterVoice("robosoft6", 50),  # nearest 0.839, WER 0.00
    RosterVoice("m2", 75),  # nearest 0.839, WER 0.01
    RosterVoice("Alex", 75),  # nearest 0.840, WER 0.01
    RosterVoice("john", 75),  # nearest 0.840, WER 0.00
    RosterVoice("robosoft3", 50),  # nearest 0.840, WER 0.00
    RosterVoice("robosoft7", 75),  # nearest 0.842, WER 0.01
    RosterVoice("paul", 75),  # nearest 0.842, WER 0.00
    RosterVoice("robosoft3", 75),  # nearest 0.842, WER 0.01
    RosterVoice("RicishayMax3", 75),  # nearest 0.842, WER 0.02
    RosterVoice("m5", 50),  # nearest 0.843, WER 0.01
    RosterVoice("Gene2", 75),  # nearest 0.844, WER 0.08
    RosterVoice("Michael", 50),  # nearest 0.844, WER 0.10
    RosterVoice("gustave", 75),  # nearest 0.844, WER 0.11
    RosterVoice("Mike", 50),  # nearest 0.845, WER 0.00
    RosterVoice("mike2", 75),  # nearest 0.846, WER 0.00
    RosterVoice("adam", 75),  # nearest 0.846, WER 0.00
    RosterVoice("m1", 25),  # nearest 0.846, WER 0.01
    RosterVoice("m3", 75),  # nearest 0.846, WER 0.00
    RosterVoice("robosoft8", 50),  # nearest 0.846, WER 0.00
    RosterVoice("robosoft8", 25),  # nearest 0.846, WER 0.00
    RosterVoice("m7", 25),  # nearest 0.846, WER 0.01
    RosterVoice("Henrique", 25),  # nearest 0.847, WER 0.01
    RosterVoice("miguel", 75),  # nearest 0.847, WER 0.00
    RosterVoice("robosoft4", 75),  # nearest 0.849, WER 0.00
    RosterVoice("robosoft5", 50),  # nearest 0.849, WER 0.00
    RosterVoice("m8", 25),  # nearest 0.849, WER 0.01
    RosterVoice("linda", 25),  # nearest 0.849, WER 0.01
    RosterVoice("f3", 50),  # nearest 0.849, WER 0.09
    RosterVoice("klatt4", 50),  # nearest 0.850, WER 0.00
    RosterVoice("klatt3", 25),  # nearest 0.850, WER 0.00
    RosterVoice("Denis", 50),  # nearest 0.850, WER 0.00
    RosterVoice("victor", 75),  # nearest 0.850, WER 0.01
)


_FAMILY_ALIASES = {"anikarobot": "anika"}
"""Variants whose name does not end in a number but that derive from another variant."""


def voice_family(variant: str) -> str:
    """The eSpeak variant family: `robosoft8` and `robosoft` are one family (one voice file,
    edited), as are `m1`…`m8`, `iven`/`iven4`, `anika`/`anikaRobot`."""
    name = re.sub(r"\d+$", "", variant.lower())
    return _FAMILY_ALIASES.get(name, name)


def split_roster(
    roster: tuple[RosterVoice, ...], n_train: int, n_heldout: int, seed: int, n_dev: int = 0
) -> tuple[list[RosterVoice], list[RosterVoice], list[RosterVoice]]:
    """Choose training, held-out and dev voices; no two of the sets share a variant family.

    Voices of one family are siblings (one voice file, edited: same timbre, other pitch or
    formants), so a held-out voice whose sibling trained would not be a new speaker. Held-out
    and dev voices come one per family from the families that have a single voice in the
    roster (shuffled by `seed`): a family with several voices on the held-out side would
    take them all away from training. Everything else trains (in roster order, most distinct
    first).
    """
    by_family: dict[str, list[RosterVoice]] = {}
    for v in roster:
        by_family.setdefault(voice_family(v.variant), []).append(v)
    singles = sorted(f for f, voices in by_family.items() if len(voices) == 1)
    random.Random(seed).shuffle(singles)
    heldout = [by_family[f][0] for f in singles[:n_heldout]]
    dev = [by_family[f][0] for f in singles[n_heldout : n_heldout + n_dev]]
    taken = {v.id for v in heldout + dev}
    train = [v for v in roster if v.id not in taken]
    if len(heldout) < n_heldout or len(dev) < n_dev or len(train) < n_train:
        raise ValueError(
            f"the roster has {len(roster)} voices in {len(by_family)} variant families "
            f"({len(singles)} with one voice): not enough for {n_train} training, {n_heldout} "
            f"held-out and {n_dev} dev speakers with disjoint families"
        )
    return train[:n_train], heldout, dev

"""The sentence grammar of the synthetic corpus: our own templates over common English words.

One grammar serves three purposes: it generates the corpus sentences, it guarantees held-out
sentences are new (the space is ~10^8 sentences, and held-out ones are drawn first and excluded
from training), and it emits a JSGF grammar of the same language for the ASR judge. Every word is
in pocketsphinx's en-us dictionary (a test checks).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ["SLOTS", "TEMPLATES", "SentenceGrammar", "display_text"]

SLOTS: dict[str, tuple[str, ...]] = {
    "name": (
        "john",
        "mary",
        "peter",
        "susan",
        "david",
        "anna",
        "paul",
        "linda",
        "mark",
        "helen",
        "tom",
        "sarah",
        "james",
        "laura",
        "robert",
        "emma",
        "frank",
        "alice",
        "george",
        "lucy",
    ),
    "adj": (
        "small",
        "big",
        "old",
        "young",
        "red",
        "green",
        "blue",
        "white",
        "black",
        "happy",
        "quiet",
        "cold",
        "warm",
        "dark",
        "bright",
        "heavy",
        "long",
        "short",
        "new",
        "clean",
        "soft",
        "strong",
        "tall",
        "busy",
        "empty",
        "simple",
        "strange",
        "gentle",
        "round",
        "wooden",
    ),
    "noun": (
        "man",
        "woman",
        "child",
        "dog",
        "cat",
        "horse",
        "bird",
        "house",
        "car",
        "boat",
        "table",
        "chair",
        "window",
        "door",
        "garden",
        "river",
        "road",
        "book",
        "letter",
        "box",
        "bottle",
        "cup",
        "apple",
        "coat",
        "hat",
        "key",
        "lamp",
        "clock",
        "picture",
        "train",
        "ship",
        "tree",
        "flower",
        "stone",
        "bridge",
        "basket",
        "bag",
        "shirt",
        "boy",
        "girl",
    ),
    "plural": (
        "dogs",
        "cats",
        "horses",
        "birds",
        "houses",
        "boats",
        "tables",
        "chairs",
        "windows",
        "books",
        "letters",
        "boxes",
        "bottles",
        "cups",
        "apples",
        "coats",
        "hats",
        "keys",
        "lamps",
        "clocks",
        "pictures",
        "trees",
        "flowers",
        "stones",
        "baskets",
        "shirts",
    ),
    "verb": (
        "found",
        "saw",
        "moved",
        "painted",
        "carried",
        "cleaned",
        "opened",
        "closed",
        "bought",
        "sold",
        "watched",
        "followed",
        "took",
        "left",
        "brought",
        "pushed",
        "pulled",
        "dropped",
        "washed",
        "kept",
        "held",
        "built",
        "fixed",
        "liked",
        "wanted",
        "needed",
        "showed",
        "counted",
        "touched",
        "noticed",
    ),
    "intransitive": (
        "waited",
        "stayed",
        "smiled",
        "laughed",
        "arrived",
        "slept",
        "walked",
        "returned",
        "worked",
        "sang",
        "listened",
        "rested",
        "danced",
        "stopped",
        "played",
    ),
    "adverb": (
        "quickly",
        "slowly",
        "quietly",
        "carefully",
        "suddenly",
        "gently",
        "often",
        "happily",
        "early",
        "again",
    ),
    "prep": (
        "near",
        "behind",
        "under",
        "beside",
        "inside",
        "across",
        "outside",
        "above",
        "below",
        "past",
    ),
    "place": (
        "station",
        "market",
        "church",
        "harbor",
        "forest",
        "office",
        "hospital",
        "library",
        "factory",
        "village",
        "kitchen",
        "park",
        "museum",
        "hotel",
        "school",
        "farm",
        "city",
        "river",
        "bridge",
        "garden",
    ),
    "time": (
        "today",
        "yesterday",
        "tonight",
        "this morning",
        "last night",
        "every day",
        "on monday",
        "on friday",
        "after lunch",
        "before dinner",
        "in the evening",
        "at noon",
    ),
    "number": (
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "twelve",
        "twenty",
    ),
}

# Each template is a sequence of literal words and <slot> references; 6-10 spoken words.
TEMPLATES: tuple[str, ...] = (
    "the <adj> <noun> <verb> the <noun> <prep> the <place>",
    "<name> <verb> a <adj> <noun> <time>",
    "the <noun> <intransitive> <adverb> <prep> the <place>",
    "<name> and <name> <verb> <number> <adj> <plural>",
    "we <verb> the <adj> <noun> <prep> the <place> <time>",
    "my <noun> is very <adj> and <adj>",
    "<name> <intransitive> <prep> the <adj> <place> <time>",
    "they <verb> <number> <plural> <prep> the <noun>",
    "a <adj> <noun> <intransitive> <adverb> <time>",
    "<name> <adverb> <verb> the <adj> <plural> <prep> the <place>",
)


class SentenceGrammar:
    """Random sentences from `TEMPLATES`, and the same language as a JSGF grammar."""

    def __init__(
        self, templates: tuple[str, ...] = TEMPLATES, slots: dict[str, tuple[str, ...]] = SLOTS
    ) -> None:
        self.templates = [t.split() for t in templates]
        self.slots = slots
        for template in self.templates:
            for token in template:
                if token.startswith("<") and token[1:-1] not in slots:
                    raise ValueError(f"template uses unknown slot {token}")

    def vocabulary(self) -> set[str]:
        """Every word a sentence can contain."""
        words = {t for template in self.templates for t in template if not t.startswith("<")}
        for values in self.slots.values():
            for phrase in values:
                words.update(phrase.split())
        return words

    def sample(self, rng: random.Random) -> str:
        """One sentence, lower-case, without punctuation."""
        template = self.templates[rng.randrange(len(self.templates))]
        words = []
        for token in template:
            if token.startswith("<"):
                options = self.slots[token[1:-1]]
                words.append(options[rng.randrange(len(options))])
            else:
                words.append(token)
        return " ".join(words)

    def distinct_sentences(
        self, count: int, rng: random.Random, exclude: set[str] = frozenset()
    ) -> list[str]:
        """`count` different sentences, none of them in `exclude`, in a reproducible order."""
        seen = set(exclude)
        out: list[str] = []
        for sentence in self._stream(rng):
            if sentence not in seen:
                seen.add(sentence)
                out.append(sentence)
                if len(out) == count:
                    return out
        raise AssertionError("unreachable")  # the stream is infinite

    def _stream(self, rng: random.Random) -> Iterator[str]:
        while True:
            yield self.sample(rng)

    def to_jsgf(self, name: str = "voicescale") -> str:
        """A JSGF grammar accepting exactly the sentences this grammar generates."""
        lines = ["#JSGF V1.0;", f"grammar {name};", ""]
        for slot, values in self.slots.items():
            lines.append(f"<{slot}> = {' | '.join(values)};")
        lines.append("")
        for i, template in enumerate(self.templates):
            lines.append(f"<t{i}> = {' '.join(template)};")
        alternatives = " | ".join(f"<t{i}>" for i in range(len(self.templates)))
        lines.append(f"public <sentence> = {alternatives};")
        return "\n".join(lines) + "\n"


def display_text(sentence: str) -> str:
    """Written form used in the manifest: capitalised names and first word, a full stop."""
    names = set(SLOTS["name"])
    words = [w.capitalize() if w in names else w for w in sentence.split()]
    text = " ".join(words)
    return text[:1].upper() + text[1:] + "."

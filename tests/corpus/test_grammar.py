"""The sentence grammar: dictionary coverage, JSGF equivalence, held-out exclusion."""

from __future__ import annotations

import random
from pathlib import Path

import pocketsphinx

from training.corpus.grammar import SentenceGrammar, display_text


def cmudict_words() -> set[str]:
    path = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    return {line.split()[0] for line in path.read_text().splitlines() if line.strip()}


def test_every_word_is_in_the_pocketsphinx_dictionary():
    missing = SentenceGrammar().vocabulary() - cmudict_words()
    assert not missing, f"words the ASR judge cannot recognise: {sorted(missing)}"


def test_jsgf_accepts_generated_sentences_and_rejects_others(tmp_path):
    grammar = SentenceGrammar()
    path = tmp_path / "g.jsgf"
    path.write_text(grammar.to_jsgf())
    jsgf = pocketsphinx.Jsgf(str(path))
    fsg = jsgf.build_fsg(jsgf.get_rule("voicescale.sentence"), pocketsphinx.LogMath(), 7.5)
    rng = random.Random(3)
    for _ in range(200):
        assert fsg.accept(grammar.sample(rng))
    assert not fsg.accept("the the the")
    assert not fsg.accept("colorless green ideas sleep furiously")


def test_distinct_sentences_exclude_and_are_reproducible():
    grammar = SentenceGrammar()
    heldout = grammar.distinct_sentences(100, random.Random(0))
    train = grammar.distinct_sentences(2000, random.Random(1), exclude=set(heldout))
    assert len(set(train)) == 2000 and not set(train) & set(heldout)
    assert grammar.distinct_sentences(100, random.Random(0)) == heldout


def test_display_text_is_capitalised_with_a_full_stop():
    assert display_text("john saw the dog") == "John saw the dog."
    assert display_text("the cat and mary") == "The cat and Mary."

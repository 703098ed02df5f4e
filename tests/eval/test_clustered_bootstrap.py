"""Speaker-clustered bootstrap intervals: utterances of one voice are not independent draws,
so SIM/WER/val_loss intervals resample voices first, then utterances within them. Pure
numpy, no models."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from eval.evaluate_checkpoint import _aggregate, _failed
from training.bootstrap import (
    ClusteredResamples,
    bootstrap_ci,
    clustered_bootstrap_ci,
    clustered_resamples,
)


def width(interval: tuple[float, float]) -> float:
    return interval[1] - interval[0]


def voices(means: list[float], per_voice: int, spread: float, seed: int = 0):
    """(speaker of each utterance, its value): voices centred on `means`, utterances of a
    voice within `spread` of each other."""
    rng = np.random.default_rng(seed)
    speakers = [f"v{k}" for k, _ in enumerate(means) for _ in range(per_voice)]
    values = np.repeat(means, per_voice) + rng.normal(0, spread, len(speakers))
    return speakers, values


def record(speaker: str, sim: float, errors: int = 0, words: int = 5, **extra) -> dict:
    return {"speaker": speaker, "sim": sim, "errors": errors, "words": words, **extra}


def test_voices_that_differ_widen_the_interval_beyond_the_utterance_bootstrap() -> None:
    """4 voices × 6 sentences, voices far apart, a voice's sentences alike: 24 utterances
    carry about 4 voices' worth of evidence, and the interval must say so."""
    speakers, sims = voices([0.2, 0.4, 0.6, 0.8], per_voice=6, spread=0.01)
    records = [record(s, v) for s, v in zip(speakers, sims, strict=True)]
    clustered = _aggregate(records, 1000)["sim_ci"]
    independent = bootstrap_ci(len(sims), lambda i: sims[i].mean(), 1000)
    assert width(clustered) > 1.8 * width(independent), (clustered, independent)
    assert clustered[0] < sims.mean() < clustered[1]


def test_voices_that_agree_widen_it_by_at_most_about_root_two() -> None:
    """When voices do not differ, the two-stage bootstrap counts the within-voice spread at
    both stages (Davison & Hinkley 1997, §3.8): conservative, up to ~√2 wider than the
    utterance bootstrap — far less than the widening above, which comes from the voices."""
    speakers, sims = voices([0.5] * 40, per_voice=5, spread=0.1)
    clustered = clustered_bootstrap_ci(speakers, sims, np.ones_like(sims), 2000)
    independent = bootstrap_ci(len(sims), lambda i: sims[i].mean(), 2000)
    assert 1.0 < width(clustered) / width(independent) < 1.6, (clustered, independent)


def test_pooled_wer_widens_too_when_one_voice_is_hard() -> None:
    """WER pooled over words: one voice the recogniser cannot follow dominates the errors."""
    records = [record(f"v{k}", 0.5, errors=4 if k == 0 else 0, words=5) for k in range(4)]
    records = [dict(r) for r in records for _ in range(5)]
    errors = np.array([r["errors"] for r in records], float)
    words = np.array([r["words"] for r in records], float)
    clustered = _aggregate(records, 1000)["wer_ci"]
    independent = bootstrap_ci(len(errors), lambda i: errors[i].sum() / words[i].sum(), 1000)
    assert width(clustered) > 1.5 * width(independent), (clustered, independent)


def test_intervals_are_reproducible() -> None:
    speakers, sims = voices([0.3, 0.5, 0.7], per_voice=4, spread=0.05)
    records = [
        record(s, v, errors=i % 3, words=6, l1_sum=float(v) * 100, l1_cells=100)
        for i, (s, v) in enumerate(zip(speakers, sims, strict=True))
    ]
    assert _aggregate(records, 500) == _aggregate(records, 500)
    ones = np.ones_like(sims)
    first = clustered_bootstrap_ci(speakers, sims, ones, 500, seed=3)
    assert clustered_bootstrap_ci(speakers, sims, ones, 500, seed=3) == first
    assert clustered_bootstrap_ci(speakers, sims, ones, 500, seed=4) != first, "seed unused"


def test_one_speaker_is_the_utterance_bootstrap() -> None:
    """With a single voice the first stage always draws it: what remains is resampling its
    utterances, i.e. the plain bootstrap (other random draws, the same distribution)."""
    _, sims = voices([0.5], per_voice=40, spread=0.1)
    clustered = clustered_bootstrap_ci(["v"] * 40, sims, np.ones_like(sims), 4000)
    independent = bootstrap_ci(len(sims), lambda i: sims[i].mean(), 4000)
    assert width(clustered) == pytest.approx(width(independent), rel=0.1)
    assert clustered == pytest.approx(independent, abs=0.1 * width(independent))


def test_each_replicate_draws_voices_then_their_utterances() -> None:
    """Every replicate holds as many voices as there are (with repeats), each with exactly
    its own number of utterances, all drawn from that voice; sizes may differ."""
    speakers = ["b", "a", "b", "c", "a", "a"]
    replicates = clustered_resamples(speakers, 200, seed=1)
    sizes = {s: speakers.count(s) for s in speakers}
    assert replicates.indices.shape == (200, 3, 3)
    for indices, valid in zip(replicates.indices, replicates.valid, strict=True):
        for slots, used in zip(indices, valid, strict=True):
            drawn = {speakers[i] for i in slots[used]}
            assert len(drawn) == 1, drawn
            assert used.sum() == sizes[drawn.pop()]
    drawn_voices = {speakers[i] for i in replicates.indices[:, :, 0].ravel()}
    assert drawn_voices == {"a", "b", "c"}


def test_pooled_wer_of_a_hand_made_replicate() -> None:
    """Σ errors / Σ words over the drawn utterances, repeats counted: not a mean of
    per-utterance WERs."""
    records = [record("a", 0.9, 1, 10), record("a", 0.8, 0, 5), record("b", 0.1, 3, 5)]
    assert _aggregate(records, 10)["wer"] == pytest.approx(4 / 20)  # mean of WERs: 0.233
    errors, words = np.array([1.0, 0.0, 3.0]), np.array([10.0, 5.0, 5.0])
    replicates = ClusteredResamples(
        indices=np.array([[[0, 1], [2, 2]], [[2, 2], [2, 2]], [[0, 0], [1, 0]]]),
        valid=np.array([[[1, 1], [1, 0]], [[1, 0], [1, 0]], [[1, 1], [1, 1]]], dtype=bool),
    )
    ratios = replicates.ratios(errors, words)
    np.testing.assert_allclose(ratios, [4 / 20, 6 / 10, 3 / 35])


def test_vectorised_replicates_match_a_plain_loop() -> None:
    speakers, sims = voices([0.3, 0.6, 0.9], per_voice=5, spread=0.05)
    errors = np.arange(len(sims)) % 4.0
    words = 3.0 + np.arange(len(sims)) % 5
    replicates = clustered_resamples(speakers, 50, seed=7)
    looped = [
        errors[idx[ok]].sum() / words[idx[ok]].sum()
        for idx, ok in zip(replicates.indices, replicates.valid, strict=True)
    ]
    np.testing.assert_allclose(replicates.ratios(errors, words), looped)


def test_failed_utterances_and_an_infinite_loss_are_scored_as_before() -> None:
    """A failed utterance scores SIM 0 and WER 1 inside the bootstrap too; an utterance
    with no finite L1 makes val_loss infinite without crashing the intervals."""
    item = SimpleNamespace(target=SimpleNamespace(text="the cat sat down"))
    records = [record(f"v{k}", 0.8, 0, 4, l1_sum=10.0, l1_cells=10) for k in range(3)] * 2
    failed = {"speaker": "v0", **_failed(item, "empty audio"), "l1_sum": None, "l1_cells": 10}
    out = _aggregate([*records, failed], 200)
    assert out["sim"] == pytest.approx(0.8 * 6 / 7) and out["wer"] == pytest.approx(4 / 28)
    assert out["sim_ci"][0] < out["sim"] < out["sim_ci"][1]
    assert out["val_loss"] == math.inf
    low, high = out["val_loss_ci"]
    assert low == pytest.approx(1.0) and not math.isfinite(high)


def test_no_utterances_give_no_interval() -> None:
    assert all(math.isnan(v) for v in clustered_bootstrap_ci([], [], [], 100))


def test_a_checkpoint_s_intervals_cost_milliseconds() -> None:
    """200 utterances from 8 voices, 1000 replicates, three statistics: vectorised."""
    import time

    speakers, sims = voices([0.2 * k for k in range(8)], per_voice=25, spread=0.05)
    records = [
        record(s, v, errors=1, words=7, l1_sum=float(v), l1_cells=10)
        for s, v in zip(speakers, sims, strict=True)
    ]
    started = time.perf_counter()
    _aggregate(records, 1000)
    assert time.perf_counter() - started < 0.5  # ~10 ms; generous for a loaded machine


def test_a_quality_score_heard_on_some_utterances_is_averaged_over_those() -> None:
    """`eval.quality_per_speaker`: DNSMOS on the first utterance(s) of each voice only; the
    others carry no score and neither the mean nor the interval counts them."""
    records = [
        record(f"v{v}", 0.5, dnsmos=2.0 + v) if u == 0 else record(f"v{v}", 0.5)
        for v in range(4)
        for u in range(3)
    ]
    out = _aggregate(records, 500)
    assert out["dnsmos"] == pytest.approx(3.5)  # (2 + 3 + 4 + 5) / 4, not diluted by the rest
    lo, hi = out["dnsmos_ci"]
    assert 2.0 <= lo < 3.5 < hi <= 5.0
    assert "utmos" not in out and "utmos_ci" not in out

"""Evaluating checkpoints: a trained model beats an untrained one beyond the CIs, broken audio
is counted (never a crash), and the outputs are complete."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from eval.evaluate_checkpoint import check_generated_audio, evaluate_checkpoint
from tests.eval.conftest import EVAL_CFG as CFG

pytestmark = pytest.mark.slow


def test_trained_beats_untrained_with_non_overlapping_intervals(
    trained_export, untrained_export, smoke_corpus, judges, tmp_path
):
    trained = evaluate_checkpoint(
        trained_export, smoke_corpus, tmp_path / "t", cfg=CFG, judges=judges
    )
    untrained = evaluate_checkpoint(
        untrained_export, smoke_corpus, tmp_path / "u", cfg=CFG, judges=judges
    )
    # SIM on 4 held-out voices: the speaker-clustered intervals (voices, then utterances) are
    # wide enough to overlap (measured: trained [0.405, 0.518], untrained [0.146, 0.443]), so
    # SIM is compared on its point; WER and the loss must separate beyond their intervals.
    assert trained.sim > untrained.sim, (trained.sim_ci, untrained.sim_ci)
    assert trained.wer_ci[1] < untrained.wer_ci[0], (trained.wer_ci, untrained.wer_ci)
    assert trained.val_loss_ci[1] < untrained.val_loss_ci[0]
    # The same judges on real audio are far better: ceilings bound what models can reach.
    ceilings = trained.ceilings
    assert ceilings["ground_truth_sim"] > trained.sim
    assert ceilings["ground_truth_wer"] < trained.wer
    assert ceilings["vocoded_ground_truth_wer"] <= 0.3


def test_outputs_per_utterance_records_and_samples(trained_export, smoke_corpus, judges, tmp_path):
    metrics = evaluate_checkpoint(trained_export, smoke_corpus, tmp_path, cfg=CFG, judges=judges)
    rows = [json.loads(line) for line in (tmp_path / "per_utterance.jsonl").open()]
    assert len(rows) == metrics.utterances == 4 * 4  # 4 held-out voices × 4 sentences
    assert {"text", "transcript", "wer", "sim", "l1_sum", "generated_seconds"} <= set(rows[0])
    assert all(r["prompt"] != r["id"] for r in rows)
    assert len(list((tmp_path / "samples").glob("*.wav"))) == 2
    assert json.loads((tmp_path / "metrics.json").read_text())["wer"] == metrics.wer


def test_a_checkpoint_producing_nan_is_scored_worst_and_counted(
    trained_export, smoke_corpus, judges, tmp_path
):
    broken = tmp_path / "broken"
    broken.mkdir()
    weights = load_file(str(trained_export / "model.safetensors"))
    weights["to_mel.bias"] = weights["to_mel.bias"] * float("nan")
    save_file(weights, str(broken / "model.safetensors"))
    (broken / "model_config.json").write_text((trained_export / "model_config.json").read_text())
    metrics = evaluate_checkpoint(broken, smoke_corpus, tmp_path / "out", cfg=CFG, judges=judges)
    assert metrics.failed_utterances == metrics.utterances
    assert metrics.wer == 1.0 and metrics.sim == 0.0
    rows = [json.loads(line) for line in (tmp_path / "out" / "per_utterance.jsonl").open()]
    assert all(r["failed"] == "NaN or infinite mel" for r in rows)
    assert metrics.failure_reasons == {"NaN or infinite mel": metrics.utterances}


@pytest.mark.parametrize(
    ("wave", "problem"),
    [
        (np.zeros(0, np.float32), "empty audio"),
        (np.zeros(16000, np.float32), "silent audio"),
        (np.full(16000, np.nan, np.float32), "NaN or infinite samples"),
        (np.ones(16000 * 40, np.float32) * 0.1, "absurdly long audio"),
    ],
)
def test_unusable_audio_is_recognised(wave, problem):
    assert check_generated_audio(wave, 16000, reference_seconds=2.0).startswith(problem)
    assert check_generated_audio(np.random.default_rng(0).normal(0, 0.1, 32000), 16000, 2.0) is None

"""Long-lived judges: a node's judge actor loads the held-out set once and judges export after
export with the same verdicts as judging in the trial's own process."""

from __future__ import annotations

import pytest

from cluster.judge_service import _leased_slot, judge_on_service, remove_judges
from eval.evaluate_checkpoint import evaluate_checkpoint
from eval.result import EvalResult
from training.baseline import train_baseline
from training.config import CorpusRef, DataBudget, DataConfig, EvalConfig, TrialConfig

pytestmark = pytest.mark.slow

JUDGE = EvalConfig(sentences_per_speaker=1, bootstrap=50, audio_samples=1)


@pytest.fixture(scope="module")
def baseline_export(smoke_corpus, tmp_path_factory):
    trial = TrialConfig(
        kind="baseline",
        data=DataConfig(
            corpus=CorpusRef(synthetic=None, path=str(smoke_corpus)),
            budget=DataBudget(utterances=64),
        ),
    )
    export = tmp_path_factory.mktemp("baseline") / "export"
    assert train_baseline(trial, smoke_corpus, export)["status"] == "done"
    return export


def test_the_judge_actor_is_reused_and_agrees_with_judging_in_process(
    ray_local, smoke_corpus, baseline_export, tmp_path
):
    import ray

    here = evaluate_checkpoint(baseline_export, smoke_corpus, tmp_path / "here", cfg=JUDGE)
    service = "test-judges"
    try:
        first = judge_on_service(
            service, baseline_export, str(smoke_corpus), str(tmp_path / "a"), JUDGE, 1
        )
        second = judge_on_service(
            service, baseline_export, str(smoke_corpus), str(tmp_path / "b"), JUDGE, 1
        )
        assert isinstance(first, EvalResult) and isinstance(second, EvalResult), (first, second)
        actor = ray.get_actor(f"judges/{service}/{ray.get_runtime_context().get_node_id()}/0",
                              namespace="voicescale")  # fmt: skip
        stats = ray.get(actor.stats.remote())
        assert stats["evaluations"] == 2 and stats["builds"] == 1, stats
        for result in (first, second):  # the same judges, the same verdict
            assert (result.wer, result.failed_utterances) == (here.wer, here.failed_utterances)
            # Up to float rounding: the actor runs the judges on 1 thread, this process on 2.
            assert result.sim == pytest.approx(here.sim, rel=1e-6)
            assert result.val_loss == pytest.approx(here.val_loss, rel=1e-6)
        # Loading paid once: by the first verdict, inside its eval_seconds.
        assert first.reference_seconds > second.reference_seconds
        assert first.eval_seconds >= first.reference_seconds > 0
        assert (tmp_path / "b" / "per_utterance.jsonl").exists()
    finally:
        removed = remove_judges(service)
    assert removed == 1
    assert remove_judges(service) == 0


def test_a_slot_held_by_one_evaluation_is_not_handed_to_another(tmp_path):
    with _leased_slot("lease", "node0") as first, _leased_slot("lease", "node0") as second:
        assert (first, second) == (0, 1)
    with _leased_slot("lease", "node0") as again:
        assert again == 0  # released at the end of the block

"""Sweep planning, results.jsonl bookkeeping and the promotion rule (no Ray, no MLflow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster.sweep_runner import max_concurrency
from scaling.promote import decide, eligible_rows
from scaling.sweep import plan_sweep
from store.outcome import OutcomeError, TrialOutcome, read_outcome, write_outcome
from store.paths import SweepPaths
from store.records import ResultRow
from store.results_file import ResultsError, load_results, record_result
from training.config import (
    ConfigError,
    ResourcesConfig,
    SweepConfig,
    config_hash,
    load_config,
    replace,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def smoke() -> SweepConfig:
    return load_config(SweepConfig, REPO / "configs" / "sweeps" / "smoke.yaml")


def row(trial, status: str = "done", **extra) -> ResultRow:
    extra.setdefault("config_hash", config_hash(trial))
    return ResultRow(trial=trial.name, status=status, **extra)


def test_record_result_appends_then_replaces_a_retried_trial(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    record_result(path, ResultRow(trial="a", status="failed", val_loss=float("nan")))
    record_result(path, ResultRow(trial="b", status="done"))
    record_result(path, ResultRow(trial="a", status="done", val_loss=0.5))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["trial"] for r in lines] == ["a", "b"]
    assert lines[0] == ResultRow(trial="a", status="done", val_loss=0.5).to_json()
    assert lines[0]["val_loss"] == 0.5 and lines[0]["status"] == "done"
    assert load_results(path)["a"] == ResultRow(trial="a", status="done", val_loss=0.5)


def test_load_results_names_file_and_line_of_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"trial": "a", "status": "done"}\n{"trial": "b", \n')
    with pytest.raises(ResultsError, match=r"results.jsonl:2"):
        load_results(path)
    path.write_text('{"trial": "a", "status": "done"}\n{"trial": "a", "status": "done"}\n')
    with pytest.raises(ResultsError, match="appears twice"):
        load_results(path)
    path.write_text('{"trial": "a", "status": "done", "vall_loss": 1.0}\n')
    with pytest.raises(ResultsError, match=r"results.jsonl:1: unknown field\(s\) \['vall_loss'\]"):
        load_results(path)
    path.write_text('{"trial": "a", "status": "finished"}\n')
    with pytest.raises(ResultsError, match=r"results.jsonl:1: status: expected one of"):
        load_results(path)


def test_malformed_fields_and_outcomes_are_errors_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"trial": "a", "status": "diverged", "divergence": {"step": 1}}\n')
    with pytest.raises(ResultsError, match=r"results.jsonl:1: malformed field"):
        load_results(path)
    path.write_text('{"trial": "a", "status": "done", "ceilings": [0.9]}\n')
    with pytest.raises(ResultsError, match=r"results.jsonl:1: malformed field"):
        load_results(path)
    outcome = tmp_path / "outcome.json"
    outcome.write_text('{"trial": "a", "status": "done", "eval": {"sim": 0.5}}')
    with pytest.raises(OutcomeError, match=r"outcome.json: not an outcome"):
        read_outcome(outcome)


def test_plan_skips_finished_retries_failed_resumes_started(
    smoke: SweepConfig, tmp_path: Path
) -> None:
    trials = smoke.trials()
    paths = SweepPaths(tmp_path / smoke.name)
    paths.root.mkdir()
    record_result(paths.results, row(trials[0]))
    record_result(paths.results, row(trials[1], "diverged"))
    record_result(paths.results, row(trials[2], "failed"))
    paths.trial_dir(trials[3].name).mkdir(parents=True)  # checkpoints of an interrupted run
    finished = TrialOutcome(trial=trials[4].name, status="done")  # finished, unrecorded
    write_outcome(paths.outcome(trials[4].name), finished)
    plan = plan_sweep(smoke, tmp_path)
    actions = [plan.actions[t.name] for t in trials]
    assert actions == [
        "skip (done)",
        "skip (diverged)",
        "retry (failed)",
        "resume",
        "record (finished)",
        "run",
    ]
    assert [t.name for t in plan.pending] == [t.name for t in trials[2:]]


def test_plan_refuses_rows_from_a_different_configuration(
    smoke: SweepConfig, tmp_path: Path
) -> None:
    trial = smoke.trials()[0]
    paths = SweepPaths(tmp_path / smoke.name)
    paths.root.mkdir()
    record_result(paths.results, row(trial, config_hash="0123456789ab"))
    with pytest.raises(ResultsError, match=f"{trial.name} was run with a different"):
        plan_sweep(smoke, tmp_path)


def test_resources_by_size_and_concurrency(smoke: SweepConfig) -> None:
    big = ResourcesConfig(num_workers=2, cpus_per_worker=1)
    sweep = replace(smoke, resources_by_size={"s": big})
    trials = {t.name: t for t in sweep.trials()}
    assert trials["s-u64-seed0"].resources == big
    assert trials["xs-u64-seed0"].resources == smoke.trial.resources
    assert max_concurrency(list(trials.values()), {"CPU": 4}, None) == 2
    assert max_concurrency(list(trials.values()), {"CPU": 8}, 3) == 3
    with pytest.raises(ConfigError, match="resources_by_size"):
        replace(smoke, resources_by_size={"xl": big}).trials()


def test_promotion_needs_to_clear_the_champion_beyond_both_cis() -> None:
    champion = {"sim": 0.60, "sim_ci": [0.57, 0.63], "checkpoint_sha256": "old"}
    close = {"trial": "m", "sim": 0.64, "sim_ci": [0.61, 0.67], "checkpoint_sha256": "new"}
    clear = {"trial": "l", "sim": 0.70, "sim_ci": [0.66, 0.74], "checkpoint_sha256": "new"}
    assert decide(close, None, "sim").promote
    assert not decide(close, champion, "sim").promote
    assert decide(clear, champion, "sim").promote
    same = {**clear, "checkpoint_sha256": "old"}
    assert "already" in decide(same, champion, "sim").reason
    wer_champion = {"wer": 0.30, "wer_ci": [0.25, 0.35], "checkpoint_sha256": "old"}
    better_wer = {"trial": "l", "wer": 0.10, "wer_ci": [0.08, 0.12], "checkpoint_sha256": "n"}
    assert decide(better_wer, wer_champion, "wer").promote


def test_eligibility_says_why_a_trial_is_left_out(tmp_path: Path) -> None:
    (tmp_path / "trials" / "ok" / "export").mkdir(parents=True)
    base = {"sim": 0.5, "wer": 0.2, "mlflow_run_id": "r", "failed_utterances": 0}
    rows = [
        {**base, "trial": "ok", "status": "done", "checkpoint": "trials/ok/export"},
        {**base, "trial": "noisy", "status": "done", "checkpoint": "trials/ok/export", "wer": 0.9},
        {**base, "trial": "broken", "status": "failed", "checkpoint": None},
        {**base, "trial": "gone", "status": "done", "checkpoint": "trials/gone/export"},
    ]
    typed = [ResultRow.from_json(r) for r in rows]
    keep, excluded = eligible_rows(typed, tmp_path, "sim", max_wer=0.5)
    assert [r.trial for r in keep] == ["ok"]
    text = " ".join(excluded)
    assert "noisy: wer 0.9" in text and "broken: status failed" in text
    assert "gone: exported checkpoint missing" in text


def test_seed_figure_checks_order_plateau_and_gain() -> None:
    from scaling.analysis import describe_seed_figure, seed_figure

    def r(size: str, params: int, d: int, loss: float) -> ResultRow:
        kind = "baseline" if size == "baseline" else "neural"
        return ResultRow(
            trial=f"{size}-u{d}",
            status="done",
            kind=kind,
            model_size=size,
            params=params,
            data_utterances=d,
            val_loss=loss,
        )

    classic = [
        r("baseline", 10, 1024, 1.00),
        r("baseline", 10, 4096, 0.99),
        r("s", 1, 1024, 0.95),
        r("s", 1, 4096, 0.94),
        r("m", 10, 1024, 0.90),
        r("m", 10, 4096, 0.85),
        r("l", 100, 1024, 0.85),
        r("l", 100, 4096, 0.75),
    ]
    check = seed_figure(classic)
    assert check["order"] == ["l", "m", "s", "baseline"] and check["order_holds"]
    assert check["baseline_plateaus"] and check["largest_keeps_improving"]
    assert all(line.lstrip().startswith(("✓", "seed")) for line in describe_seed_figure(classic))
    improving_baseline = [*classic[2:], r("baseline", 10, 1024, 1.1), r("baseline", 10, 4096, 0.9)]
    assert not seed_figure(improving_baseline)["baseline_plateaus"]
    assert seed_figure(classic[:4]) is None  # one neural size: nothing to check

"""Result rows carry evaluation's val_loss interval (`eval_val_loss_ci`) and still read every
row written before it existed."""

from __future__ import annotations

import json
import math
from pathlib import Path

from eval.result import EvalResult
from store.outcome import TrialOutcome
from store.records import ResultRow
from training.config import TrialConfig

GOLDEN_ROWS = Path(__file__).resolve().parents[1] / "data" / "golden" / "smoke_results.jsonl"

OLD_ROW = {
    "trial": "s-u64-seed0",
    "kind": "neural",
    "model_size": "s",
    "val_loss": 1.55,
    "sim": 0.51,
    "sim_ci": [0.48, 0.54],
    "wer": 0.3,
    "wer_ci": [0.2, 0.4],
    "status": "done",
    "eval_val_loss": 1.51,
}
"""A row as results.jsonl held it before `eval_val_loss_ci`."""


def through_file(row: ResultRow) -> ResultRow:
    return ResultRow.from_json(json.loads(json.dumps(row.to_json(), allow_nan=False)))


def test_a_row_written_before_the_val_loss_interval_still_loads() -> None:
    row = ResultRow.from_json(OLD_ROW)
    assert row.eval_val_loss == 1.51 and row.eval_val_loss_ci is None
    assert row.sim_ci == (0.48, 0.54)
    assert "eval_val_loss_ci_low" not in row.mlflow_metrics()
    for line in GOLDEN_ROWS.read_text().splitlines():  # the recorded smoke rows, too
        data = json.loads(line)
        if "eval_val_loss_ci" not in data:
            assert ResultRow.from_json(data).eval_val_loss_ci is None


def test_a_new_row_round_trips_its_val_loss_interval() -> None:
    row = ResultRow.from_json({**OLD_ROW, "eval_val_loss_ci": [1.47, 1.56]})
    assert row.eval_val_loss_ci == (1.47, 1.56)
    assert through_file(row) == row
    keys = list(row.to_json())
    assert keys.index("eval_val_loss_ci") == keys.index("eval_val_loss") + 1
    metrics = row.mlflow_metrics()
    assert (metrics["eval_val_loss_ci_low"], metrics["eval_val_loss_ci_high"]) == (1.47, 1.56)


def test_an_infinite_interval_end_is_strict_json_and_not_logged() -> None:
    """A model that could not reconstruct one utterance: the interval's upper end is not a
    number; the row stays strict JSON and MLflow gets only the end that is."""
    row = ResultRow.from_json(OLD_ROW)
    row = ResultRow(**{**row.__dict__, "eval_val_loss_ci": (1.4, math.nan)})
    read = through_file(row)
    assert read.eval_val_loss_ci == (1.4, None)
    assert read.mlflow_metrics()["eval_val_loss_ci_high"] is None


def test_the_outcome_s_evaluation_interval_reaches_the_row(tmp_path: Path) -> None:
    evaluation = EvalResult(
        sim=0.5, sim_ci=(0.4, 0.6), wer=0.2, wer_ci=(0.1, 0.3), val_loss=1.2, val_loss_ci=(1.1, 1.3)
    )
    outcome = TrialOutcome.from_json(
        {"trial": "t", "status": "done", "train": {"val_loss": 1.25}, "eval": evaluation.to_json()}
    )
    row = outcome.row(TrialConfig(), sweep_dir=tmp_path, mlflow_run_id=None)
    assert (row.val_loss, row.eval_val_loss, row.eval_val_loss_ci) == (1.25, 1.2, (1.1, 1.3))
    assert (row.sim_ci, row.wer_ci) == ((0.4, 0.6), (0.1, 0.3))
    no_timings = EvalResult(sim=0.5, sim_ci=(0.4, 0.6), wer=0.2, wer_ci=(0.1, 0.3)).to_json()
    without = TrialOutcome.from_json({"trial": "t", "status": "done", "eval": no_timings})
    row = without.row(TrialConfig(), sweep_dir=tmp_path, mlflow_run_id=None)
    assert row.eval_val_loss is None and row.eval_val_loss_ci is None

"""`outcome.json`: what one trial produced — training's summary, its judgement, its export —
written by the trial itself before it reports back, read by the driver to build its row.

A final outcome (`done`/`diverged`) on disk means the trial never trains again: the driver
records it from here, even after a crash between the two.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from eval.result import EvalResult
from store.records import Ceilings, Divergence, ResultRow, Status
from training.config import TrialConfig, config_hash

__all__ = ["OutcomeError", "TrainSummary", "TrialOutcome", "read_outcome", "write_outcome"]


@dataclass(frozen=True)
class TrainSummary:
    """Training's final metrics (the neural loop's or the baseline's), typed where the row
    reads them; everything else the loop reported is kept verbatim in `details`."""

    status: Status = "failed"
    val_loss: float | None = None
    params: int | None = None
    data_hours: float | None = None
    data_utterances: int | None = None
    steps: int | None = None
    train_flops: float | None = None
    train_seconds: float | None = None
    stop_reason: str | None = None
    divergence: Divergence | None = None
    resumed_from: tuple[int, ...] | None = None
    protocol: str | None = None
    epochs: float | None = None
    dev_loss: float | None = None
    train_speakers: int | None = None
    val_loss_ci: tuple[float, float] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainSummary:
        typed = {f.name for f in fields(cls)} - {"details"}
        values: dict[str, Any] = {k: data[k] for k in typed if k in data}
        if values.get("divergence") is not None:
            values["divergence"] = Divergence(**values["divergence"])
        for key in ("resumed_from", "val_loss_ci"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        details = {k: v for k, v in data.items() if k not in typed}
        return cls(**values, details=details)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.details)
        for f in fields(self):
            if f.name == "details":
                continue
            value = getattr(self, f.name)
            out[f.name] = value.to_json() if isinstance(value, Divergence) else value
        return out


@dataclass(frozen=True)
class TrialOutcome:
    """One trial's result as its `outcome.json` holds it."""

    trial: str
    status: Status
    config_hash: str | None = None
    error: str | None = None
    train: TrainSummary = field(default_factory=TrainSummary)
    export_dir: str | None = None
    eval: EvalResult | None = None
    eval_dir: str | None = None
    traceback: str | None = None
    wall_seconds: float | None = None
    finished_at: float | None = None

    @classmethod
    def failed(cls, trial: str, error: str, finished_at: float) -> TrialOutcome:
        return cls(trial=trial, status="failed", error=error, finished_at=finished_at)

    def as_failed(self, error: str) -> TrialOutcome:
        return replace(self, status="failed", error=error)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("eval_dir", "traceback") and value is None:
                continue  # only present when there is one
            out[f.name] = value.to_json() if hasattr(value, "to_json") else value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialOutcome:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["train"] = TrainSummary.from_json(values.get("train") or {})
        if values.get("eval") is not None:
            values["eval"] = EvalResult.from_json(values["eval"])
        return cls(**values)

    def row(self, trial: TrialConfig, *, sweep_dir: Path, mlflow_run_id: str | None) -> ResultRow:
        """The trial's results.jsonl row: the only place a row is made."""
        train, evaluation = self.train, self.eval
        return ResultRow(
            trial=trial.name,
            kind=trial.kind,
            model_size=trial.family,
            params=train.params,
            data_hours=train.data_hours,
            data_utterances=train.data_utterances,
            seed=trial.seed,
            steps=train.steps,
            protocol=train.protocol,
            epochs=train.epochs,
            dev_loss=train.dev_loss,
            train_speakers=train.train_speakers,
            val_loss_ci=train.val_loss_ci,
            train_flops=train.train_flops,
            val_loss=train.val_loss,
            sim=evaluation.sim if evaluation else None,
            sim_ci=evaluation.sim_ci if evaluation else None,
            wer=evaluation.wer if evaluation else None,
            wer_ci=evaluation.wer_ci if evaluation else None,
            status=self.status,
            checkpoint=_relative(self.export_dir, sweep_dir),
            mlflow_run_id=mlflow_run_id,
            train_seconds=train.train_seconds,
            eval_seconds=evaluation.eval_seconds if evaluation else None,
            budget=trial.data.budget.label,
            config_hash=config_hash(trial),
            stop_reason=train.stop_reason,
            divergence=train.divergence,
            resumed_from=train.resumed_from,
            failed_utterances=evaluation.failed_utterances if evaluation else None,
            eval_val_loss=evaluation.val_loss if evaluation else None,
            eval_val_loss_ci=evaluation.val_loss_ci if evaluation else None,
            dnsmos=evaluation.dnsmos if evaluation else None,
            dnsmos_ci=evaluation.dnsmos_ci if evaluation else None,
            utmos=evaluation.utmos if evaluation else None,
            utmos_ci=evaluation.utmos_ci if evaluation else None,
            ceilings=Ceilings.from_scores(evaluation.ceilings)
            if evaluation and evaluation.ceilings
            else None,
            wall_seconds=self.wall_seconds,
            gpu_hours=_gpu_hours(trial, self.wall_seconds),
            finished_at=self.finished_at,
            error=self.error,
        )


def _gpu_hours(trial: TrialConfig, wall_seconds: float | None) -> float | None:
    if wall_seconds is None:
        return None
    r = trial.resources
    return r.num_workers * r.gpus_per_worker * wall_seconds / 3600


class OutcomeError(ValueError):
    """An outcome.json this version cannot read (names the file)."""


def read_outcome(path: Path) -> TrialOutcome | None:
    """The trial's outcome, None if it has none yet; `OutcomeError` names a broken file."""
    if not path.exists():
        return None
    try:
        return TrialOutcome.from_json(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, AttributeError, ValueError) as err:
        raise OutcomeError(f"{path}: not an outcome this version can read ({err})") from None


def write_outcome(path: Path, outcome: TrialOutcome) -> None:
    """Atomic: a half-written outcome would look like a finished trial."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(outcome.to_json(), indent=2, default=str))
    tmp.replace(path)


def _relative(path: str | None, root: Path) -> str | None:
    if not path:
        return None
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)

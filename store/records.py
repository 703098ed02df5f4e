"""What a trial produces, typed: its results row, the parts of it, and how it reads and writes.

One `ResultRow` per trial is the sweep's unit of truth (`results.jsonl`); fits, the report,
promotion and MLflow's final metrics all read it. Rows are built from the trial's outcome
(`store.outcome`) in one place, and serialised only at the file and MLflow boundaries:
`to_json()` writes the same keys, in the same order, as every results.jsonl before it (plus
fields added since, such as `eval_val_loss_ci`: rows written before them still load, with
None), and `from_json()` refuses a row it does not understand, naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

__all__ = [
    "FINAL_STATUSES",
    "METRIC_FIELDS",
    "QUALITY_FIELDS",
    "ROW_FIELDS",
    "Ceiling",
    "Ceilings",
    "Divergence",
    "Kind",
    "ResultRow",
    "RowError",
    "Status",
    "json_safe",
]

Status = Literal["done", "diverged", "failed"]
"""done: trained and judged; diverged: training stopped on a non-finite loss (a result);
failed: it did not finish (retried by the next run)."""
Kind = Literal["neural", "baseline"]
FINAL_STATUSES: tuple[Status, ...] = ("done", "diverged")
"""Rows in these states are results: a re-run of the sweep skips their trials."""
METRIC_FIELDS = ("val_loss", "sim", "wer")
"""The measured numbers a row carries that the report fits a scaling law to."""
QUALITY_FIELDS = ("dnsmos", "utmos")
"""Perceptual quality (MOS-like, 1-5, higher is better; `eval.quality.QUALITY_METRICS`):
measured with intervals, plotted against data beside their ceilings, not fitted — a MOS
saturates below the ground truth's score and has no natural zero for a power law to fall
towards."""
_INTERVAL_FIELDS = ("sim_ci", "wer_ci", "eval_val_loss_ci", "val_loss_ci", "dnsmos_ci", "utmos_ci")


class RowError(ValueError):
    """A results row that is not what this version writes (names the field)."""


def json_safe(value: Any) -> Any:
    """Strict JSON for `json.dumps(allow_nan=False)`: numpy scalars and arrays become Python,
    NaN/±inf become None, tuples become lists, mapping keys become strings. Rows and fits
    are strict JSON for any reader."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalar / array
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


@dataclass(frozen=True)
class Divergence:
    """Where and why training stopped on a non-finite loss."""

    step: int
    last_finite_train_loss: float | None
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "last_finite_train_loss": self.last_finite_train_loss,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Ceiling:
    """SIM, WER and quality scores of one reference (what a perfect system would score
    here); a score not measured (or not yet, in rows written before it) is None."""

    sim: float | None
    wer: float | None
    dnsmos: float | None = None
    utmos: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"sim": self.sim, "wer": self.wer, "dnsmos": self.dnsmos, "utmos": self.utmos}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Ceiling:
        data = data or {}
        return cls(data.get("sim"), data.get("wer"), data.get("dnsmos"), data.get("utmos"))


@dataclass(frozen=True)
class Ceilings:
    """The recorded speech itself, and the recorded mel through the vocoder."""

    ground_truth: Ceiling
    vocoder: Ceiling

    @classmethod
    def from_scores(cls, scores: Mapping[str, Any]) -> Ceilings:
        """From evaluation's flat `ceilings` dict (`ground_truth_sim`, …)."""

        def one(prefix: str) -> Ceiling:
            return Ceiling(*(scores.get(f"{prefix}{m}") for m in ("sim", "wer", *QUALITY_FIELDS)))

        return cls(one("ground_truth_"), one("vocoded_ground_truth_"))

    def to_json(self) -> dict[str, Any]:
        return {"ground_truth": self.ground_truth.to_json(), "vocoder": self.vocoder.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Ceilings:
        return cls(
            Ceiling.from_json(data.get("ground_truth")), Ceiling.from_json(data.get("vocoder"))
        )


@dataclass(frozen=True)
class ResultRow:
    """One trial's line in results.jsonl. Field order is the file's key order."""

    trial: str
    kind: Kind = "neural"
    model_size: str | None = None
    """The model-size name; "baseline" for the baseline (its family in fits and plots)."""
    params: int | None = None
    data_hours: float | None = None
    data_utterances: int | None = None
    seed: int | None = None
    steps: int | None = None
    train_flops: float | None = None
    val_loss: float | None = None
    sim: float | None = None
    sim_ci: tuple[float, float] | None = None
    wer: float | None = None
    wer_ci: tuple[float, float] | None = None
    status: Status = "failed"
    checkpoint: str | None = None
    """The export, relative to the sweep directory."""
    mlflow_run_id: str | None = None
    train_seconds: float | None = None
    eval_seconds: float | None = None
    # Beyond the required columns: what a reader of one row needs to trust it.
    budget: str | None = None
    config_hash: str | None = None
    stop_reason: str | None = None
    divergence: Divergence | None = None
    resumed_from: tuple[int, ...] | None = None
    """Steps of the checkpoints training restarted from after a failure (empty if none)."""
    failed_utterances: int | None = None
    eval_val_loss: float | None = None
    """Evaluation's teacher-forced L1 on the held-out voices' cloned sentences (`val_loss`
    is training's validation loss: other sentences, so another number)."""
    eval_val_loss_ci: tuple[float, float] | None = None
    """Its 95 % interval, speaker-clustered like `sim_ci` and `wer_ci` (absent from rows
    written before it: None)."""
    ceilings: Ceilings | None = None
    wall_seconds: float | None = None
    gpu_hours: float | None = None
    """GPUs the trial held × its wall time, in hours (0 on CPUs): what a cluster bills."""
    protocol: str | None = None
    """How long it trained: steps, converged, compute (`training.protocol`), or fit for a
    closed-form traditional baseline."""
    epochs: float | None = None
    """Passes over the budget that training made."""
    dev_loss: float | None = None
    """converged: the dev voices' loss of the checkpoint handed in (its stopping criterion)."""
    train_speakers: int | None = None
    """Distinct voices in the training budget."""
    val_loss_ci: tuple[float, float] | None = None
    """`val_loss`'s 95 % interval: speaker-clustered bootstrap over the held-out utterances it
    is measured on (absent from rows written before it: None)."""
    dnsmos: float | None = None
    """Perceptual quality of the cloned sentences: DNSMOS P.835 OVRL (1-5, higher is better),
    mean over utterances (None: not judged, or a row written before it)."""
    dnsmos_ci: tuple[float, float] | None = None
    """Its 95 % interval, speaker-clustered like `sim_ci`."""
    utmos: float | None = None
    """UTMOS (1-5) of the same sentences, where `eval.quality` names it."""
    utmos_ci: tuple[float, float] | None = None
    finished_at: float | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if self.status not in get_args(Status):
            raise RowError(f"status: expected one of {get_args(Status)}, got {self.status!r}")
        if self.kind not in get_args(Kind):
            raise RowError(f"kind: expected one of {get_args(Kind)}, got {self.kind!r}")

    @property
    def family(self) -> str:
        """What fits and plots group by: the model size, or "baseline"."""
        return str(self.model_size)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    def metric(self, name: str) -> float | None:
        """The value of `val_loss`, `sim`, `wer`, `dnsmos` or `utmos` (None when not measured)."""
        known = METRIC_FIELDS + QUALITY_FIELDS
        if name not in known:
            raise ValueError(f"metric must be one of {known}, got {name!r}")
        return getattr(self, name)

    def to_json(self) -> dict[str, Any]:
        """The results.jsonl object (strict JSON: non-finite numbers become null)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (Divergence, Ceilings)):
                value = value.to_json()
            out[f.name] = value
        return json_safe(out)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResultRow:
        """A row from its results.jsonl object; `RowError` names an unknown or bad field."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RowError(f"unknown field(s) {unknown}; a row has {sorted(known)}")
        values = dict(data)
        try:
            for key in (*_INTERVAL_FIELDS, "resumed_from"):
                if values.get(key) is not None:
                    values[key] = tuple(values[key])
            if values.get("divergence") is not None:
                values["divergence"] = Divergence(**values["divergence"])
            if values.get("ceilings") is not None:
                values["ceilings"] = Ceilings.from_json(values["ceilings"])
            return cls(**values)
        except (TypeError, AttributeError) as err:
            raise RowError(f"malformed field: {err}") from None

    def mlflow_metrics(self) -> dict[str, float | None]:
        """The child run's final metrics: the row's numbers, the CIs' ends and the
        divergence's step and last finite loss (None values are not logged)."""
        final: dict[str, float | None] = {
            "val_loss": self.val_loss,
            "sim": self.sim,
            "wer": self.wer,
            "params": self.params,
            "data_hours": self.data_hours,
            "data_utterances": self.data_utterances,
            "steps": self.steps,
            "train_flops": self.train_flops,
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "wall_seconds": self.wall_seconds,
            "gpu_hours": self.gpu_hours,
            "failed_utterances": self.failed_utterances,
            "eval_val_loss": self.eval_val_loss,
            "epochs": self.epochs,
            "dev_loss": self.dev_loss,
            "train_speakers": self.train_speakers,
            "dnsmos": self.dnsmos,
            "utmos": self.utmos,
        }
        for key, interval in (
            ("val_loss_ci", self.val_loss_ci),
            ("sim_ci", self.sim_ci),
            ("wer_ci", self.wer_ci),
            ("eval_val_loss_ci", self.eval_val_loss_ci),
            ("dnsmos_ci", self.dnsmos_ci),
            ("utmos_ci", self.utmos_ci),
        ):
            if interval:
                final[f"{key}_low"], final[f"{key}_high"] = interval
        divergence = self.divergence
        final["diverged_at_step"] = divergence.step if divergence else None
        final["last_finite_train_loss"] = divergence.last_finite_train_loss if divergence else None
        return final

    def mlflow_tags(self) -> dict[str, str]:
        tags = {"status": self.status, "config_hash": str(self.config_hash)}
        if self.divergence:
            tags["divergence"] = str(self.divergence.reason)
        if self.error:
            tags["error"] = str(self.error)[-4000:]
        return tags


ROW_FIELDS = tuple(f.name for f in fields(ResultRow))

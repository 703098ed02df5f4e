"""What judging one export produces: `EvalResult`, or an `EvalFailure` when it could not run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["EvalFailure", "EvalResult", "JudgeOutcome", "eval_from_json"]


@dataclass(frozen=True)
class EvalResult:
    """Cloning quality of one export on the held-out voices (the file `metrics.json`)."""

    sim: float
    sim_ci: tuple[float, float] | None
    wer: float
    wer_ci: tuple[float, float] | None
    val_loss: float | None = None
    """Teacher-forced held-out L1 (None when the corpus has no phoneme timings)."""
    val_loss_ci: tuple[float, float] | None = None
    utterances: int = 0
    failed_utterances: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)
    ceilings: dict[str, float | None] = field(default_factory=dict)
    """Flat: ground_truth_sim/wer/dnsmos and vocoded_ground_truth_sim/wer/dnsmos (each with
    its `_ci`; utmos too when judged)."""
    judges: dict[str, str] = field(default_factory=dict)
    eval_config: dict[str, Any] = field(default_factory=dict)
    eval_seconds: float = 0.0
    """Wall time the trial waited for this verdict (in a sweep: measured by the caller, so
    it includes reaching the judge actor and, the first time, building its held-out set)."""
    reference_seconds: float = 0.0
    """The part of `eval_seconds` spent loading the judges, the held-out set and its
    ceilings — paid by the first checkpoint a judge process sees, 0 afterwards."""
    dnsmos: float | None = None
    """Perceptual quality, DNSMOS P.835 OVRL (1-5, higher is better), mean over utterances
    (None when `EvalConfig.quality` leaves it out, and in results written before it)."""
    dnsmos_ci: tuple[float, float] | None = None
    utmos: float | None = None
    """UTMOS (1-5), mean over utterances, when `EvalConfig.quality` names it."""
    utmos_ci: tuple[float, float] | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        # Corpora without timings never had the val_loss keys; unjudged quality has none.
        for metric in ("val_loss", "dnsmos", "utmos"):
            if getattr(self, metric) is None:
                del out[metric], out[f"{metric}_ci"]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvalResult:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("sim_ci", "wer_ci", "val_loss_ci", "dnsmos_ci", "utmos_ci"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass(frozen=True)
class EvalFailure:
    """Judging raised: the trial is recorded failed and the next run judges the export again."""

    error: str
    traceback: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"error": self.error, "traceback": self.traceback}


JudgeOutcome = EvalResult | EvalFailure


def eval_from_json(data: Mapping[str, Any] | None) -> JudgeOutcome | None:
    """Either kind from its JSON (the `eval` of a trial's final metrics); None if absent."""
    if data is None:
        return None
    if "error" in data:
        return EvalFailure(str(data["error"]), data.get("traceback"))
    return EvalResult.from_json(data)

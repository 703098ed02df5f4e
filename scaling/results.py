"""`runs/<sweep>/results.jsonl`: one row per trial, the single source of truth for fits,
the report and promotion.

Rows are only ever written by the sweep driver, one at a time. A trial has at most one row:
recording a trial that already has one (a failed trial that was retried) rewrites the file
atomically with the new row in place of the old one. `done` and `diverged` rows are final —
a re-run of the sweep skips those trials; `failed` ones are tried again.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.config import TrialConfig, config_hash

__all__ = [
    "FINAL_STATUSES",
    "ResultsError",
    "SweepPaths",
    "describe_seed_figure",
    "load_results",
    "record_result",
    "repair_torn_tail",
    "result_row",
    "seed_figure",
]

FINAL_STATUSES = ("done", "diverged")
ROW_FIELDS = (
    "trial",
    "kind",
    "model_size",
    "params",
    "data_hours",
    "data_utterances",
    "seed",
    "steps",
    "train_flops",
    "val_loss",
    "sim",
    "sim_ci",
    "wer",
    "wer_ci",
    "status",
    "checkpoint",
    "mlflow_run_id",
    "train_seconds",
    "eval_seconds",
)


class ResultsError(ValueError):
    """results.jsonl is unreadable or inconsistent with the sweep being run."""


@dataclass(frozen=True)
class SweepPaths:
    """Where a sweep keeps things, all under `runs/<sweep>/`."""

    root: Path

    @property
    def results(self) -> Path:
        return self.root / "results.jsonl"

    @property
    def trials(self) -> Path:
        """Ray Train storage: one directory per trial (checkpoints, export, evaluation)."""
        return self.root / "trials"

    @property
    def tune(self) -> Path:
        return self.root / "tune"

    def trial_dir(self, name: str) -> Path:
        return self.trials / name

    def outcome(self, name: str) -> Path:
        """What the trial produced, written by the trial itself before it reports back."""
        return self.trial_dir(name) / "outcome.json"


def load_results(path: Path) -> dict[str, dict[str, Any]]:
    """Rows by trial name. A malformed line is an error naming file and line: a silently
    dropped row would make the sweep train that trial again."""
    rows: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return rows
    text = path.read_text()
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            torn = number == len(lines) and not text.endswith("\n")
            hint = " — a torn last line; `voicescale sweep` sets it aside" if torn else ""
            raise ResultsError(f"{path}:{number}: not a JSON object ({err.msg}){hint}") from None
        if not isinstance(row, dict) or "trial" not in row or "status" not in row:
            raise ResultsError(f"{path}:{number}: a row needs 'trial' and 'status'")
        if row["trial"] in rows:
            raise ResultsError(f"{path}:{number}: trial {row['trial']!r} appears twice")
        rows[row["trial"]] = row
    return rows


def repair_torn_tail(path: Path) -> Path | None:
    """Set aside a torn last line — one a crash or a full disk cut off mid-write — so the
    sweep can go on; returns where it went (`results.jsonl.torn`), or None if nothing was
    torn. Rows are written whole and newline-terminated, so only a last line without its
    newline can be torn; one that still parses lost only the newline and is kept. Any
    other invalid line is left for `load_results` to report: it was not a crash."""
    if not path.exists():
        return None
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return None
    cut = data.rfind(b"\n") + 1
    tail = data[cut:]
    try:
        complete = isinstance(json.loads(tail), dict)
    except (json.JSONDecodeError, UnicodeDecodeError):
        complete = False
    if complete:
        _append_durably(path, b"\n")
        return None
    torn = path.with_name(path.name + ".torn")
    with torn.open("ab") as f:
        f.write(tail + b"\n")
        f.flush()
        os.fsync(f.fileno())
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_bytes(data[:cut])
    _fsync(tmp)
    tmp.replace(path)
    return torn


def _append_durably(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync(path: Path) -> None:
    with path.open("rb+") as f:
        os.fsync(f.fileno())


def record_result(path: Path, row: dict[str, Any]) -> None:
    """Append `row`, or replace the trial's earlier row; durable before it returns."""
    rows = load_results(path)
    line = json.dumps(_json_safe(row), sort_keys=False) + "\n"
    if row["trial"] not in rows:
        _append_durably(path, line.encode())  # one write: a crash can only cut its end off
        return
    rows[row["trial"]] = row
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w") as f:
        for existing in rows.values():
            f.write(json.dumps(_json_safe(existing)) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def result_row(
    trial: TrialConfig,
    outcome: dict[str, Any],
    *,
    sweep_dir: Path,
    mlflow_run_id: str | None,
) -> dict[str, Any]:
    """The results.jsonl row of one trial from what it produced (`outcome.json`)."""
    train = outcome.get("train") or {}
    evaluation = outcome.get("eval") or {}
    ceilings = evaluation.get("ceilings") or {}
    export = outcome.get("export_dir")
    row = {
        "trial": trial.name,
        "kind": trial.kind,
        "model_size": trial.model.size if trial.kind == "neural" else "baseline",
        "params": train.get("params"),
        "data_hours": train.get("data_hours"),
        "data_utterances": train.get("data_utterances"),
        "seed": trial.seed,
        "steps": train.get("steps"),
        "train_flops": train.get("train_flops"),
        "val_loss": train.get("val_loss"),
        "sim": evaluation.get("sim"),
        "sim_ci": evaluation.get("sim_ci"),
        "wer": evaluation.get("wer"),
        "wer_ci": evaluation.get("wer_ci"),
        "status": outcome["status"],
        "checkpoint": _relative(export, sweep_dir),
        "mlflow_run_id": mlflow_run_id,
        "train_seconds": train.get("train_seconds"),
        "eval_seconds": evaluation.get("eval_seconds"),
        # Beyond the required columns: what a reader of one row needs to trust it.
        "budget": trial.data.budget.label,
        "config_hash": config_hash(trial),
        "stop_reason": train.get("stop_reason"),
        # {step, last_finite_train_loss, reason} when the trial diverged, else null.
        "divergence": train.get("divergence"),
        # Steps of the checkpoints training restarted from after a failure ([] if none).
        "resumed_from": train.get("resumed_from"),
        "failed_utterances": evaluation.get("failed_utterances"),
        "eval_val_loss": evaluation.get("val_loss"),
        "ceilings": {
            "ground_truth": {
                "sim": ceilings.get("ground_truth_sim"),
                "wer": ceilings.get("ground_truth_wer"),
            },
            "vocoder": {
                "sim": ceilings.get("vocoded_ground_truth_sim"),
                "wer": ceilings.get("vocoded_ground_truth_wer"),
            },
        }
        if ceilings
        else None,
        "wall_seconds": outcome.get("wall_seconds"),
        "finished_at": outcome.get("finished_at"),
        "error": outcome.get("error"),
    }
    return row


def _relative(path: str | None, root: Path) -> str | None:
    if not path:
        return None
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _json_safe(value: Any) -> Any:
    """NaN/inf become null: results.jsonl is strict JSON for any reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def seed_figure(rows: list[dict[str, Any]], metric: str = "val_loss") -> dict[str, Any] | None:
    """The headline claim checked on measured points (seed-averaged, lower is better): at the
    largest budget largest model < middle < smallest < baseline; the baseline's relative gain
    between the two largest budgets < 2 %; the largest model's ≥ 5 %."""
    done = [r for r in rows if r.get("status") == "done" and _finite(r.get(metric))]
    budgets = sorted({r["data_utterances"] for r in done})
    neural = sorted({(r["params"], r["model_size"]) for r in done if r["kind"] == "neural"})
    if len(budgets) < 2 or len(neural) < 3 or not any(r["kind"] == "baseline" for r in done):
        return None

    def mean(family: str, budget: int) -> float | None:
        values = [
            r[metric] for r in done if r["model_size"] == family and r["data_utterances"] == budget
        ]
        return sum(values) / len(values) if values else None

    top, previous = budgets[-1], budgets[-2]
    smallest, middle, largest = neural[0][1], neural[len(neural) // 2][1], neural[-1][1]
    at_top = {f: mean(f, top) for f in (largest, middle, smallest, "baseline")}

    def gain(family: str) -> float | None:
        before, after = mean(family, previous), mean(family, top)
        return None if before is None or after is None else (before - after) / before

    order_ok = None not in at_top.values() and (
        at_top[largest] < at_top[middle] < at_top[smallest] < at_top["baseline"]
    )
    baseline_gain, largest_gain = gain("baseline"), gain(largest)
    return {
        "metric": metric,
        "budgets": [previous, top],
        "at_largest_budget": at_top,
        "order": [largest, middle, smallest, "baseline"],
        "order_holds": order_ok,
        "baseline_gain": baseline_gain,
        "baseline_plateaus": baseline_gain is not None and baseline_gain < 0.02,
        "largest_gain": largest_gain,
        "largest_keeps_improving": largest_gain is not None and largest_gain >= 0.05,
    }


def describe_seed_figure(rows: list[dict[str, Any]]) -> list[str]:
    """`seed_figure` as short lines, each check marked ✓ or ✗ with its measured numbers."""
    check = seed_figure(rows)
    if check is None:
        return ["seed's figure: needs ≥ 3 model sizes, the baseline and ≥ 2 budgets"]
    previous, top = check["budgets"]
    values = ", ".join(
        f"{family} {value:.4f}" if value is not None else f"{family} –"
        for family, value in check["at_largest_budget"].items()
    )

    def mark(ok: bool) -> str:
        return "✓" if ok else "✗"

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f} %"

    return [
        f"seed's figure ({check['metric']}, lower is better):",
        f"  {mark(check['order_holds'])} at {top} utterances "
        f"{' < '.join(check['order'])}: {values}",
        f"  {mark(check['baseline_plateaus'])} baseline gain {previous}→{top}: "
        f"{pct(check['baseline_gain'])} (wanted < 2 %)",
        f"  {mark(check['largest_keeps_improving'])} {check['order'][0]} gain "
        f"{previous}→{top}: {pct(check['largest_gain'])} (wanted ≥ 5 %)",
    ]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)

"""The sweep on Ray Tune: each trial is a Tune function trainable that builds the trial's
TorchTrainer (the Ray Train V2 pattern); rank 0 judges the export before reporting it (the
baseline's task does the same), and the trial leaves `outcome.json` in its directory. A Tune
callback in the driver records each finished trial — MLflow child run, then its row in
results.jsonl — so exactly one process writes either.

Idempotence rests on three facts: a trial that left a final `outcome.json` is recorded without
retraining; an unfinished trial's TorchTrainer (same name, same storage) resumes from its last
checkpoint; and rows and child runs are looked up by trial name before being written.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.tracking import SweepTracker
from scaling.results import FINAL_STATUSES, SweepPaths, record_result, result_row
from training.config import TrialConfig, config_hash, from_dict, to_dict

__all__ = ["SweepRecorder", "run_trials", "trial_resources", "trial_trainable"]


# ---------------------------------------------------------------------------------------------
# Inside Ray: one Tune trial


def trial_trainable(tune_config: dict[str, Any], *, trials: dict[str, dict[str, Any]]) -> None:
    """Tune function trainable for the trial named `tune_config["trial"]`. `trials` (bound
    with `tune.with_parameters`) maps each name to {"name", "trial" (TrialConfig dict),
    "sweep_dir", "corpus_root", "max_failures"}; everything a trial needs arrives here (no
    globals), and Tune's table shows only the name."""
    from ray import tune

    config = trials[tune_config["trial"]]
    trial = from_dict(TrialConfig, config["trial"], source=f"trial {config.get('name')}")
    paths = SweepPaths(Path(config["sweep_dir"]))
    outcome = read_outcome(paths.outcome(trial.name))
    if outcome is None or outcome["status"] not in FINAL_STATUSES:
        outcome = _train_and_evaluate(trial, paths, Path(config["corpus_root"]), config)
        write_outcome(paths.outcome(trial.name), outcome)
    tune.report(
        {
            "final": True,
            "status": outcome["status"],
            "val_loss": _number((outcome.get("train") or {}).get("val_loss")),
            "sim": _number((outcome.get("eval") or {}).get("sim")),
            "wer": _number((outcome.get("eval") or {}).get("wer")),
        }
    )


def _train_and_evaluate(
    trial: TrialConfig, paths: SweepPaths, corpus_root: Path, config: dict[str, Any]
) -> dict[str, Any]:
    """Train, then judge the export in the process that wrote it (see `ExportJudge`)."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from cluster.evaluation import ExportJudge
    from cluster.trial_runner import run_any_trial

    started = time.perf_counter()
    eval_dir = paths.trial_dir(trial.name) / "eval"
    result = run_any_trial(
        trial,
        corpus_root,
        paths.trials,
        max_failures=int(config.get("max_failures", 2)),
        callbacks=[TuneReportCallback()],
        on_export=ExportJudge(str(corpus_root), str(eval_dir), to_dict(trial.eval)),
    )
    train = dict(result.metrics)
    evaluation = train.pop("eval", None)
    outcome: dict[str, Any] = {
        "trial": trial.name,
        "config_hash": config_hash(trial),
        "status": result.status,
        "error": result.error,
        "train": train,
        "export_dir": str(result.export_dir) if result.export_dir else None,
        "eval": None,
    }
    if result.status == "done":
        if not isinstance(evaluation, dict):
            evaluation = {"error": "the trial finished without an evaluation of its export"}
        if "error" in evaluation:  # trained but could not be judged: the next run judges it
            outcome["status"] = "failed"
            outcome["error"] = f"evaluation: {evaluation['error']}"
            outcome["traceback"] = evaluation.get("traceback")
        else:
            outcome["eval"] = evaluation
            outcome["eval_dir"] = str(eval_dir)
    outcome["wall_seconds"] = time.perf_counter() - started
    return outcome


def read_outcome(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    return json.loads(path.read_text())


def write_outcome(path: Path, outcome: dict[str, Any]) -> None:
    """Atomic: a half-written outcome would look like a finished trial."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(outcome, indent=2, default=str))
    tmp.replace(path)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


# ---------------------------------------------------------------------------------------------
# In the driver: recording finished trials


@dataclass
class SweepRecorder:
    """Writes each finished trial to MLflow and results.jsonl, in that order (the row carries
    the run id). Used from the Tune callback, and directly for trials found already finished."""

    paths: SweepPaths
    tracker: SweepTracker
    trials: dict[str, TrialConfig]
    on_recorded: Callable[[dict[str, Any]], None] = lambda row: None
    run_ids: dict[str, str] = field(default_factory=dict)

    def started(self, name: str) -> None:
        trial = self.trials[name]
        run_id = self.tracker.child_run(name, {"trial": to_dict(trial), "name": name})
        self.run_ids[name] = run_id
        self.tracker.start_system_metrics(run_id)

    def progress(self, name: str, metrics: dict[str, Any]) -> None:
        run_id = self.run_ids.get(name)
        if run_id is not None and not metrics.get("final"):
            self.tracker.log_step(run_id, metrics)

    def finished(self, name: str, error: str | None = None) -> dict[str, Any] | None:
        """Record trial `name` from its outcome.json (or as failed with `error`); None when
        it has neither (interrupted)."""
        trial = self.trials[name]
        outcome = read_outcome(self.paths.outcome(name))
        if outcome is None and error is None:
            # Stopped before it finished (Ctrl-C): not a result; the next run resumes it.
            self.tracker.stop_system_metrics(self.run_ids.get(name, ""))
            return None
        outcome = outcome or {"trial": name, "status": "failed", "error": error}
        if error and outcome["status"] not in FINAL_STATUSES:
            outcome = {**outcome, "status": "failed", "error": error}
        run_id = self.run_ids.get(name) or self.tracker.child_run(
            name, {"trial": to_dict(trial), "name": name}
        )
        row = result_row(trial, outcome, sweep_dir=self.paths.root, mlflow_run_id=run_id)
        self.tracker.finish_child(
            run_id,
            final=_final_metrics(row),
            artifacts=_artifacts(outcome),
            tags={"status": row["status"], "config_hash": row["config_hash"]},
            status="FINISHED" if row["status"] in FINAL_STATUSES else "FAILED",
        )
        record_result(self.paths.results, row)
        self.on_recorded(row)
        return row


def _final_metrics(row: dict[str, Any]) -> dict[str, Any]:
    final = {
        k: row.get(k)
        for k in (
            "val_loss",
            "sim",
            "wer",
            "params",
            "data_hours",
            "data_utterances",
            "train_flops",
            "train_seconds",
            "eval_seconds",
            "wall_seconds",
            "failed_utterances",
            "eval_val_loss",
        )
    }
    for key in ("sim_ci", "wer_ci"):
        if row.get(key):
            final[f"{key}_low"], final[f"{key}_high"] = row[key]
    return final


def _artifacts(outcome: dict[str, Any]) -> dict[str, Path]:
    """Per-utterance JSONL, audio samples and metrics from evaluation, and the exported
    checkpoint (what promotion registers)."""
    out: dict[str, Path] = {}
    if outcome.get("export_dir"):
        out["checkpoint"] = Path(outcome["export_dir"])
    if outcome.get("eval_dir"):
        out["eval"] = Path(outcome["eval_dir"])
    return out


def _name(tune_trial: Any) -> str:
    return tune_trial.config["trial"]


def _make_callback(recorder: SweepRecorder):
    from ray.tune import Callback

    class RecordTrials(Callback):
        """Tune hooks → the recorder. Runs in the driver process only."""

        def on_trial_start(self, iteration, trials, trial, **info):
            recorder.started(_name(trial))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            recorder.progress(_name(trial), result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            recorder.finished(_name(trial))

        def on_trial_error(self, iteration, trials, trial, **info):
            error = getattr(trial, "error_msg", None) or "the trial raised (see Tune's log)"
            recorder.finished(_name(trial), error=str(error)[-2000:])

    return RecordTrials()


# ---------------------------------------------------------------------------------------------
# In the driver: running the pending trials


def trial_resources(trial: TrialConfig) -> dict[str, float]:
    """What one trial holds at its peak: its training workers (the Tune driver's 0.01 CPU
    aside). Evaluation takes one CPU after training has released its workers."""
    r = trial.resources
    resources = {"CPU": max(1.0, r.num_workers * r.cpus_per_worker)}
    if r.gpus_per_worker:
        resources["GPU"] = r.num_workers * r.gpus_per_worker
    return resources


def max_concurrency(trials: list[TrialConfig], cluster: dict[str, float], cap: int | None) -> int:
    """How many trials can run at once: the cluster divided by the hungriest trial."""
    fits = []
    for trial in trials:
        need = trial_resources(trial)
        fits.append(min(int(cluster.get(k, 0) // v) for k, v in need.items()))
    concurrency = max(1, min(fits) if fits else 1)
    return min(concurrency, cap) if cap else concurrency


def run_trials(
    trials: list[TrialConfig],
    *,
    paths: SweepPaths,
    corpus_root: Path,
    recorder: SweepRecorder,
    concurrency: int,
    max_failures: int,
) -> None:
    """Run `trials` as one Tune experiment (Ctrl-C stops it gracefully; the caller reads
    results.jsonl to see what finished)."""
    from ray import tune

    # Longest first: the biggest model at the biggest budget is the sweep's critical path.
    ordered = sorted(trials, key=_estimated_cost, reverse=True)
    configs = {
        t.name: {
            "name": t.name,
            "trial": to_dict(t),
            "sweep_dir": str(paths.root.resolve()),
            "corpus_root": str(corpus_root),
            "max_failures": max_failures,
        }
        for t in ordered
    }
    # The trainable only drives the TorchTrainer: a sliver of CPU (0 is refused).
    trainable = tune.with_resources(
        tune.with_parameters(trial_trainable, trials=configs), {"CPU": 0.01}
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(list(configs))},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=concurrency,
            # One trial-driver process serves trial after trial: its imports (Ray Train,
            # torch) are paid once per slot, not once per trial.
            reuse_actors=True,
            trial_name_creator=_name,
            trial_dirname_creator=_name,
        ),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str(paths.root.resolve()),
            callbacks=[_make_callback(recorder)],
            verbose=1,
        ),
    )
    print(f"running {len(trials)} trial(s), at most {concurrency} at once", flush=True)
    tuner.fit()


def _estimated_cost(trial: TrialConfig) -> float:
    if trial.kind == "baseline":
        return 0.0
    m = trial.model
    return m.width * m.width * m.depth * (trial.training.steps or trial.data.budget.utterances or 1)

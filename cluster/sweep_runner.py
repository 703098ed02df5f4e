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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.tracking import RECORDED_TAG, SweepTracker, record_key
from cluster.tracking_queue import TrackingQueue
from scaling.results import FINAL_STATUSES, SweepPaths, load_results, record_result, result_row
from training.config import TrialConfig, config_hash, from_dict, to_dict

__all__ = [
    "TRIAL_DRIVER_RESOURCES",
    "SweepRecorder",
    "run_trials",
    "trial_resources",
    "trial_trainable",
]

HEAD_NODE_RESOURCE = "node:__internal_head__"
"""Ray's built-in resource of the head node (1 unit, head only)."""
TRIAL_DRIVER_RESOURCES = {"CPU": 0, HEAD_NODE_RESOURCE: 0.001}
"""A trial's Tune driver only waits on its TorchTrainer: no CPU (the head resource makes the
bundle non-empty, which Tune requires), on the head node."""


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
    if result.status == "diverged":
        outcome["error"] = None  # a result, not an error: `train.divergence` says why
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
    outcome["finished_at"] = time.time()
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
    """Records each finished trial: its row in results.jsonl first (the source of truth,
    written at once), then its MLflow child run through the tracking queue (which may lag,
    or wait out an outage). Used from the Tune callback, for trials found already finished,
    and to reconcile MLflow with rows it does not fully hold."""

    paths: SweepPaths
    queue: TrackingQueue
    trials: dict[str, TrialConfig]
    on_recorded: Callable[[dict[str, Any]], None] = lambda row: None
    _rows_lock: threading.Lock = field(default_factory=threading.Lock)

    def _params(self, name: str) -> dict[str, Any]:
        return {"trial": to_dict(self.trials[name]), "name": name}

    def started(self, name: str) -> None:
        params = self._params(name)
        self.queue.submit(f"start of {name}", lambda t: t.start_trial(name, params))

    def progress(self, name: str, metrics: dict[str, Any]) -> None:
        if metrics.get("final"):
            return
        params, metrics = self._params(name), dict(metrics)
        self.queue.submit(
            f"step {metrics.get('step')} of {name}", lambda t: t.log_step(name, params, metrics)
        )

    def finished(self, name: str, error: str | None = None) -> dict[str, Any] | None:
        """Record trial `name` from its outcome.json (or as failed with `error`); None when
        it has neither (interrupted)."""
        trial = self.trials[name]
        outcome = read_outcome(self.paths.outcome(name))
        if outcome is None and error is None:
            # Stopped before it finished (Ctrl-C): not a result; the next run resumes it.
            self.queue.submit(f"stop of {name}", lambda t: t.stop_trial(name))
            return None
        outcome = outcome or {"trial": name, "status": "failed", "error": error}
        if error and outcome["status"] not in FINAL_STATUSES:
            outcome = {**outcome, "status": "failed", "error": error}
        outcome.setdefault("finished_at", time.time())
        row = result_row(
            trial,
            outcome,
            sweep_dir=self.paths.root,
            mlflow_run_id=self.queue.tracker.run_ids.get(name),
        )
        with self._rows_lock:
            record_result(self.paths.results, row)
        self.on_recorded(row)
        self.queue.submit(f"record of {name}", lambda t: self._track(t, row))
        return row

    def reconcile(self) -> None:
        """Bring MLflow up to date with results.jsonl: rows whose child run is missing, not
        complete or not in its final state (a driver killed between the two, a tracking
        outage) are recorded there now — once; complete ones are not touched."""
        rows = load_results(self.paths.results)

        def reconcile(tracker: SweepTracker) -> None:
            children = tracker.children()
            for name, row in rows.items():
                if name in self.trials and not _tracked(children.get(name), row):
                    self._track(tracker, row)

        self.queue.submit("reconciliation with results.jsonl", reconcile)

    def _track(self, tracker: SweepTracker, row: dict[str, Any]) -> None:
        """MLflow's side of one row (in the tracking thread); fills in the row's run id."""
        name = row["trial"]
        outcome = read_outcome(self.paths.outcome(name)) or {}
        run_id = tracker.record_trial(
            name,
            self._params(name),
            final=_final_metrics(row),
            artifacts=_artifacts(outcome),
            tags=_final_tags(row),
            status=_run_status(row),
            record=_record(row),
        )
        if row.get("mlflow_run_id") == run_id:
            return
        with self._rows_lock:
            current = load_results(self.paths.results).get(name)
            if current is not None and current.get("config_hash") == row.get("config_hash"):
                record_result(self.paths.results, {**current, "mlflow_run_id": run_id})


def _run_status(row: dict[str, Any]) -> str:
    return "FINISHED" if row["status"] in FINAL_STATUSES else "FAILED"


def _record(row: dict[str, Any]) -> str:
    return record_key(row["status"], row.get("finished_at"))


def _tracked(run: Any, row: dict[str, Any]) -> bool:
    return (
        run is not None
        and run.data.tags.get(RECORDED_TAG) == _record(row)
        and run.info.status == _run_status(row)
        and row.get("mlflow_run_id") == run.info.run_id
    )


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
            "steps",
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
    divergence = row.get("divergence") or {}
    final["diverged_at_step"] = divergence.get("step")
    final["last_finite_train_loss"] = divergence.get("last_finite_train_loss")
    return final


def _final_tags(row: dict[str, Any]) -> dict[str, str]:
    tags = {"status": row["status"], "config_hash": str(row.get("config_hash"))}
    if row.get("divergence"):
        tags["divergence"] = str(row["divergence"].get("reason"))
    if row.get("error"):
        tags["error"] = str(row["error"])[-4000:]
    return tags


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

        def __init__(self, recorder: SweepRecorder) -> None:
            self.recorder = recorder

        def __getstate__(self) -> dict[str, Any]:
            # Tune pickles its run config into the experiment directory; the recorder (a
            # thread and its locks) belongs to this process and is never restored from there.
            return {}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.recorder.started(_name(trial))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.recorder.progress(_name(trial), result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.recorder.finished(_name(trial))

        def on_trial_error(self, iteration, trials, trial, **info):
            error = getattr(trial, "error_msg", None) or "the trial raised (see Tune's log)"
            self.recorder.finished(_name(trial), error=str(error)[-2000:])

    return RecordTrials(recorder)


# ---------------------------------------------------------------------------------------------
# In the driver: running the pending trials


def trial_resources(trial: TrialConfig) -> dict[str, float]:
    """What one trial holds at its peak: its training workers (its Tune driver holds no
    CPU). Evaluation takes one CPU after training has released its workers."""
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
    # The trainable only drives the TorchTrainer, on the head node, so losing (or
    # pre-empting) a worker node never takes a trial's driver along; Ray Train then restarts
    # the workers from the last checkpoint.
    trainable = tune.with_resources(
        tune.with_parameters(trial_trainable, trials=configs), TRIAL_DRIVER_RESOURCES
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

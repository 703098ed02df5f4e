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

import hashlib
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cluster.judge_service import remove_judges
from cluster.tracking import RECORDED_TAG, SweepTracker, record_key
from cluster.tracking_queue import TrackingQueue
from cluster.trial_events import forwarded_events, record_trials_callback
from eval.result import EvalFailure, eval_from_json
from store.outcome import TrainSummary, TrialOutcome, read_outcome, write_outcome
from store.paths import SweepPaths
from store.progress import write_progress
from store.records import FINAL_STATUSES, ResultRow
from store.results_file import load_results, record_result
from training.config import EvalConfig, TrialConfig, config_hash, to_dict
from training.trial_log import TrialLog, captured_output

__all__ = [
    "TRIAL_DRIVER_RESOURCES",
    "SweepRecorder",
    "TrialTask",
    "judge_service_name",
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


@dataclass(frozen=True)
class TrialTask:
    """Everything one Tune trial needs, bound with `tune.with_parameters` (no globals): the
    typed config travels as itself, pickled once into Ray's object store."""

    trial: TrialConfig
    sweep_dir: Path
    corpus_root: Path
    max_failures: int = 2
    echo_logs: bool = False
    """Copy the trial's log files to the console too (`voicescale sweep -v`)."""

    @property
    def log(self) -> TrialLog:
        logs = SweepPaths(self.sweep_dir).trial_dir(self.trial.name) / "logs"
        return TrialLog(str(logs), echo=self.echo_logs)


def trial_trainable(tune_config: dict[str, Any], *, tasks: dict[str, TrialTask]) -> None:
    """Tune function trainable for the trial named `tune_config["trial"]` (Tune's table
    shows only the name)."""
    from ray import tune

    task = tasks[tune_config["trial"]]
    paths = SweepPaths(task.sweep_dir)
    outcome = read_outcome(paths.outcome(task.trial.name))
    if outcome is None or outcome.status not in FINAL_STATUSES:
        with captured_output(task.log, "driver"):
            outcome = _train_and_evaluate(task, paths)
        write_outcome(paths.outcome(task.trial.name), outcome)
    evaluation = outcome.eval
    tune.report(
        {
            "final": True,
            "status": outcome.status,
            "val_loss": _number(outcome.train.val_loss),
            "sim": _number(evaluation.sim if evaluation else None),
            "wer": _number(evaluation.wer if evaluation else None),
            "dnsmos": _number(evaluation.dnsmos if evaluation else None),
        }
    )


def _train_and_evaluate(task: TrialTask, paths: SweepPaths) -> TrialOutcome:
    """Train, then judge the export in the process that wrote it (see `ExportJudge`)."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from cluster.evaluation import ExportJudge
    from cluster.trial_runner import run_any_trial

    trial = task.trial
    started = time.perf_counter()
    eval_dir = paths.trial_dir(trial.name) / "eval"
    result = run_any_trial(
        trial,
        task.corpus_root,
        paths.trials,
        max_failures=task.max_failures,
        callbacks=[TuneReportCallback()],
        on_export=ExportJudge(
            str(task.corpus_root),
            str(eval_dir),
            judging_config(trial.eval, paths.root.parent),
            service=judge_service_name(paths),
            threads=max(1, int(trial.resources.cpus_per_worker)),
        ),
        log=task.log,
    )
    train = dict(result.metrics)
    judged = eval_from_json(train.pop("eval", None))
    outcome = TrialOutcome(
        trial=trial.name,
        config_hash=config_hash(trial),
        status=result.status,
        # A divergence is a result, not an error: `train.divergence` says why.
        error=None if result.status == "diverged" else result.error,
        train=TrainSummary.from_json(train),
        export_dir=str(result.export_dir) if result.export_dir else None,
    )
    if outcome.status == "done":
        if judged is None:
            judged = EvalFailure("the trial finished without an evaluation of its export")
        if isinstance(judged, EvalFailure):  # trained but not judged: the next run judges it
            outcome = replace(
                outcome.as_failed(f"evaluation: {judged.error}"), traceback=judged.traceback
            )
        else:
            outcome = replace(outcome, eval=judged, eval_dir=str(eval_dir))
    return replace(outcome, wall_seconds=time.perf_counter() - started, finished_at=time.time())


def judge_service_name(paths: SweepPaths) -> str:
    """The name this sweep's judge actors go by (`cluster.judge_service`): the sweep's name
    and a digest of its directory, so two sweeps on one cluster never share judges."""
    digest = hashlib.sha256(str(paths.root.resolve()).encode()).hexdigest()[:8]
    return f"{paths.root.name}-{digest}"


def judging_config(cfg: EvalConfig, runs_dir: Path) -> EvalConfig:
    """Evaluation settings with hub downloads going to `<runs>/judges` unless they name a
    cache: one copy on the sweep's (shared) storage, never a worker's working directory."""
    return cfg if cfg.cache_dir else replace(cfg, cache_dir=str(runs_dir.resolve() / "judges"))


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
    on_recorded: Callable[[ResultRow], None] = lambda row: None
    """Called with each row as it is written (under the rows lock: one at a time)."""
    on_started: Callable[[str], None] = lambda name: None
    on_progress: Callable[[str, dict[str, Any]], None] = lambda name, metrics: None
    _rows_lock: threading.Lock = field(default_factory=threading.Lock)

    def _params(self, name: str) -> dict[str, Any]:
        return {"trial": to_dict(self.trials[name]), "name": name}

    def started(self, name: str) -> None:
        params = self._params(name)
        write_progress(self.paths.trial_dir(name), name)
        self.on_started(name)
        self.queue.submit(f"start of {name}", lambda t: t.start_trial(name, params))

    def progress(self, name: str, metrics: dict[str, Any]) -> None:
        if metrics.get("final"):
            return
        write_progress(self.paths.trial_dir(name), name, metrics)
        self.on_progress(name, metrics)
        params, metrics = self._params(name), dict(metrics)
        self.queue.submit(
            f"step {metrics.get('step')} of {name}", lambda t: t.log_step(name, params, metrics)
        )

    def finished(self, name: str, error: str | None = None) -> ResultRow | None:
        """Record trial `name` from its outcome.json (or as failed with `error`); None when
        it has neither (interrupted)."""
        trial = self.trials[name]
        outcome = read_outcome(self.paths.outcome(name))
        if outcome is None and error is None:
            # Stopped before it finished (Ctrl-C): not a result; the next run resumes it.
            self.queue.submit(f"stop of {name}", lambda t: t.stop_trial(name))
            return None
        if outcome is None:
            outcome = TrialOutcome.failed(name, str(error), finished_at=time.time())
        elif error and outcome.status not in FINAL_STATUSES:
            outcome = outcome.as_failed(error)
        if outcome.finished_at is None:
            outcome = replace(outcome, finished_at=time.time())
        row = outcome.row(
            trial, sweep_dir=self.paths.root, mlflow_run_id=self.queue.tracker.run_ids.get(name)
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

    def _track(self, tracker: SweepTracker, row: ResultRow) -> None:
        """MLflow's side of one row (in the tracking thread); fills in the row's run id."""
        name = row.trial
        run_id = tracker.record_trial(
            name,
            self._params(name),
            final=row.mlflow_metrics(),
            artifacts=_artifacts(read_outcome(self.paths.outcome(name))),
            tags=row.mlflow_tags(),
            status=_run_status(row),
            record=_record(row),
        )
        if row.mlflow_run_id == run_id:
            return
        with self._rows_lock:
            current = load_results(self.paths.results).get(name)
            if current is not None and current.config_hash == row.config_hash:
                record_result(self.paths.results, replace(current, mlflow_run_id=run_id))


def _run_status(row: ResultRow) -> str:
    return "FINISHED" if row.final else "FAILED"


def _record(row: ResultRow) -> str:
    return record_key(row.status, row.finished_at)


def _tracked(run: Any, row: ResultRow) -> bool:
    return (
        run is not None
        and run.data.tags.get(RECORDED_TAG) == _record(row)
        and run.info.status == _run_status(row)
        and row.mlflow_run_id == run.info.run_id
    )


def _artifacts(outcome: TrialOutcome | None) -> dict[str, Path]:
    """Per-utterance JSONL, audio samples and metrics from evaluation, and the exported
    checkpoint (what promotion registers)."""
    out: dict[str, Path] = {}
    if outcome and outcome.export_dir:
        out["checkpoint"] = Path(outcome.export_dir)
    if outcome and outcome.eval_dir:
        out["eval"] = Path(outcome.eval_dir)
    return out


def _name(tune_trial: Any) -> str:
    return tune_trial.config["trial"]


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
    verbose: bool = False,
) -> None:
    """Run `trials` as one Tune experiment (Ctrl-C stops it gracefully; the caller reads
    results.jsonl to see what finished). Tune itself prints nothing unless `verbose`: the
    sweep's console (`cluster.console`) says what a user reads, and each trial's processes
    write to its `logs/` (echoed here too when `verbose`)."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    # Tune's TensorBoard logger (one of its defaults) warns about every list-valued metric
    # and nothing reads it: only the CSV and JSON ones are kept (Tune's result grid reads them).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if not verbose:
        # Tune's newer console output prints its experiment box whatever the verbosity; the
        # classic one prints nothing at verbose=0.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Longest first: the biggest model at the biggest budget is the sweep's critical path.
    ordered = sorted(trials, key=_estimated_cost, reverse=True)
    tasks = {
        t.name: TrialTask(t, paths.root.resolve(), Path(corpus_root), max_failures, verbose)
        for t in ordered
    }
    # The trainable only drives the TorchTrainer, on the head node, so losing (or
    # pre-empting) a worker node never takes a trial's driver along; Ray Train then restarts
    # the workers from the last checkpoint.
    trainable = tune.with_resources(
        tune.with_parameters(trial_trainable, tasks=tasks), TRIAL_DRIVER_RESOURCES
    )
    print(f"running {len(trials)} trial(s), at most {concurrency} at once", flush=True)
    # Judge actors are detached: ones a dead driver of this sweep left behind hold judges
    # loaded by older code, and this run's must not outlive it.
    service = judge_service_name(paths)
    remove_judges(service)
    preparing = _prepare_judges(service, ordered[0], corpus_root, paths)
    try:
        with forwarded_events(recorder) as events:
            tuner = tune.Tuner(
                trainable,
                param_space={"trial": tune.grid_search(list(tasks))},
                tune_config=tune.TuneConfig(
                    max_concurrent_trials=concurrency,
                    # One trial-driver process serves trial after trial: its imports (Ray
                    # Train, torch) are paid once per slot, not once per trial.
                    reuse_actors=True,
                    trial_name_creator=_name,
                    trial_dirname_creator=_name,
                ),
                run_config=tune.RunConfig(
                    name="tune",
                    storage_path=str(paths.root.resolve()),
                    callbacks=[
                        record_trials_callback(events),
                        CSVLoggerCallback(),
                        JsonLoggerCallback(),
                    ],
                    verbose=1 if verbose else 0,
                ),
            )
            tuner.fit()
        _report_preparation(preparing)
    finally:
        remove_judges(service)


def _prepare_judges(service: str, trial: TrialConfig, corpus_root: Path, paths: SweepPaths):
    """The judges' held-out set and reference ceilings, built once while the first trials
    start (every trial of a sweep shares the corpus, the evaluation settings and features)."""
    from cluster.judge_service import prepare_judges

    try:
        cfg = judging_config(trial.eval, paths.root.parent)
        return prepare_judges(service, str(corpus_root), cfg, trial.data.features)
    except Exception as err:  # e.g. no node id through Ray Client: the first trial builds it
        print(f"judges: not prepared ahead ({type(err).__name__}: {err})", flush=True)
        return None


def _report_preparation(preparing) -> None:
    import ray

    if preparing is None or not ray.wait([preparing], timeout=0)[0]:
        return
    try:
        seconds = ray.get(preparing)
    except Exception as err:  # the trials' own evaluations said what went wrong
        print(f"judges: preparing the held-out set failed ({type(err).__name__})", flush=True)
        return
    print(
        f"judges: held-out set and reference ceilings prepared once, {seconds:.1f} s, while "
        "the first trials started (not in any trial's eval_seconds)",
        flush=True,
    )


def _estimated_cost(trial: TrialConfig) -> float:
    if trial.kind == "baseline":
        return 0.0
    m = trial.model
    return m.width * m.width * m.depth * (trial.training.steps or trial.data.budget.utterances or 1)

"""Launch one trial on Ray: a TorchTrainer whose workers run the DeepSpeed loop.

`check_launchable` rejects configs that cannot run here *before* Ray starts; `run_trial`
builds the TorchTrainer (deterministic run name, storage under the caller's directory,
restart-on-failure) and returns what the trial produced.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from store.records import Status
from training.config import ConfigError, TrialConfig
from training.trial_log import TrialLog, captured_output

if TYPE_CHECKING:
    from training.deepspeed_loop import OnExport

__all__ = [
    "HEALTH_CHECK_INTERVAL_S",
    "TrainingResult",
    "check_launchable",
    "run_any_trial",
    "run_baseline_trial",
    "run_trial",
]

HEALTH_CHECK_INTERVAL_S = "0.25"
"""How often Ray Train's controller polls its workers (Ray's default: 2 s). The controller
learns that training started, and that it finished, only at a poll: with 2 s a trial waited
~6 s in all on them (measured: a 20-step trial's `fit` 25.3 s → 19.0 s at 0.1 s). One
`poll_status` call per worker and poll is cheap next to that; set the variable to override."""


MAX_PREEMPTIONS = -1
"""Ray Train's `FailureConfig.max_preemption_failures`: node preemptions a trial recovers from
(-1: any number). Ray Train counts them apart from `max_failures` when the node was drained
with a preemption reason (cloud spot reclaim, seen by its preemption watcher)."""


@dataclass(frozen=True)
class TrainingResult:
    """What Ray handed back for one trial: its status, the final report's metrics (JSON, as
    they crossed Ray), the export. `store.outcome.TrialOutcome` is built from it."""

    name: str
    status: Status
    metrics: dict[str, Any]
    export_dir: Path | None
    """Directory holding the exported weights (model.safetensors + model_config.json)."""
    error: str | None = None


def check_launchable(
    trial: TrialConfig, *, cluster_cpus: float | None = None, cuda_available: bool | None = None
) -> None:
    """Raise `ConfigError` naming the field if `trial` cannot run on this machine/cluster.

    Only what depends on the machine or cluster is checked here; rules of the config alone
    (batch divisibility, fp16 without GPUs) hold already, checked when it was built."""
    import torch

    r, ds = trial.resources, trial.deepspeed
    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    if trial.kind == "neural" and ds.precision == "fp16" and not cuda:
        raise ConfigError(
            "deepspeed.precision: fp16 needs GPUs, and this machine has no CUDA device"
            " (DeepSpeed refuses fp16 on CPU); use fp32, bf16 or auto"
        )
    if r.gpus_per_worker > 0 and not cuda and not os.environ.get("RAY_ADDRESS"):
        raise ConfigError(
            f"resources.gpus_per_worker={r.gpus_per_worker:g} but this machine "
            "has no CUDA device (set RAY_ADDRESS to use a GPU cluster)"
        )
    if cluster_cpus is None and os.environ.get("RAY_ADDRESS"):
        cluster_cpus = math.inf  # checked again against the cluster once connected
    cpus = float(os.cpu_count() or 1) if cluster_cpus is None else cluster_cpus
    wanted = r.num_workers * r.cpus_per_worker
    if wanted > cpus:
        raise ConfigError(
            f"resources.num_workers × resources.cpus_per_worker = {wanted:g} CPUs, "
            f"more than the {cpus:g} available"
        )


def run_trial(
    trial: TrialConfig,
    corpus_root: Path,
    storage: Path,
    *,
    max_failures: int = 2,
    callbacks: list[Any] | None = None,
    on_export: OnExport | None = None,
    log: TrialLog | None = None,
) -> TrainingResult:
    """Train `trial` with Ray Train + DeepSpeed; checkpoints and results go under `storage`.

    A run directory left by an earlier, interrupted attempt (same name, same storage) makes
    Ray Train resume from its latest checkpoint. `callbacks` go to Ray Train's `RunConfig`
    (the sweep passes Tune's report callback); `on_export` judges the export on rank 0 (see
    `training.deepspeed_loop.train_loop`) and its result comes back as `metrics["eval"]`;
    with `log`, each rank's output goes to its file there (`training.trial_log`)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from training.deepspeed_loop import LoopConfig, train_loop

    # Read by TorchTrainer.fit in this process and handed to the controller it starts.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_INTERVAL_S)
    r = trial.resources
    resources = {"CPU": r.cpus_per_worker}
    if r.gpus_per_worker > 0:
        resources["GPU"] = r.gpus_per_worker
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={
            "loop": LoopConfig(
                trial, str(corpus_root), str(storage / trial.name / "markers"), on_export, log
            )
        },
        scaling_config=ScalingConfig(
            num_workers=r.num_workers, use_gpu=r.gpus_per_worker > 0, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=trial.name,
            storage_path=str(storage),
            # A spot node reclaimed by its cloud is drained with a preemption reason: Ray
            # Train restarts the workers from the last checkpoint against a budget of its own
            # (unlimited here), so preemptions never use up `max_failures`, which is for real
            # failures (a crash, an OOM, a lost on-demand node).
            failure_config=FailureConfig(
                max_failures=max_failures, max_preemption_failures=MAX_PREEMPTIONS
            ),
            checkpoint_config=CheckpointConfig(num_to_keep=3),
            callbacks=callbacks or [],
        ),
    )
    try:
        result = trainer.fit()
    except Exception as err:
        return TrainingResult(trial.name, "failed", {}, None, error=f"{type(err).__name__}: {err}")
    metrics = dict(result.metrics or {})
    status = metrics.get("status", "failed")
    export = None
    if result.checkpoint is not None and status == "done":
        export = Path(result.checkpoint.path)
    return TrainingResult(trial.name, status, metrics, export)


def run_baseline_trial(
    trial: TrialConfig,
    corpus_root: Path,
    storage: Path,
    on_export: OnExport | None = None,
    log: TrialLog | None = None,
) -> TrainingResult:
    """Fit a traditional (non-neural) baseline — ridge or concatenative, `trial.baseline` — as
    a Ray task (one CPU slot, no DeepSpeed), retried on worker loss like any Ray task;
    `on_export` judges the export in the same task."""
    import ray

    from cluster.ray_runtime import outside_placement_group

    export = storage / trial.name / "export"
    task = ray.remote(num_cpus=trial.resources.cpus_per_worker, max_retries=2)(
        _fit_baseline
    ).options(scheduling_strategy=outside_placement_group())
    try:
        metrics = ray.get(task.remote(trial, str(corpus_root), export, on_export, log))
    except Exception as err:  # a failed trial is a result, not a crash
        return TrainingResult(trial.name, "failed", {}, None, error=f"{type(err).__name__}: {err}")
    status = metrics.get("status", "failed")
    return TrainingResult(trial.name, status, metrics, export if status == "done" else None)


def _fit_baseline(
    trial: TrialConfig,
    corpus_root: str,
    export: Path,
    on_export: OnExport | None,
    log: TrialLog | None,
) -> dict[str, Any]:
    from training.traditional import train_traditional

    with captured_output(log, "baseline"):
        metrics = train_traditional(trial, corpus_root, export)  # dispatches on `baseline`
        if on_export is not None and metrics.get("status") == "done":
            metrics["eval"] = on_export(export).to_json()
    return metrics


def run_any_trial(
    trial: TrialConfig,
    corpus_root: Path,
    storage: Path,
    *,
    max_failures: int = 2,
    callbacks: list[Any] | None = None,
    on_export: OnExport | None = None,
    log: TrialLog | None = None,
) -> TrainingResult:
    """Neural trials through Ray Train + DeepSpeed, the traditional baselines as Ray tasks."""
    if trial.kind == "baseline":
        return run_baseline_trial(trial, corpus_root, storage, on_export, log)
    return run_trial(
        trial,
        corpus_root,
        storage,
        max_failures=max_failures,
        callbacks=callbacks,
        on_export=on_export,
        log=log,
    )

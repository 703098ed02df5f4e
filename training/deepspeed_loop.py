"""The training loop that runs on every Ray Train worker: DeepSpeed data parallelism.

`train_loop` receives a `LoopConfig` (the typed `TrialConfig` itself, plus paths) and builds
everything from it — no globals. Phases, each a small function over one `TrialRun`:

    load data → build model + DeepSpeed engine → restore from Ray's checkpoint (if any)
    → steps (validate / checkpoint / early stop at fixed intervals) → export → report.

Every checkpoint goes through `ray.train.report(..., checkpoint=...)`; a restarted worker
group resumes from `ray.train.get_checkpoint()`. Batches and dropout masks are functions of
(seed, step), so a resumed run reproduces the uninterrupted one. A non-finite loss ends the
trial with status `diverged` (no exception, so Ray does not retry it).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from training.bootstrap import clustered_bootstrap_ci
from training.config import TrialConfig
from training.data import TrialData, batch_indices
from training.distributed import import_deepspeed, mean_across_ranks
from training.loop_checkpoints import (
    FINAL_METRICS,
    OnExport,
    TrainerState,
    report_checkpoint,
    report_finished_export,
    restore,
)
from training.losses import batch_loss, validation_l1
from training.model import VoiceCloner, count_parameters, train_flops_per_step
from training.protocol import epochs_seen, eval_interval, stop_reason_at_cap, total_steps
from training.trial_log import TrialLog, captured_output
from training.weights import export_model, full_weights, parameter_digests, sync_buffers

__all__ = [
    "TrainerState",
    "deepspeed_config",
    "lr_lambda",
    "total_steps",
    "train_loop",
]


def lr_lambda(warmup: int, total: int):
    """Linear warmup to 1, then cosine decay to 0.1 at `total`."""

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return schedule


def use_cuda(trial: TrialConfig) -> bool:
    return trial.resources.gpus_per_worker > 0 and torch.cuda.is_available()


def deepspeed_config(trial: TrialConfig, world_size: int, cuda: bool) -> dict[str, Any]:
    """The DeepSpeed JSON config, derived from the typed config."""
    global_batch = trial.training.batch_size
    accumulation = trial.deepspeed.gradient_accumulation_steps
    # TrialConfig guarantees the division is exact (and num_workers is the world size).
    micro = global_batch // (world_size * accumulation)
    precision = trial.deepspeed.precision
    if precision == "auto":
        precision = "bf16" if cuda else "fp32"
    zero: dict[str, Any] = {"stage": trial.deepspeed.zero_stage}
    if zero["stage"] == 3:
        # Below the threshold a parameter stays whole on every rank: with DeepSpeed's default
        # (1e5) a CPU-sized model is never partitioned, so tests set 0.
        threshold = trial.deepspeed.zero3_param_persistence_threshold
        zero["stage3_param_persistence_threshold"] = threshold
    config = {
        "train_batch_size": global_batch,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accumulation,
        "gradient_clipping": trial.optim.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if precision in ("bf16", "fp16"):
        # DeepSpeed 0.19 casts parameters only; BatchNorm then meets low-precision weights
        # with fp32 running statistics and refuses. Buffers follow the parameters' dtype.
        config["data_types"] = {"buffer_dtype": precision}
    return config


# ---------------------------------------------------------------------------------------------
# The loop


@dataclass(frozen=True)
class LoopConfig:
    """What `train_loop` receives on every worker (Ray Train's `train_loop_config` is
    `{"loop": LoopConfig}`): the typed trial itself, pickled, never a dict round trip."""

    trial: TrialConfig
    corpus_root: str
    marker_dir: str | None = None
    """Where one-shot failure injection leaves its marker (tests and drills)."""
    on_export: OnExport | None = None
    """Runs on rank 0 once the final weights are written, before they are reported; its
    result is reported as the final metrics' "eval" (the sweep judges the export here, in
    the process that already holds torch and the data, instead of starting another one)."""
    log: TrialLog | None = None
    """Where this rank's output goes (`logs/rank<r>.log`); None: the process's own."""


@dataclass
class TrialRun:
    """One attempt of one trial on one rank: the engine, the data and the resumable state."""

    loop: LoopConfig
    engine: Any
    data: TrialData
    state: TrainerState
    steps: int
    rank: int
    world: int
    device: torch.device
    timing: dict[str, Any]
    """Where this attempt's time goes (for the benchmark; not carried across restarts)."""
    best_weights: dict[str, torch.Tensor] | None = None
    """`converged`: the weights at `state.best_step` (what the trial exports)."""

    @property
    def params(self) -> int:
        return count_parameters(self.engine.module)["total"]

    @property
    def trial(self) -> TrialConfig:
        return self.loop.trial

    @property
    def converged_protocol(self) -> bool:
        return self.trial.training.protocol == "converged"

    @property
    def eval_every(self) -> int:
        return eval_interval(self.trial, len(self.data.train))


def train_loop(train_loop_config: dict[str, LoopConfig]) -> None:
    """Ray Train worker entry point: train, export, judge (rank 0) and report."""
    import ray.train

    loop = train_loop_config["loop"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    with captured_output(loop.log, f"rank{rank}"):
        _train_rank(loop, rank, world)


def _train_rank(loop: LoopConfig, rank: int, world: int) -> None:
    trial = loop.trial
    if report_finished_export(rank, loop.on_export):
        return
    torch.manual_seed(trial.seed)
    started = time.perf_counter()
    data = TrialData.load(trial, loop.corpus_root)
    if trial.training.protocol == "converged" and not data.dev:
        raise ValueError(
            f"training.protocol: converged stops on dev voices, but the corpus at "
            f"{loop.corpus_root} has none: give its config dev_speakers > 0 (synthetic or "
            "real) and rebuild it"
        )
    loaded = time.perf_counter()
    engine, device = _build_engine(trial, data, world)
    state, best_weights = restore(engine)
    timing = {
        "data_load_s": loaded - started,
        "engine_init_s": time.perf_counter() - loaded,
        "step_s": [],
    }
    steps = total_steps(trial, len(data.train))
    run = TrialRun(loop, engine, data, state, steps, rank, world, device, timing, best_weights)
    try:
        _finish(run, _run_steps(run))
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _build_engine(trial: TrialConfig, data: TrialData, world: int):
    deepspeed = import_deepspeed()
    cuda = use_cuda(trial)
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    model = VoiceCloner(
        trial.model, len(data.vocab), data.n_mels, learn_alignment=not data.has_durations
    )
    model.init_output_bias(torch.from_numpy(data.mean_mel()))
    model.init_duration_bias(data.frames_per_phoneme())
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=trial.learning_rate,
        betas=trial.optim.betas,
        weight_decay=trial.optim.weight_decay,
    )
    steps = total_steps(trial, len(data.train))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(trial.optim.warmup_steps, steps)
    )
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        lr_scheduler=scheduler,
        config=deepspeed_config(trial, world, cuda),
        dist_init_required=False,
    )
    return engine, device


def _run_steps(run: TrialRun) -> str:
    """Train to the step budget (or early stop / divergence); returns the stop reason."""
    engine, trial, data, state, steps = run.engine, run.trial, run.data, run.state, run.steps
    rank, world, device, step_times = run.rank, run.world, run.device, run.timing["step_s"]
    micro = engine.train_micro_batch_size_per_gpu()
    accumulation = engine.gradient_accumulation_steps()
    while state.step < steps:
        step = state.step
        _maybe_inject_failure(trial, step, run.loop.marker_dir)
        started = time.perf_counter()
        indices = batch_indices(
            len(data.train), data.lengths, trial.training.batch_size, trial.seed, step
        )
        losses = []
        for a in range(accumulation):
            # Micro-batch a of this rank: a fixed slice of the step's global batch.
            offset = (a * world + rank) * micro
            mine = indices[offset : offset + micro]
            torch.manual_seed(_step_seed(trial.seed, step, rank, a))  # dropout masks
            batch = data.train_batch(mine, trial.seed, step).to(device)
            loss, _ = batch_loss(engine, batch)
            engine.backward(loss)
            engine.step()
            losses.append(float(loss.detach()))
        train_loss = mean_across_ranks(float(np.mean(losses)), world, device)
        step_times.append(time.perf_counter() - started)
        state.train_seconds += step_times[-1]
        state.flops += _step_flops(engine.module, data, indices, micro * world * accumulation)
        state.step += 1
        if not math.isfinite(train_loss):  # every rank sees the same all-reduced loss
            state.divergence = f"non-finite train_loss ({train_loss}) at step {state.step}"
            return "diverged"
        if state.step == 1:
            state.first_train_loss = train_loss
        state.last_train_loss = train_loss
        at_eval = state.step % run.eval_every == 0 or state.step == steps
        metrics = {
            "step": state.step,
            "steps": steps,
            "train_loss": train_loss,
            "lr": engine.get_lr()[0],
            "status": "running",
        }
        if at_eval:
            stop = _validate(run, metrics)
            if stop:
                return stop
        save = state.step % trial.training.checkpoint_every == 0 or at_eval
        if save:  # each report is a round trip to the controller: only with checkpoints
            metrics["params"] = run.params  # for the sweep's live table
            report_checkpoint(metrics, engine, state, rank, run.best_weights)
            if rank == 0:
                print(
                    f"[{trial.name}] step {state.step}/{steps} train_loss {train_loss:.4f}"
                    + (f" val_loss {metrics['val_loss']:.4f}" if "val_loss" in metrics else "")
                    + (f" dev_loss {metrics['dev_loss']:.4f}" if "dev_loss" in metrics else ""),
                    flush=True,
                )
        patience = trial.training.early_stop_patience
        if at_eval and patience and state.evals_without_improvement >= patience:
            return "converged" if run.converged_protocol else "early_stopped"
    return stop_reason_at_cap(trial)


def _validate(run: TrialRun, metrics: dict[str, Any]) -> str | None:
    """One validation round; "diverged" on a non-finite loss, else None. Under `converged`
    the dev voices decide improvement, and the held-out loss is measured (and the weights
    kept) only at a new best; otherwise the held-out loss decides, as it always did."""
    engine, data, state = run.engine, run.data, run.state
    sync_buffers(engine.module, run.world)

    def loss(split: str) -> float:
        lockstep = _zero3(engine)
        value, l1, cells = validation_l1(
            engine.module, data, run.device, run.rank, run.world, lockstep=lockstep, split=split
        )
        if split == "heldout":  # kept for the interval of the model handed in
            state.val_l1, state.val_cells = l1.tolist(), cells.tolist()
        return value

    split = "dev" if run.converged_protocol else "heldout"
    value = loss(split)
    if not math.isfinite(value):
        state.divergence = f"non-finite {split} loss ({value}) at step {state.step}"
        return "diverged"
    best = state.best_dev_loss if run.converged_protocol else state.best_val_loss
    improved = value < best - 1e-4
    state.evals_without_improvement = 0 if improved else state.evals_without_improvement + 1
    if not run.converged_protocol:
        metrics["val_loss"] = state.last_val_loss = value
        if improved:
            state.best_val_loss = value
        return None
    metrics["dev_loss"] = value
    if improved:
        state.best_dev_loss, state.best_step = value, state.step
        run.best_weights = full_weights(engine)  # a collective under ZeRO-3: every rank
        metrics["val_loss"] = state.last_val_loss = state.best_val_loss = loss("heldout")
    return None


def _val_loss_ci(trial: TrialConfig, data: TrialData, state: TrainerState) -> list[float] | None:
    """The speaker-clustered 95 % interval of the handed-in model's held-out loss."""
    if len(state.val_l1) != len(data.val) or not data.val:
        return None
    speakers = [e.speaker for e in data.val]
    interval = clustered_bootstrap_ci(speakers, state.val_l1, state.val_cells, trial.eval.bootstrap)
    return list(interval)


def _timing_summary(timing: dict[str, Any]) -> dict[str, float | None]:
    steps = timing["step_s"]
    steady = steps[3:] or steps  # the first steps warm caches and allocators
    return {
        "data_load_s": timing["data_load_s"],
        "engine_init_s": timing["engine_init_s"],
        "first_step_s": steps[0] if steps else math.nan,
        "steady_step_s": float(np.median(steady)) if steady else math.nan,
        "steps_timed": len(steps),
        # This rank's high-water mark of allocated GPU memory (none on CPU).
        "peak_memory_bytes": torch.cuda.max_memory_allocated()
        if torch.cuda.is_available()
        else None,
    }


def _replica_state(engine, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What must be identical on every rank: the gathered weights and, below ZeRO-3, each
    rank's own copy of the module too (the masters are gathered, so agree by construction;
    the copies the ranks compute with are what could drift)."""
    if engine.zero_optimization_stage() == 3:
        return weights
    local = {f"module:{k}": v for k, v in engine.module.state_dict().items()}
    return {**weights, **local}


def _step_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def _step_flops(module: VoiceCloner, data: TrialData, indices: list[int], n: int) -> float:
    chosen = [data.train[i] for i in indices[:n]]
    return train_flops_per_step(
        module,
        tokens=sum(len(e.phonemes) for e in chosen),
        frames=sum(len(e.mel) for e in chosen),
        ref_frames=sum(min(len(e.mel), data.ref_frames) for e in chosen),
        utterances=len(chosen),
    )


def _zero3(engine) -> bool:
    """Under ZeRO-3 every forward pass is a collective (it gathers the parameters)."""
    return engine.zero_optimization_stage() == 3


def _maybe_inject_failure(trial: TrialConfig, step: int, marker_dir: str | None) -> None:
    """Testing hook: fail once at `training.inject_failure_at_step` (a marker file makes the
    restarted attempt pass)."""
    at = trial.training.inject_failure_at_step
    if at is None or step != at or marker_dir is None:
        return
    marker = Path(marker_dir) / f"injected-failure-step{at}"
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("failed here once\n")
    raise RuntimeError(f"injected failure at step {at} (training.inject_failure_at_step)")


def _finish(run: TrialRun, status: str) -> None:
    """Export the final weights (rank 0), judge them (`on_export`), and report the trial's
    final metrics with the export. A diverged trial reports its final metrics too (with
    the step, the last finite loss and why) but no weights: they are not finite. Either way
    the report carries a checkpoint, because Ray Train V2's `Result.metrics` are those of
    the last report *with* a checkpoint."""
    import ray.train

    engine, trial, data, state, world = run.engine, run.trial, run.data, run.state, run.world
    diverged = status == "diverged"
    counts = count_parameters(engine.module)
    if not diverged:
        sync_buffers(engine.module, world)
    # Every rank gathers (a collective under ZeRO-3); rank 0 alone writes the export. Under
    # `converged` the trial hands in its best checkpoint, not its last.
    weights = full_weights(engine)
    if run.converged_protocol and run.best_weights is not None and not diverged:
        weights = run.best_weights
    digests = parameter_digests(_replica_state(engine, weights), world)
    metrics = {
        "step": state.step,
        "status": "diverged" if diverged else "done",
        "stop_reason": status,
        "steps": state.step,
        "steps_budget": run.steps,
        "protocol": trial.training.protocol,
        "epochs": epochs_seen(trial, state.step, len(data.train)),
        "best_step": state.best_step if run.converged_protocol else None,
        "dev_loss": state.best_dev_loss if run.converged_protocol else None,
        "train_speakers": data.train_speakers,
        # The exported (final) model's held-out loss, and the best seen during training.
        "val_loss": None if diverged else state.last_val_loss,
        "val_loss_ci": None if diverged else _val_loss_ci(trial, data, state),
        "best_val_loss": state.best_val_loss,
        "train_loss": state.last_train_loss,
        "resumed_from": state.resumed_from,
        "divergence": {
            "step": state.step,
            "last_finite_train_loss": state.last_train_loss,
            "reason": state.divergence,
        }
        if diverged
        else None,
        "first_train_loss": state.first_train_loss,
        "params": counts["total"],
        "params_non_embedding": counts["non_embedding"],
        "learning_rate": trial.learning_rate,
        "train_flops": state.flops,
        "train_seconds": state.train_seconds,
        "data_utterances": len(data.train),
        "data_hours": data.hours,
        # Data parallelism keeps one model: every rank must hold identical weights.
        "replicas_in_sync": len(set(digests)) == 1,
        "parameter_digests": digests,
        "timing": _timing_summary(run.timing),
    }
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if run.rank == 0:
            if not diverged:
                export_model(engine.module, trial, data, Path(directory), weights)
                if run.loop.on_export is not None:
                    metrics["eval"] = run.loop.on_export(Path(directory)).to_json()
            (Path(directory) / FINAL_METRICS).write_text(json.dumps(metrics))
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        name = "diverged" if diverged else "export"
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)

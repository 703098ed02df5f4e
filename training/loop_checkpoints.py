"""What a training attempt leaves in Ray's checkpoints, and how the next attempt picks it up:
the resumable trainer state, the `converged` protocol's best weights, and a finished trial's
final report (re-sent, not retrained, when its launcher never saw it)."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from training.checkpoint_digest import verify_manifests, write_manifest

__all__ = [
    "BEST_WEIGHTS_FILE",
    "FINAL_METRICS",
    "STATE_FILE",
    "Judgement",
    "OnExport",
    "TrainerState",
    "report_checkpoint",
    "report_finished_export",
    "restore",
]

STATE_FILE = "trainer_state.json"
BEST_WEIGHTS_FILE = "best_weights.pt"
"""The `converged` protocol's best weights so far, in every checkpoint (a restart keeps them)."""
FINAL_METRICS = "final_metrics.json"


class Judgement(Protocol):
    """What judging an export returns (`eval.result.EvalResult` or `EvalFailure`)."""

    def to_json(self) -> dict[str, Any]: ...


OnExport = Callable[[Path], Judgement]
"""Called on rank 0 with the export directory; returns its judgement."""


@dataclass
class TrainerState:
    """Everything besides DeepSpeed's own checkpoint that a resumed trial needs."""

    step: int = 0
    best_val_loss: float = math.inf
    last_val_loss: float = math.inf
    """Held-out loss of the model the trial hands in (under `converged`: the best one)."""
    evals_without_improvement: int = 0
    best_dev_loss: float = math.inf
    """`converged`: the dev voices' best loss so far, and the step that reached it."""
    best_step: int = 0
    val_l1: list[float] = field(default_factory=list)
    """Per held-out utterance, the summed L1 and its cells, of the model `last_val_loss` is
    for: what its speaker-clustered interval resamples."""
    val_cells: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    flops: float = 0.0
    first_train_loss: float = math.nan
    last_train_loss: float = math.nan
    """The last finite training loss (a diverged step does not overwrite it)."""
    divergence: str | None = None
    """Why training stopped as diverged, e.g. "non-finite train_loss (inf) at step 2"."""
    resumed_from: list[int] = field(default_factory=list)
    """The step of each checkpoint this trial was restarted from (after a lost worker/node)."""

    def save(self, directory: Path) -> None:
        (directory / STATE_FILE).write_text(json.dumps(vars(self)))

    @classmethod
    def load(cls, directory: Path) -> TrainerState:
        return cls(**json.loads((directory / STATE_FILE).read_text()))


def report_finished_export(rank: int, on_export: OnExport | None = None) -> bool:
    """If the latest checkpoint is this trial's final report (the run finished or diverged,
    but whoever launched it did not see the result, e.g. the sweep driver was killed),
    report it again instead of training: DeepSpeed state is not in an export, and none is
    needed. An export whose evaluation is missing or failed is evaluated again."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return False
    with checkpoint.as_directory() as directory:
        final = Path(directory) / FINAL_METRICS
        if not final.exists():
            return False
        metrics = json.loads(final.read_text())
        with tempfile.TemporaryDirectory() as copy:
            if rank == 0:
                shutil.copytree(directory, copy, dirs_exist_ok=True)
                evaluated = isinstance(metrics.get("eval"), dict) and "error" not in metrics["eval"]
                if on_export is not None and metrics["status"] == "done" and not evaluated:
                    metrics["eval"] = on_export(Path(copy)).to_json()
                    (Path(copy) / FINAL_METRICS).write_text(json.dumps(metrics))
            report = ray.train.Checkpoint.from_directory(copy) if rank == 0 else None
            name = "export" if metrics["status"] == "done" else metrics["status"]
            ray.train.report(metrics, checkpoint=report, checkpoint_dir_name=name)
    return True


def restore(engine) -> tuple[TrainerState, dict[str, torch.Tensor] | None]:
    """The state (and the `converged` protocol's best weights) of the latest checkpoint."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return TrainerState(), None
    best = None
    with checkpoint.as_directory() as directory:
        verify_manifests(Path(directory))  # before DeepSpeed unpickles anything in it
        engine.load_checkpoint(directory, tag="engine")
        state = TrainerState.load(Path(directory))
        if (Path(directory) / BEST_WEIGHTS_FILE).exists():
            best = torch.load(Path(directory) / BEST_WEIGHTS_FILE, weights_only=True)
    state.resumed_from.append(state.step)
    return state, best


def report_checkpoint(
    metrics: dict[str, Any],
    engine,
    state: TrainerState,
    rank: int,
    best_weights: dict[str, torch.Tensor] | None = None,
) -> None:
    """`ray.train.report` with a DeepSpeed checkpoint: every rank saves its shard into a
    same-named directory, with a digest manifest of its files; Ray merges them. Rank 0 adds
    the trainer state and the best weights (`converged`)."""
    import ray.train

    with tempfile.TemporaryDirectory() as directory:
        engine.save_checkpoint(directory, tag="engine")
        if rank == 0:
            state.save(Path(directory))
            if best_weights is not None:
                torch.save(best_weights, Path(directory) / BEST_WEIGHTS_FILE)
        write_manifest(Path(directory), rank)
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(directory),
            checkpoint_dir_name=f"step{metrics['step']:07d}",
        )

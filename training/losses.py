"""The trial's losses: the training objective on a batch, and the held-out validation loss."""

from __future__ import annotations

import numpy as np
import torch

from training.data import Batch, TrialData
from training.distributed import max_across_ranks, sum_across_ranks
from training.model import ModelOutput, sequence_mask

__all__ = ["batch_loss", "teacher_forced", "validation_loss"]

_DURATION_WEIGHT = 0.1


def teacher_forced(model: torch.nn.Module, batch: Batch) -> ModelOutput:
    """The model's outputs on `batch` given its true durations (or alignment) and mels."""
    return model(
        batch.phonemes,
        batch.phoneme_lens,
        batch.ref_mel,
        batch.ref_lens,
        durations=batch.durations,
        mel=batch.mel,
        mel_lens=batch.mel_lens,
    )


def batch_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 on log-mel (masked) + duration MSE (+ the aligner's forward-sum loss when durations
    are learned)."""
    out = teacher_forced(model, batch)
    frame_mask = sequence_mask(batch.mel_lens, batch.mel.shape[1])[..., None]
    l1 = ((out.mel.float() - batch.mel).abs() * frame_mask).sum() / (
        frame_mask.sum() * batch.mel.shape[-1]
    )
    token_mask = sequence_mask(batch.phoneme_lens, batch.phonemes.shape[1])
    target = torch.log1p(out.durations.float())
    duration = (((out.log_durations.float() - target) ** 2) * token_mask).sum() / token_mask.sum()
    loss = l1 + _DURATION_WEIGHT * duration + out.align_loss
    return loss, {
        "mel_l1": float(l1.detach()),
        "duration_mse": float(duration.detach()),
        "align_loss": float(out.align_loss.detach()),
    }


@torch.no_grad()
def validation_loss(
    model: torch.nn.Module,
    data: TrialData,
    device: torch.device,
    rank: int,
    world: int,
    *,
    lockstep: bool = False,
    split: str = "heldout",
) -> float:
    """Held-out L1 on log-mel (held-out speakers, their prompt as reference), frame-weighted
    and summed across data-parallel ranks so every rank gets the same number. `split`: "dev"
    for the dev voices instead (the `converged` protocol's stopping rule).

    `lockstep`: every rank runs the same number of forward passes, as ZeRO-3 needs (each
    forward gathers the partitioned parameters from all ranks, so a rank with one batch fewer
    would leave the others waiting forever). The extra passes' outputs are discarded."""
    return validation_l1(model, data, device, rank, world, lockstep=lockstep, split=split)[0]


@torch.no_grad()
def validation_l1(
    model: torch.nn.Module,
    data: TrialData,
    device: torch.device,
    rank: int,
    world: int,
    *,
    lockstep: bool = False,
    split: str = "heldout",
) -> tuple[float, np.ndarray, np.ndarray]:
    """`validation_loss`, and per utterance (in the split's order, on every rank) the summed
    absolute error and the number of cells it is over: what a speaker-clustered bootstrap of
    the loss resamples (`training.bootstrap`)."""
    model.eval()
    total = torch.zeros(2, dtype=torch.float64)
    n = len(data.dev if split == "dev" else data.val)
    per_utterance = torch.zeros(2, n, dtype=torch.float64)
    mine = list(range(rank, n, world))  # the order `val_batches` shards and batches in
    batches = data.val_batches(16, shard=rank, shards=world, split=split)
    for b, batch in enumerate(batches):
        batch = batch.to(device)
        out = teacher_forced(model, batch)
        mask = sequence_mask(batch.mel_lens, batch.mel.shape[1])[..., None]
        errors = (out.mel.float() - batch.mel).abs() * mask
        total[0] += float(errors.sum())
        total[1] += float(mask.sum()) * batch.mel.shape[-1]
        at = mine[b * 16 : b * 16 + len(batch.mel_lens)]
        per_utterance[0, at] = errors.sum(dim=(1, 2)).double().cpu()
        per_utterance[1, at] = mask.sum(dim=(1, 2)).double().cpu() * batch.mel.shape[-1]
    if lockstep and world > 1:
        _forward_discarded(
            model, data, max_across_ranks(len(batches), world, device) - len(batches), device, split
        )
    model.train()
    total = sum_across_ranks(total, world, device)
    per_utterance = sum_across_ranks(per_utterance, world, device)
    return float(total[0] / total[1]), per_utterance[0].numpy(), per_utterance[1].numpy()


def _forward_discarded(
    model: torch.nn.Module, data: TrialData, n: int, device: torch.device, split: str
) -> None:
    """`n` forward passes whose results nobody reads, on the first validation batch (every
    rank can build it, including one whose shard is empty)."""
    if n <= 0:
        return
    batch = data.val_batches(16, split=split)[0].to(device)
    for _ in range(n):
        teacher_forced(model, batch)

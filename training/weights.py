"""The trained weights: keeping data-parallel replicas identical, fingerprinting them, and
exporting them as safetensors + JSON (nothing pickled)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from training.config import TrialConfig, to_dict
from training.model import VoiceCloner

if TYPE_CHECKING:
    from training.data import TrialData

__all__ = ["EXPORT_CONFIG", "EXPORT_WEIGHTS", "export_model", "parameter_digests", "sync_buffers"]

EXPORT_WEIGHTS = "model.safetensors"
EXPORT_CONFIG = "model_config.json"


def sync_buffers(module: torch.nn.Module, world: int) -> None:
    """Average floating-point buffers (BatchNorm running statistics in the speaker encoder)
    across ranks. DeepSpeed keeps gradients in sync but not buffers, which each rank updates
    from its own micro-batches; without this the replicas drift apart."""
    if world == 1:
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= world


def parameter_digests(module: torch.nn.Module, world: int) -> list[str]:
    """sha256 of this rank's weights (parameters and buffers), gathered from every rank."""
    h = hashlib.sha256()
    for name, p in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    digest = h.hexdigest()[:16]
    if world == 1:
        return [digest]
    gathered: list[str] = [""] * world
    dist.all_gather_object(gathered, digest)
    return gathered


def export_model(model: VoiceCloner, trial: TrialConfig, data: TrialData, out: Path) -> None:
    """Weights as safetensors + everything needed to rebuild and run them, as JSON."""
    from safetensors.torch import save_file

    weights = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(out / EXPORT_WEIGHTS))
    (out / EXPORT_CONFIG).write_text(
        json.dumps(
            {
                "kind": "neural",
                "trial": to_dict(trial),
                "vocabulary": list(data.vocab.symbols),
                "n_mels": data.n_mels,
                # Trained without corpus timings: the aligner's weights are in the export.
                "learn_alignment": model.aligner is not None,
            },
            indent=2,
        )
    )

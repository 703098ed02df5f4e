"""The trained weights: keeping data-parallel replicas identical, gathering the full fp32 model
out of a DeepSpeed engine, fingerprinting it, and exporting it as safetensors + JSON (nothing
pickled)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from training.config import TrialConfig, to_dict
from training.distributed import average_buffers, gather_strings
from training.model import VoiceCloner

if TYPE_CHECKING:
    from training.data import TrialData

__all__ = [
    "EXPORT_CONFIG",
    "EXPORT_WEIGHTS",
    "export_model",
    "full_weights",
    "parameter_digests",
    "sync_buffers",
]

EXPORT_WEIGHTS = "model.safetensors"
EXPORT_CONFIG = "model_config.json"

Weights = dict[str, torch.Tensor]
"""state_dict names → fp32 CPU tensors of their full (unpartitioned) shapes."""


def sync_buffers(module: torch.nn.Module, world: int) -> None:
    """Average floating-point buffers across ranks (see `training.distributed.average_buffers`)."""
    average_buffers(module, world)


def full_weights(engine: Any) -> Weights:
    """The model as training left it: fp32 master weights of every parameter, and the buffers.

    A collective under ZeRO-3 (each partitioned parameter is gathered from every rank), so
    every rank must call it, in the same order — the state_dict's. What the module holds is not
    the model: under ZeRO-3 its parameters are empty partitions, and under bf16 they are the
    bf16 rounding of the fp32 masters the optimiser updates. Buffers (BatchNorm statistics) are
    not partitioned and have no master: they come from the module, as fp32.
    """
    module = engine.module
    parameters = dict(module.named_parameters())
    masters = _optimizer_masters(getattr(engine, "optimizer", None))
    weights: Weights = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        if name in parameters:
            tensor = _fp32_master(parameters[name], masters)
        weights[name] = tensor.detach().float().cpu().clone().contiguous()
    return weights


def _fp32_master(param: torch.nn.Parameter, masters: dict[int, torch.Tensor]) -> torch.Tensor:
    from deepspeed.utils import safe_get_full_fp32_param

    # ZeRO 1/2/3 and DeepSpeed's BF16_Optimizer: the full fp32 master (ZeRO-3: all-gathered).
    full = safe_get_full_fp32_param(param)
    if full is not None:
        return full
    if hasattr(param, "ds_id"):  # ZeRO-3 without an optimiser state for it (frozen)
        import deepspeed

        with deepspeed.zero.GatheredParameters([param]):
            return param.detach().float().cpu().clone()
    # No ZeRO: the (un)fused fp16/bf16 optimiser's master copy, else the fp32 parameter itself.
    return masters.get(id(param), param)


def _optimizer_masters(optimizer: Any) -> dict[int, torch.Tensor]:
    """id(low-precision parameter) → its fp32 master in DeepSpeed's FP16 optimisers, which
    ZeRO-0 uses under bf16 (`FP16_UnfusedOptimizer` keeps one master per parameter,
    `FP16_Optimizer` one flat master per group). Empty for every other optimiser."""
    groups = getattr(optimizer, "fp16_groups", None)
    if groups is None:
        return {}
    if hasattr(optimizer, "fp32_groups"):
        pairs = zip(groups, optimizer.fp32_groups, strict=True)
        return {id(p): m for lp, hp in pairs for p, m in zip(lp, hp, strict=True)}
    if hasattr(optimizer, "fp32_groups_flat"):
        from torch._utils import _unflatten_dense_tensors

        out = {}
        for lp, flat in zip(groups, optimizer.fp32_groups_flat, strict=True):
            for p, m in zip(lp, _unflatten_dense_tensors(flat, lp), strict=True):
                out[id(p)] = m
        return out
    return {}


def parameter_digests(weights: Weights, world: int) -> list[str]:
    """sha256 of this rank's full weights (as `full_weights` gathered them), from every rank.

    Equal digests mean every rank holds the same model: under ZeRO-0 each rank's own copy,
    under ZeRO 1–3 the gathered masters plus each rank's own buffers."""
    h = hashlib.sha256()
    for name, tensor in sorted(weights.items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    return gather_strings(h.hexdigest()[:16], world)


def export_model(
    model: VoiceCloner,
    trial: TrialConfig,
    data: TrialData,
    out: Path,
    weights: Weights | None = None,
) -> None:
    """Weights as safetensors + everything needed to rebuild and run them, as JSON.

    `weights`: what to write (from `full_weights` for a DeepSpeed engine); by default the
    module's own state_dict, right for a plain fp32 module."""
    from safetensors.torch import save_file

    if weights is None:
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

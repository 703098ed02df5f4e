"""Collectives between data-parallel ranks, on the engine's device.

Under NCCL (Ray Train with GPUs) a collective only accepts CUDA tensors, while gloo (CPU) takes
CPU ones: every tensor handed to `torch.distributed` here is first moved to `device`, the
engine's device (`TrialRun.device`), and the result brought back to the host. With one rank
nothing is communicated.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = [
    "average_buffers",
    "gather_strings",
    "import_deepspeed",
    "max_across_ranks",
    "mean_across_ranks",
    "sum_across_ranks",
]


def import_deepspeed():
    """`import deepspeed`, without the MLflow import it drags in.

    DeepSpeed's autotuner imports MLflow at module level when it is installed (it is, for the
    sweep's driver), which is 1.7 of the 3.7 s that `import deepspeed` costs a fresh worker
    process (measured with `python -X importtime`), paid again by every trial's worker. The
    autotuner is never used here; with the module marked absent it falls back to
    `has_mlflow = False`. The mark is removed again, so a later `import mlflow` works."""
    import sys

    if "deepspeed" in sys.modules or "mlflow" in sys.modules:
        import deepspeed

        return deepspeed
    sys.modules["mlflow"] = None  # type: ignore[assignment]  # makes `import mlflow` fail
    try:
        import deepspeed
    finally:
        del sys.modules["mlflow"]
    return deepspeed


def sum_across_ranks(values: torch.Tensor, world: int, device: torch.device) -> torch.Tensor:
    """The element-wise sum of `values` over all ranks, as a CPU tensor of the same dtype."""
    if world == 1:
        return values
    on_device = values.to(device)
    dist.all_reduce(on_device)
    return on_device.cpu()


def mean_across_ranks(value: float, world: int, device: torch.device) -> float:
    """The mean of one float over all ranks (float64 on the wire)."""
    if world == 1:
        return value
    total = sum_across_ranks(torch.tensor([value], dtype=torch.float64), world, device)
    return float(total[0] / world)


def max_across_ranks(value: int, world: int, device: torch.device) -> int:
    """The largest of one integer over all ranks."""
    if world == 1:
        return value
    on_device = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(on_device, op=dist.ReduceOp.MAX)
    return int(on_device.cpu()[0])


def average_buffers(module: torch.nn.Module, world: int) -> None:
    """Average floating-point buffers (BatchNorm running statistics in the speaker encoder)
    across ranks, in place. DeepSpeed keeps gradients in sync but not buffers, which each rank
    updates from its own micro-batches; without this the replicas drift apart. Buffers live on
    the engine's device already (DeepSpeed moved the module there), so they go as they are."""
    if world == 1:
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= world


def gather_strings(value: str, world: int) -> list[str]:
    """`value` from every rank, in rank order. (An object collective: under NCCL it uses the
    current CUDA device, which Ray Train sets for each worker.)"""
    if world == 1:
        return [value]
    gathered: list[str] = [""] * world
    dist.all_gather_object(gathered, value)
    return gathered
